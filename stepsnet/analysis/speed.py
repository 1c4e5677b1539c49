"""Throughput and peak memory of baseline / Steps model pairs, measured the same way for both.

How a pair is measured (``benchmark_pair``, ``benchmark_pairs``):

* both models are built in the same process, on the same device, dtype and memory format, from random weights;
  image classifiers (``task='cls'``) get a random image batch, language models (``task='lm'``) random token ids;
* with ``compile`` a model is wrapped by ``torch.compile`` (inductor by default) exactly as the training engine
  does; ``benchmark_pairs`` can measure the eager and the compiled version of both models in the same round, so
  eager and compiled ratios come from one machine state;
* each model gets ``warmup`` untimed iterations (their wall time is reported as ``warmup_s``: for a compiled model
  it is dominated by compilation), then ``runs`` timed runs of ``iters`` iterations each, the models *alternating*
  run by run (A B, B A, A B, ...; with four models A B C D, D C B A, ...), so slow drifts of the machine (thermal,
  other jobs) hit all of them;
* throughput is images (or tokens) per second of a run; a model's figure is the median over its runs, and the
  pair's ratio is the median of the per-round ratios ``steps / baseline`` (robust to a noisy round);
* training iterations are forward + loss + backward + optimizer step: cross-entropy and SGD for classifiers (as
  timm's ``benchmark.py``), the model's own next-token loss and AdamW for language models (as ``train_lm``);
* peak memory is measured in a separate, untimed pass: the peak of the bytes allocated during one iteration on
  top of what was allocated before (the resident model, its gradients and optimizer state between steps): on
  CUDA from the caching allocator, on a CPU from the profiler's record of every allocation and free (exact for
  tensors; without that record, the growth of the peak resident set, ``VmHWM``, approximately);
* a cell (pair, batch size, mode) that runs out of memory, or that would start after the time budget, is recorded
  with an ``<mode>_error`` instead of numbers, and the others go on.

Rows use timm's ``benchmark.py`` column names (``infer_samples_per_sec``, ``infer_step_time`` in ms,
``infer_batch_size``, ``infer_img_size``, ``param_count`` in millions, ``train_*``; a language model has
``*_tokens_per_sec`` and ``*_seq_len`` instead) plus the device, dtype, memory format, compilation, library
versions and the ratios.

The memory pass and the operator profile are :mod:`stepsnet.analysis.speed_memory`; the tables, CSV files and plots
of the rows :mod:`stepsnet.analysis.speed_tables` (both re-exported here).
"""
from __future__ import annotations

import inspect
import os
import platform
import statistics
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import timm
import torch
import torch.nn as nn
from tqdm import tqdm

import stepsnet
from stepsnet.analysis.speed_memory import format_profile, free_memory, is_oom, peak_memory_mb, profile_ops, sync
from stepsnet.analysis.speed_tables import EAGER, UNITS, format_ratios, plot_ratios, read_csv, write_csv
from stepsnet.models.factory import create_classifier, create_lm
from stepsnet.steps import Steps, set_step_checkpointing
from stepsnet.utils.logging import interactive
from stepsnet.utils.meta import on_meta

__all__ = ['MODEL_KINDS', 'parse_pair', 'check_pair', 'benchmark_pair', 'benchmark_pairs', 'format_ratios', 'write_csv',
           'read_csv', 'plot_ratios', 'environment', 'format_profile', 'peak_memory_mb']

# the kinds of model pair measured: image classifiers, language models
MODEL_KINDS = ('cls', 'lm')


def parse_pair(text: str) -> Tuple[str, str]:
    """``'resnet50,steps_resnet50'`` -> ``('resnet50', 'steps_resnet50')`` (baseline first)."""
    parts = [p.strip() for p in text.split(',')]
    if len(parts) != 2 or not all(parts):
        raise ValueError(f'a pair is BASELINE,STEPS (two model names separated by a comma), got {text!r}')
    return parts[0], parts[1]


def _check_task(task: str) -> None:
    if task not in MODEL_KINDS:
        raise ValueError(f'task must be one of {MODEL_KINDS}, got {task!r}')


def _create(task: str, name: str, num_classes: int, img_size: Optional[int],
            model_kwargs: Optional[Mapping[str, Any]]) -> nn.Module:
    kwargs = dict(model_kwargs or {})
    if task == 'lm':
        return create_lm(name, **kwargs)
    return create_classifier(name, num_classes, img_size, **kwargs)


