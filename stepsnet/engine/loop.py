"""The training loop (:func:`fit`), the state it trains (:func:`prepare`), and what it measures in a dry run (a
:class:`StepMeter`, which does nothing outside one)."""
from __future__ import annotations

import contextlib
import math
import os
import time
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from tqdm import tqdm

from stepsnet.config.run import RunConfig
from stepsnet.engine.core import (
    Progress,
    Schedule,
    StepResult,
    TrainState,
    all_reduce_mean,
    amp_context,
    train_step,
    wrap_model,
)
from stepsnet.engine.run_folder import RunFolder
from stepsnet.utils.dryrun import (
    RUN_LENGTH_FIELDS,
    DryRunMeter,
    DryRunReport,
    a100_floor,
    count_call_flops,
    dry_run_amp,
    task_of_kind,
)
from stepsnet.utils.errors import DataError, TrainingError
from stepsnet.utils.logging import interactive

# ----------------------------------------------------------------------------------------------------------------
# The loop


def _due(step: int, every: int) -> bool:
    return every > 0 and step % every == 0


@contextlib.contextmanager
def loader_errors() -> Iterator[None]:
    """An error raised in a ``DataLoader`` worker, re-raised with its own message (torch prepends the worker's
    traceback, which a one-line report would flatten into kilobytes with the useful sentence at the end)."""
    try:
        yield
    except Exception as e:
        text = str(e)
        if 'DataLoader worker' not in text or 'Original Traceback' not in text:
            raise
        lines = text.splitlines()
        # the worker's last line names the type, bare or with its module (``stepsnet.utils.errors.DataError: ``)
        heads = (f'{type(e).__name__}: ', f'{type(e).__module__}.{type(e).__qualname__}: ')
        start = max((i for i, line in enumerate(lines) if line.startswith(heads)), default=len(lines) - 1)
        message = '\n'.join(lines[start:])
        for head in heads:
            if message.startswith(head):
                message = message[len(head):]
                break
        try:
            clean = type(e)(message)
        except Exception:  # an exception type that wants other arguments: keep torch's
            raise e from None
        raise clean from None


@contextlib.contextmanager
def _internal_errors(where: str) -> Iterator[None]:
    """Inside the loop, an exception that is not the user's (:class:`DataError`), an interrupt or a stop on a
    non-finite loss is ours: re-raised as :class:`TrainingError` naming where it happened, with its cause."""
    try:
        yield
    except (DataError, FloatingPointError, StopIteration, TrainingError):
        raise
    except Exception as e:
        raise TrainingError(f'{type(e).__name__} at {where}: {" ".join(str(e).split())}') from e


def _format_metrics(metrics: Mapping[str, Any]) -> str:
    return '  '.join(f'{k} {v:.4g}' for k, v in metrics.items() if isinstance(v, (int, float)))


def prepare(
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        run: RunFolder,
        cfg: RunConfig,
        ema: Optional[Callable[[nn.Module], nn.Module]] = None,
        channels_last: bool = False,
) -> TrainState:
    """The :class:`TrainState` of a run: the model on the rank's device, AMP, EMA (``ema(model)`` builds it), the
    checkpoint that ``run.open`` found restored, and the training module (:func:`wrap_model`).

    A dry run on a CPU runs in float32 where the recipe asks for autocast (:func:`~stepsnet.utils.dryrun.dry_run_amp`:
    CPUs emulate bfloat16 / float16 slowly), and says so."""
    amp, run.precision_note = dry_run_amp(cfg.amp, cfg.amp_dtype, run.env.device, run.dry_run)
    run.amp_ran = cfg.amp_dtype if amp else ''
    if run.precision_note and run.env.is_main:
        print(f'note: {run.precision_note}', flush=True)
    autocast, scaler = amp_context(amp, cfg.amp_dtype, run.env.device)
    model.to(run.env.device)
    state = TrainState(model, optimizer, scheduler, scaler, ema(model) if ema is not None else None, autocast)
    if run.checkpoint is not None:
        state.restore(run.checkpoint, run.resumed_from)
        run.checkpoint = None  # the tensors now live in the model; free the copy
    state.train_model = wrap_model(model, run.env, compile=cfg.compile, channels_last=channels_last)
    run.workers_note = getattr(cfg, 'workers_note', '')  # the config capped its workers: the header says so once
    return state