def check_pair(
        baseline: str,
        steps: str,
        tolerance: float = 0.05,
        task: str = 'cls',
        model_kwargs: Optional[Mapping[str, Any]] = None,
) -> None:
    """Refuse a pair whose ratio would mean nothing: the Steps model second, the two of about the same size.

    Both are built on the meta device (no memory, no compute), with ``model_kwargs`` when given.

    Raises:
        ValueError: The second model has no Steps module or the first has one (a swapped pair), or their
            parameter counts differ by more than ``tolerance`` (models of different sizes).
    """
    _check_task(task)
    with on_meta():
        models = {n: _create(task, n, 1000, None, model_kwargs) for n in (baseline, steps)}
    has = {n: any(isinstance(m, Steps) and m.plan.num_steps > 1 for m in net.modules()) for n, net in models.items()}
    if has[baseline] and not has[steps]:
        raise ValueError(f'pair {baseline},{steps} is swapped: {baseline!r} is the Steps model; expected '
                         f'BASELINE,STEPS, i.e. --pair {steps},{baseline}')
    if not has[steps]:
        raise ValueError(f'{steps!r} has no Steps trunk of more than one step; expected BASELINE,STEPS with a Steps '
                         'model second')
    params = {n: sum(p.numel() for p in net.parameters()) for n, net in models.items()}
    rel = params[steps] / params[baseline] - 1
    if abs(rel) > tolerance:
        raise ValueError(f'{steps!r} has {params[steps] / 1e6:.2f}M parameters and {baseline!r} '
                         f'{params[baseline] / 1e6:.2f}M ({100 * rel:+.0f}%): not a pair of twins; expected a Steps '
                         f'model and its baseline (parameters within {100 * tolerance:.0f}%)')


def environment(device: str) -> Dict[str, str]:
    """Library versions and the device, for the CSV."""
    if device.startswith('cuda') and torch.cuda.is_available():
        name = torch.cuda.get_device_name(torch.device(device))
    else:
        name = f'{platform.processor() or platform.machine()} ({torch.get_num_threads()} threads, ' \
               f'{os.cpu_count()} cpus)'
    return dict(device=device, device_name=name, torch=torch.__version__, timm=timm.__version__,
                stepsnet=stepsnet.__version__, python=platform.python_version())


class _Runner:
    """One model ready to run inference or training iterations on a fixed random batch.

    Args:
        compile: None (eager) or a ``torch.compile`` backend name (``'inductor'``); see :meth:`compile_model`.
        checkpoint_steps: Activation checkpointing of the first this many steps of every Steps trunk (training).
    """

    def __init__(self, name: str, mode: str, batch_size: int, img_size: Optional[int], device: str, dtype: str,
                 channels_last: bool, num_classes: int, task: str = 'cls',
                 model_kwargs: Optional[Mapping[str, Any]] = None, compile: Optional[str] = None,
                 checkpoint_steps: int = 0):
        self.name, self.mode, self.device, self.task = name, mode, device, task
        self.compile = compile or EAGER
        model = _create(task, name, num_classes, img_size, model_kwargs).to(device)
        if checkpoint_steps:
            set_step_checkpointing(model, checkpoint_steps)
        self.params = sum(p.numel() for p in model.parameters())
        if task == 'lm':
            seq_len = img_size or model.config.block_size
            self.x = torch.randint(0, model.config.vocab_size, (batch_size, seq_len), device=device)
            self.y = torch.randint(0, model.config.vocab_size, (batch_size, seq_len), device=device)
            self.samples = batch_size * seq_len
            self.size = seq_len
        else:
            mf = torch.channels_last if channels_last else torch.contiguous_format
            model.to(memory_format=mf)
            self.x = torch.randn(batch_size, 3, img_size, img_size, device=device).contiguous(memory_format=mf)
            self.y = torch.randint(0, num_classes, (batch_size,), device=device)
            self.samples = batch_size
            self.size = img_size
            self.loss = nn.CrossEntropyLoss()
        self.autocast = dtype != 'float32'
        self.dtype = getattr(torch, dtype)
        if mode == 'train':
            model.train()
            if task == 'lm':
                self.opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1)
            else:
                self.opt = torch.optim.SGD(model.parameters(), lr=1e-4)
        else:
            model.eval()
        self.model = model
        self.fn: Callable[..., Any] = model
        self.warmup_s = 0.0

    def compile_model(self, scope: str = 'model', block_types: Tuple[type, ...] = ()) -> None:
        """``torch.compile`` the model with this runner's backend (nothing when it runs eager).

        ``scope='model'`` compiles the whole module, as the training engine does (``wrap_model(compile=True)``),
        not the step. ``scope='blocks'`` compiles each module of ``block_types`` (the residual blocks) in place and
        runs the rest eagerly: regional compilation, where blocks of the same class and width share one compiled
        graph, so a deep model compiles in a fraction of the time, but nothing fuses across block boundaries.
        """
        if self.compile == EAGER:
            return
        if scope == 'model':
            self.fn = torch.compile(self.model, backend=self.compile, dynamic=False)
            return
        for m in self.model.modules():
            if isinstance(m, block_types):
                m.compile(backend=self.compile, dynamic=False)

    def _ctx(self):
        dev = torch.device(self.device).type
        return torch.autocast(dev, dtype=self.dtype, enabled=self.autocast)

    def _forward(self) -> torch.Tensor:
        """The training loss (language models compute it in their forward; inference runs it too)."""
        if self.task == 'lm':
            return self.fn(self.x, self.y)[1]
        out = self.fn(self.x)
        return self.loss(out, self.y) if self.mode == 'train' else out

    def step(self) -> None:
        if self.mode == 'train':
            self.opt.zero_grad(set_to_none=True)
            with self._ctx():
                loss = self._forward()
            loss.backward()
            self.opt.step()
        else:
            with torch.inference_mode(), self._ctx():
                self._forward()

    def warm_up(self, iters: int) -> None:
        """Run ``iters`` untimed iterations (compilation happens in the first); their wall time is ``warmup_s``."""
        sync(self.device)
        t0 = time.perf_counter()
        for _ in range(iters):
            self.step()
        sync(self.device)
        self.warmup_s = time.perf_counter() - t0

    def timed(self, iters: int, clock: Callable[[], float] = time.perf_counter) -> float:
        """Samples (images or tokens) per second over ``iters`` iterations, timed with ``clock``."""
        sync(self.device)
        t0 = clock()
        for _ in range(iters):
            self.step()
        sync(self.device)
        return iters * self.samples / (clock() - t0)

    def free(self) -> None:
        for attr in ('fn', 'model', 'x', 'y', 'opt'):
            if hasattr(self, attr):
                delattr(self, attr)


def clock_fn(clock: str, device: str) -> Callable[[], float]:
    """The timer of ``clock``: ``wall`` (``time.perf_counter``) or ``process`` (CPU time; CPU devices only)."""
    if clock not in ('wall', 'process'):
        raise ValueError(f"clock must be 'wall' or 'process', got {clock!r}")
    if clock == 'process' and not device.startswith('cpu'):
        raise ValueError(f"clock='process' measures CPU time and only applies to device cpu, got {device!r}")
    return time.process_time if clock == 'process' else time.perf_counter


def _check_args(mode: str, runs: int, iters: int, warmup: int, dtype: str, clock: str, device: str, task: str,
                channels_last: bool, compiled: bool) -> None:
    if mode not in ('infer', 'train'):
        raise ValueError(f"mode must be 'infer' or 'train', got {mode!r}")
    if runs < 1 or iters < 1 or warmup < 0:
        raise ValueError(f'need runs >= 1, iters >= 1, warmup >= 0; got runs={runs}, iters={iters}, warmup={warmup}')
    if compiled and warmup < 1:
        raise ValueError('a compiled model needs warmup >= 1 (its first iteration compiles), got warmup=0')
    if dtype not in ('float32', 'bfloat16', 'float16'):
        raise ValueError(f'dtype must be float32, bfloat16 or float16, got {dtype!r}')
    clock_fn(clock, device)
    _check_task(task)
    if task == 'lm' and channels_last:
        raise ValueError('channels_last applies to image models, not to task lm')


def _block_types(model: nn.Module) -> Tuple[type, ...]:
    """Classes of the blocks of a model's Steps trunks (of more than one step)."""
    types = {type(b) for m in model.modules() if isinstance(m, Steps) and m.plan.num_steps > 1 for b in m}
    return tuple(sorted(types, key=lambda t: t.__qualname__))