class StepMeter:
    """What :func:`fit` measures besides training. This base class measures nothing and changes nothing: the loop of
    an ordinary run. :class:`DryRun` is the measuring one."""
    logs_every_step = False  # a log row after every step
    evaluates_periodically = True  # evaluate every ``schedule.eval_every`` steps, not only at the end
    shows_bar = True  # a progress bar on a terminal

    def stop_at(self, step: int, total: int) -> int:
        """The step the loop stops at, starting from ``step``."""
        return total

    def evaluation(self) -> contextlib.AbstractContextManager:
        """Wraps one evaluation."""
        return contextlib.nullcontext()

    def step(self, fn: Callable[..., StepResult], args: Sequence[Any]) -> StepResult:
        """One update, ``fn(*args)``."""
        return fn(*args)

    def stepped(self, t0: float, micro: Sequence[Any], result: Optional[StepResult],
                count: Optional[Callable[[Sequence[Any]], int]]) -> None:
        """After the step that began at ``t0``."""

    def finish(self, state: TrainState, schedule: Schedule) -> None:
        """After the loop."""


class DryRun(StepMeter):
    """A dry run's measurement (``run.dry_run`` = N): N steps, the training FLOPs of the first (unless compiled),
    every step's time, loss and batch, one evaluation's time, the peak memory; at the end ``run.report``
    (:class:`~stepsnet.utils.dryrun.DryRunReport`), printed and kept."""
    logs_every_step = True
    evaluates_periodically = False
    shows_bar = False

    def __init__(self, run: RunFolder, state: TrainState):
        self.run, self.meter = run, DryRunMeter(run.env.device)
        self.before = [p.detach().clone() for p in state.model.parameters() if p.requires_grad]

    def stop_at(self, step: int, total: int) -> int:
        return min(total, step + self.run.dry_run)

    @contextlib.contextmanager
    def evaluation(self) -> Iterator[None]:
        self.meter.start_eval()
        yield
        self.meter.stop_eval()

    def step(self, fn: Callable[..., StepResult], args: Sequence[Any]) -> StepResult:
        if self.meter.step_times or self.run.config.get('compile'):
            return fn(*args)
        result, self.meter.flops = count_call_flops(fn, *args)
        return result

    def stepped(self, t0, micro, result, count) -> None:
        m = self.meter
        m.sync()
        m.step_times.append(time.perf_counter() - t0)
        if micro:
            m.losses.append(float(result.loss))
            m.items, m.micro = count(micro) if count is not None else 0, len(micro)

    def finish(self, state: TrainState, schedule: Schedule) -> None:
        self.run.report = _dry_run_report(self.meter, state, self.run, schedule, self.before)
        if self.run.env.is_main:
            print('\n'.join(self.run.report.lines()), flush=True)


def step_meter(run: RunFolder, state: TrainState) -> StepMeter:
    """The meter of a run: :class:`DryRun` for a dry run, else the one that measures nothing."""
    return DryRun(run, state) if run.dry_run else StepMeter()


class _Interval:
    """The training loss and throughput between two log rows."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.loss, self.steps, self.items, self.t = 0.0, 0, 0, time.perf_counter()

    def add(self, loss: float, items: int) -> None:
        self.loss, self.steps, self.items = self.loss + loss, self.steps + 1, self.items + items

    def row(self, optimizer: torch.optim.Optimizer, result: Optional[StepResult], schedule: Schedule,
            counted: bool) -> Tuple[Dict[str, Any], str]:
        """The log row of the interval (the loss averaged over ranks), and the throughput as printed."""
        dt = time.perf_counter() - self.t
        mean = all_reduce_mean(torch.tensor(self.loss / max(self.steps, 1), dtype=torch.float64))
        row: Dict[str, Any] = dict(lr=optimizer.param_groups[0]['lr'], train_loss=float(mean))
        if result is not None:
            if result.grad_norm is not None:
                row['grad_norm'] = result.grad_norm
            row.update({f'train_{k}': float(all_reduce_mean(v)) for k, v in result.parts.items()})
        rate = ''
        if counted and dt > 0:
            per_s = row[f'{schedule.item_name}_per_s'] = self.items / dt
            rate = f'  {per_s:,.0f} {schedule.item_name}/s' if per_s >= 10 else f'  {per_s:.2g} {schedule.item_name}/s'
        return row, rate

    def log(self, step: int, optimizer: torch.optim.Optimizer, result: Optional[StepResult], schedule: Schedule,
            counted: bool, bar: Optional[tqdm], say: Callable[[str], None]) -> Dict[str, Any]:
        """Close the interval at ``step``: its row, shown on the bar or printed as a line; a new interval begins."""
        row, rate = self.row(optimizer, result, schedule, counted)
        if bar is not None:
            bar.set_postfix(loss=f'{row["train_loss"]:.4f}', lr=f'{row["lr"]:.2e}')
        else:
            epoch = f' (epoch {step / schedule.steps_per_epoch:.2f})' if schedule.steps_per_epoch else ''
            say(f'step {step}/{schedule.total_steps}{epoch}  loss {row["train_loss"]:.4f}  lr {row["lr"]:.3g}{rate}')
        self.reset()
        return row


def _skip_nonfinite(progress: Progress, result: StepResult, run: RunFolder, schedule: Schedule,
                    say: Callable[[str], None]) -> None:
    """Count a non-finite loss (the update was skipped); past ``nan_tolerance``, stop the run."""
    progress.nonfinite += 1
    value, step = float(result.loss.item()), progress.step
    kept = (f'the last good checkpoint {run.last!r} is kept' if os.path.isfile(run.last)
            else 'no checkpoint was written yet')
    if progress.nonfinite > schedule.nan_tolerance:
        raise FloatingPointError(
            f'training loss is {value} at step {step} ({progress.nonfinite} non-finite so far, '
            f'nan_tolerance={schedule.nan_tolerance}); stopped before the update; {kept}. Lower the '
            'learning rate, clip gradients (clip_grad) or use amp_dtype=bfloat16')
    say(f'warning: non-finite loss {value} at step {step}; update skipped '
        f'({progress.nonfinite} of {schedule.nan_tolerance} tolerated)')


def _record(progress: Progress, row: Dict[str, Any], schedule: Schedule, counted: bool, run: RunFolder) -> None:
    """Append a row to the run's history and its log (step, epoch and items seen first)."""
    head: Dict[str, Any] = {'step': progress.step}
    if schedule.steps_per_epoch:
        head['epoch'] = round(progress.step / schedule.steps_per_epoch, 4)
    if counted:
        head[f'{schedule.item_name}_seen'] = progress.items
    progress.history.append({**head, **row, 'time': round(progress.train_time, 3)})
    if run.writer is not None:
        run.writer.log(progress.history[-1])