# the keyword arguments of benchmark_pairs that set how one cell is measured (benchmark_pair takes them too)
_SETTINGS = ('batch_size', 'img_size', 'device', 'dtype', 'channels_last', 'warmup', 'runs', 'iters', 'num_classes',
             'memory', 'progress', 'clock', 'task', 'model_kwargs', 'checkpoint_steps', 'compile_scope')


def _measure(
        baseline: str,
        steps: str,
        mode: str,
        variants: Sequence[Optional[str]],
        *,
        batch_size: int,
        img_size: Optional[int],
        device: str,
        dtype: str,
        channels_last: bool,
        warmup: int,
        runs: int,
        iters: int,
        num_classes: int,
        memory: bool,
        progress: bool,
        clock: str,
        task: str,
        model_kwargs: Optional[Mapping[str, Any]],
        checkpoint_steps: int,
        catch_oom: bool,
        profile: bool = False,
        compile_scope: str = 'model',
) -> Tuple[Dict[Optional[str], Dict[str, Any]], List[Dict[str, Any]]]:
    """One cell: both models in every compilation variant, warmed up, then all timed alternately.

    Returns:
        ``({variant: result}, profiles)``: a result is ``{'baseline': ..., 'steps': ..., 'ratio': ...,
        'ratio_of_medians': ...}`` or ``{'error': 'out of memory'}`` (only with ``catch_oom``); ``profiles`` has
        one entry per model (baseline, Steps, for each variant) with ``profile``, else is empty.
    """
    _check_args(mode, runs, iters, warmup, dtype, clock, device, task, channels_last, any(variants))
    if compile_scope not in ('model', 'blocks'):
        raise ValueError(f"compile_scope must be 'model' or 'blocks', got {compile_scope!r}")
    timer = clock_fn(clock, device)
    if any(variants):
        # every cell compiles from scratch: its warm-up time does not depend on what ran before, and models that
        # share a forward (a Steps model and its timm base class) do not pile up in one cache to its limit
        torch.compiler.reset()
    out: Dict[Optional[str], Dict[str, Any]] = {}
    runners: Dict[Optional[str], List[_Runner]] = {}
    for v in variants:
        built: List[_Runner] = []
        try:
            for name, ckpt in ((baseline, 0), (steps, checkpoint_steps)):
                built.append(_Runner(name, mode, batch_size, img_size, device, dtype, channels_last, num_classes,
                                     task, model_kwargs, v, ckpt))
            # regional compilation compiles the same block classes in both models: those of the Steps trunks
            types = _block_types(built[1].model) if v and compile_scope == 'blocks' else ()
            if v and compile_scope == 'blocks' and not types:
                raise ValueError(f"compile_scope='blocks' compiles the blocks of the Steps trunks, but {steps!r} has "
                                 'none; expected a Steps model second')
            for r in built:
                r.compile_model(compile_scope, types)
                r.warm_up(warmup)
        except RuntimeError as e:
            if not (catch_oom and is_oom(e)):
                raise
            for r in built:
                r.free()
            del built
            free_memory(device)
            out[v] = dict(error='out of memory')
            continue
        runners[v] = built
    order = [r for v in variants if v in runners for r in runners[v]]
    speeds: Dict[int, List[float]] = {id(r): [] for r in order}
    desc = f'{mode} {baseline} vs {steps}'
    for k in tqdm(range(runs), desc=desc, disable=not interactive(progress), leave=False):
        for r in (order if k % 2 == 0 else order[::-1]):
            speeds[id(r)].append(r.timed(iters, timer))
    profiles = [profile_ops(r, iters) for r in order] if profile else []
    for p, r in zip(profiles, order):
        p['step_ms'] = 1000.0 * r.samples / statistics.median(speeds[id(r)])
    for v, (rb, rs) in runners.items():
        res: Dict[str, Any] = {}
        for role, r in (('baseline', rb), ('steps', rs)):
            s = speeds[id(r)]
            med = statistics.median(s)
            res[role] = dict(model=r.name, samples_per_sec=med, step_time=1000.0 * r.samples / med, runs=s,
                             peak_mem_mb=None, param_count=r.params, warmup_s=r.warmup_s, size=r.size)
        res['ratio'] = statistics.median(b / a for a, b in zip(speeds[id(rb)], speeds[id(rs)]))
        res['ratio_of_medians'] = res['steps']['samples_per_sec'] / res['baseline']['samples_per_sec']
        out[v] = res
    if memory:  # one model at a time, after the timing (the others stay resident and untouched)
        for v, (rb, rs) in runners.items():
            for role, r in (('baseline', rb), ('steps', rs)):
                out[v][role]['peak_mem_mb'] = peak_memory_mb(r.step, device)
    for rs in runners.values():
        for r in rs:
            r.free()
    free_memory(device)
    return {v: out[v] for v in variants}, profiles


def benchmark_pair(
        baseline: str,
        steps: str,
        mode: str = 'infer',
        compile: Optional[str] = None,
        **settings: Any,
) -> Dict[str, Any]:
    """Measure one mode (``infer`` or ``train``) of a baseline / Steps pair, alternating the two models.

    ``clock='process'`` times with the CPU time of this process instead of the wall clock (CPU only): on a
    machine shared with other jobs, and with one thread, it counts only the time the model computed.

    Args:
        compile: A ``torch.compile`` backend (``'inductor'``) for both models, or None (eager).
        **settings: The settings of :func:`benchmark_pairs`, with its defaults: ``batch_size``, ``img_size``
            (image size, or context length for ``task='lm'``; None: the model's), ``device``, ``dtype``,
            ``channels_last``, ``warmup``, ``runs``, ``iters``, ``num_classes``, ``memory``, ``progress``,
            ``clock``, ``task`` (``'cls'``: timm classifiers, ``'lm'``: the language models of
            :mod:`stepsnet.models.steps_gpt`), ``model_kwargs`` (extra arguments for both models, e.g.
            ``{'n_layer': 16}``), ``checkpoint_steps`` (activation checkpointing of the first this many steps of
            the Steps model's trunks), ``compile_scope`` (``'model'``: the whole module, as the training engine;
            ``'blocks'``: each block of the Steps trunk's block classes, in both models: regional compilation,
            much faster to compile).

    Returns:
        ``{'baseline': {...}, 'steps': {...}, 'ratio': float, 'ratio_of_medians': float}``; each model entry
        has ``samples_per_sec`` (median; tokens per second for a language model), ``runs`` (every run),
        ``step_time`` (ms per iteration at the median), ``warmup_s`` (wall time of the warm-up, compilation
        included), ``peak_mem_mb`` and ``param_count``.
    """
    return _measure(baseline, steps, mode, (compile,), catch_oom=False, **_settings(settings))[0][compile]


def _settings(given: Mapping[str, Any]) -> Dict[str, Any]:
    """The measurement settings of one cell: ``given``, then :func:`benchmark_pairs`' defaults (one set of them)."""
    defaults = {k: p.default for k, p in inspect.signature(benchmark_pairs).parameters.items() if k in _SETTINGS}
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise TypeError(f'unknown benchmark settings {unknown}; expected some of {sorted(defaults)}')
    return {**defaults, **given}