def _improves(progress: Progress, score: Any, schedule: Schedule) -> bool:
    return score is not None and math.isfinite(score) and (
        progress.best is None or (score > progress.best if schedule.higher_is_better else score < progress.best))


def fit(
        state: TrainState,
        *,
        run: RunFolder,
        batches: Iterator[Sequence[Any]],
        loss_fn: Callable[[nn.Module, Any], Any],
        evaluate: Callable[[], Dict[str, Any]],
        schedule: Schedule,
        count: Optional[Callable[[Sequence[Any]], int]] = None,
        eval_line: Optional[Callable[[int, Dict[str, Any]], str]] = None,
) -> Progress:
    """Train ``state`` from ``state.progress.step`` to ``schedule.total_steps``; returns the final :class:`Progress`.

    Each item of ``batches`` holds the micro-batches of one step (a one-element sequence without accumulation;
    ``None`` entries, batches whose every sample was skipped, are dropped); the iterator starts at
    ``progress.step`` (the task makes it so, which is how a resumed run sees the batches the uninterrupted run would
    have seen). ``scheduler.step_update(step)`` sets the learning rate before each step. After a step: EMA update,
    logging every ``log_every``, evaluation every ``eval_every`` (``best.pth`` when ``schedule.metric`` improves),
    ``last.pth`` every ``checkpoint_every``; at the end (or the time limit) an evaluation and a checkpoint. A
    finished run trains nothing and writes nothing (:meth:`RunFolder.begin`). Output: a progress bar on a terminal;
    elsewhere one plain line every ``log_every`` steps; every evaluation prints ``eval_line(step, metrics)``, or the
    metrics by name. The learning rate is a function of the step and the config (a run extended on resume follows
    its new schedule). A dry run (``run.dry_run`` = N) is measured by :class:`DryRun`; any other by nothing.

    Raises:
        FloatingPointError: More than ``schedule.nan_tolerance`` non-finite losses.
    """
    progress, total = state.progress, schedule.total_steps
    if not run.begin(progress, schedule):
        return progress
    meter = step_meter(run, state)
    stop = meter.stop_at(progress.step, total)
    bar = tqdm(total=total, initial=progress.step, desc=schedule.desc, dynamic_ncols=True, leave=False) \
        if run.env.is_main and interactive(schedule.progress) and meter.shows_bar else None

    def say(line: str) -> None:
        if run.env.is_main:
            (bar.write(line) if bar is not None else print(line, flush=True))

    def evaluate_now() -> Tuple[Dict[str, Any], bool]:
        with meter.evaluation(), loader_errors():
            metrics = evaluate()
        better = _improves(progress, metrics.get(schedule.metric), schedule)
        if better:
            progress.best, progress.best_step = float(metrics[schedule.metric]), progress.step
        say(eval_line(progress.step, metrics) if eval_line is not None else
            f'step {progress.step}/{total}  val {_format_metrics(metrics)}')
        return metrics, better

    interval, result = _Interval(), None
    state.train_model.train()
    try:
        while progress.step < stop:
            t0 = time.perf_counter()
            if state.scheduler is not None:
                state.scheduler.step_update(num_updates=progress.step)
            with _internal_errors(f'step {progress.step + 1}'):
                with loader_errors():
                    micro = [b for b in next(batches) if b is not None]
                if micro:
                    result = meter.step(train_step, (state.train_model, state.optimizer, micro, loss_fn, run.env,
                                                     state.autocast, state.scaler, schedule.clip_grad,
                                                     schedule.clip_mode))
                else:  # every sample of the step was skipped (unreadable files under skip_corrupt)
                    say(f'warning: step {progress.step + 1} has no data (every sample was skipped); no update')
            progress.step += 1
            if micro and not result.finite:
                _skip_nonfinite(progress, result, run, schedule, say)
            elif micro:
                if state.ema is not None:
                    state.ema.update(state.model, step=progress.step)
                items = count(micro) * run.env.world_size if count is not None else 0
                interval.add(float(result.loss), items)  # a host sync per step: the finiteness check synced already
                progress.items += items
            progress.train_time += time.perf_counter() - t0
            meter.stepped(t0, micro, result, count)
            if bar is not None:
                bar.update(1)
            out_of_time = schedule.time_limit is not None and progress.train_time >= schedule.time_limit
            last = progress.step >= stop or out_of_time
            row = interval.log(progress.step, state.optimizer, result, schedule, count is not None, bar, say) \
                if _due(progress.step, schedule.log_every) or last or meter.logs_every_step else {}
            better = False
            if (_due(progress.step, schedule.eval_every) and meter.evaluates_periodically) or last:
                metrics, better = evaluate_now()
                row.update({f'val_{k}': v for k, v in metrics.items() if isinstance(v, (int, float))})
                state.train_model.train()
            if row:
                _record(progress, row, schedule, count is not None, run)
                interval.t = time.perf_counter()
            if _due(progress.step, schedule.checkpoint_every) or last or better:
                run.save(state.state_dict(), best=better)
                interval.t = time.perf_counter()
            if out_of_time:
                break
    finally:
        if bar is not None:
            bar.close()
    meter.finish(state, schedule)
    return progress