def benchmark_pairs(
        pairs: Sequence[Tuple[str, str]],
        modes: Sequence[str] = ('infer', 'train'),
        batch_size: int = 32,
        img_size: Optional[int] = 224,
        device: str = 'cpu',
        dtype: str = 'float32',
        channels_last: bool = False,
        warmup: int = 2,
        runs: int = 5,
        iters: int = 3,
        num_classes: int = 1000,
        memory: bool = True,
        progress: bool = False,
        clock: str = 'wall',
        task: str = 'cls',
        model_kwargs: Optional[Mapping[str, Any]] = None,
        compile: Sequence[Optional[str]] = (None,),
        checkpoint_steps: int = 0,
        compile_scope: str = 'model',
        batch_sizes: Optional[Sequence[int]] = None,
        deadline: Optional[float] = None,
        profiles: Optional[List[Dict[str, Any]]] = None,
        on_rows: Optional[Callable[[List[Dict[str, Any]]], None]] = None,
) -> List[Dict[str, Any]]:
    """Benchmark every pair in every mode, batch size and compilation; one CSV-ready row per model and setting.

    Each row holds ``pair`` (``baseline,steps``), ``role``, ``task``, ``compile`` (``none`` or the backend) and
    ``compile_scope``,
    ``<mode>_ratio`` (Steps / baseline throughput, 1.0 on the baseline row), ``<mode>_runs`` (every run),
    ``<mode>_warmup_s``, the peak memory, and the environment. The compilation variants of a pair, mode and batch
    size are timed in the same alternating rounds. A cell that runs out of memory gets ``<mode>_error`` and the
    others go on; a cell that would start after ``deadline`` (a :func:`time.monotonic` value), or sooner than the
    longest cell so far would take, is skipped the same way.

    Args:
        batch_sizes: Several batch sizes (overrides ``batch_size``); the outer loop, so a time budget keeps the
            first batch size of every pair.
        profiles: When a list, a per-operator profile of each model in every cell is appended to it (see
            :func:`format_profile`).
        on_rows: Called with the rows finished so far after each pair (to write them out as they come).
    """
    _check_task(task)
    env = environment(device)
    unit_rate, unit_size, _ = UNITS[task]
    variants = list(compile)
    rows: Dict[Tuple[Any, ...], Dict[str, Any]] = {}
    longest = 0.0
    kwargs_text = ' '.join(f'{k}={v}' for k, v in (model_kwargs or {}).items())
    for bs in (batch_sizes or [batch_size]):
        for baseline, steps in pairs:
            pair = f'{baseline},{steps}'
            for mode in modes:
                start = time.monotonic()
                if deadline is not None and start + longest > deadline:
                    cell: Dict[Any, Dict[str, Any]] = {v: dict(error='skipped (time budget)') for v in variants}
                else:
                    cell, profs = _measure(
                        baseline, steps, mode, variants, batch_size=bs, img_size=img_size, device=device,
                        dtype=dtype, channels_last=channels_last, warmup=warmup, runs=runs, iters=iters,
                        num_classes=num_classes, memory=memory, progress=progress, clock=clock, task=task,
                        model_kwargs=model_kwargs, checkpoint_steps=checkpoint_steps, catch_oom=True,
                        profile=profiles is not None, compile_scope=compile_scope)
                    longest = max(longest, time.monotonic() - start)
                    if profiles is not None:
                        profiles.extend(profs)
                if progress:
                    tqdm.write(f'{mode} {pair} batch {bs}: {_cell_line(cell, variants)} '
                               f'({time.monotonic() - start:.0f}s)')
                for v in variants:
                    res = cell[v]
                    for role, name in (('baseline', baseline), ('steps', steps)):
                        row = rows.setdefault((bs, pair, v, role), dict(
                            model=name, pair=pair, role=role, task=task, compile=v or EAGER,
                            compile_scope=compile_scope if v else '',
                            model_kwargs=kwargs_text, checkpoint_steps=checkpoint_steps if role == 'steps' else 0))
                        row[f'{mode}_batch_size'] = bs
                        if 'error' in res:
                            row[f'{mode}_{unit_size}'] = img_size
                            row[f'{mode}_error'] = res['error']
                            continue
                        r = res[role]
                        row[f'{mode}_{unit_size}'] = r['size']
                        row[f'{mode}_{unit_rate}'] = round(r['samples_per_sec'], 2)
                        row[f'{mode}_step_time'] = round(r['step_time'], 3)
                        row[f'{mode}_peak_mem_mb'] = None if r['peak_mem_mb'] is None else round(r['peak_mem_mb'], 1)
                        row[f'{mode}_ratio'] = 1.0 if role == 'baseline' else round(res['ratio'], 4)
                        row[f'{mode}_warmup_s'] = round(r['warmup_s'], 2)
                        row[f'{mode}_runs'] = ' '.join(f'{s:.2f}' for s in r['runs'])
                        row['param_count'] = round(r['param_count'] / 1e6, 2)
            for key, row in rows.items():
                if key[1] == pair and key[0] == bs:
                    row.update(dtype=dtype, memory_format='channels_last' if channels_last else 'nchw',
                               warmup=warmup, runs=runs, iters=iters, clock=clock, **env)
            if on_rows is not None:
                on_rows(list(rows.values()))
    return list(rows.values())


def _cell_line(cell: Mapping[Any, Mapping[str, Any]], variants: Sequence[Optional[str]]) -> str:
    """The progress line's words for one cell: ``Steps / baseline 0.812`` (eager only), ``Steps / baseline 0.812
    eager, 0.934 compiled with inductor``, or what stopped a variant (``out of memory``)."""
    def value(v):
        return cell[v]['error'] if 'error' in cell[v] else f'{cell[v]["ratio"]:.3f}'
    if variants == [None]:
        return f'Steps / baseline {value(None)}'
    return 'Steps / baseline ' + ', '.join(f'{value(v)} ' + (f'compiled with {v}' if v else 'eager') for v in variants)