def _dry_run_report(dry: DryRunMeter, state: TrainState, run: RunFolder, schedule: Schedule,
                    before: List[torch.Tensor]) -> DryRunReport:
    env, cfg = run.env, run.config
    after = [p for p in state.model.parameters() if p.requires_grad]
    changed = any(not torch.equal(a.detach().cpu(), b.cpu()) for a, b in zip(after, before))
    total = schedule.total_steps
    evaluations = math.ceil(total / schedule.eval_every) if schedule.eval_every else 1
    memory, memory_kind = dry.peak_memory()
    micro = dry.micro or 1
    items_per_micro = (dry.items or 0) / micro
    items_per_step = (dry.items or 0) * env.world_size
    recipe_amp = cfg.get('amp_dtype', '') if cfg.get('amp') else ''
    task = task_of_kind(run.kind)
    floor = None
    if task is not None and dry.flops is not None and items_per_micro > 0:
        # the recipe's floor: a run length or batch the command line cut counts at the recipe's value (the FLOPs per
        # item are the model's as it ran: a model changed on the command line is the one counted)
        recipe = {k: v for k, v in run.dry_run_recipe.items() if k in RUN_LENGTH_FIELDS}
        floor = a100_floor(task, {**cfg, **recipe}, dry.flops / (items_per_micro * micro), items_per_step, total,
                           ran=cfg)
    return DryRunReport(
        kind=run.kind, model=schedule.model_name or schedule.desc, device=env.device, processes=env.world_size,
        params=sum(p.numel() for p in state.model.parameters()), train_flops_per_step=dry.flops,
        item_name=schedule.item_name, items_per_micro_batch=items_per_micro, accumulation=micro,
        items_per_step=items_per_step, steps=len(dry.step_times),
        first_step_s=dry.step_times[0], step_s=dry.step_median(), eval_batch_s=dry.eval_s,
        eval_batches=schedule.eval_batches, evaluations=evaluations, total_steps=total, peak_memory_bytes=memory,
        peak_memory_kind=memory_kind, amp=recipe_amp if run.amp_ran is None else run.amp_ran,
        compiled=bool(cfg.get("compile")), losses=dry.losses, params_changed=changed,
        notes=[run.precision_note] if run.precision_note else [], recipe_amp=recipe_amp,
        a100_floor_h=None if floor is None else floor.hours, a100_floor_items='' if floor is None else floor.counted)
