"""What a dry run measures and what it projects (``--dry-run`` on every training command).

A dry run builds everything a recipe asks for (model, data pipeline, optimizer, schedule, EMA, loss), trains a few
optimizer steps and evaluates one batch, writes nothing into the run folder and prints a report: parameters, the
multiply-accumulates (MACs, the paper's "GFLOPs") of one training step, the effective batch, the time per step
(the first one, which includes warm-up and compilation, apart), the peak memory, the throughput, the projected wall
time of the whole recipe on this machine and process count, and the recipe's A100-hour floor.
It is the check to run before queueing a long job (Lightning's ``fast_dev_run`` and mmengine's config checks are the
same idea).

The projection is arithmetic on what was measured: ``total_steps x (median step time) + evaluations x (batches per
evaluation) x (time of the one evaluated batch)``. It assumes the measured steps are representative (no warm-up
left after the first step, data loading keeping up, evaluation batches as fast as the one measured); with a batch
cut below the recipe's the steps are more numerous and each one cheaper, so the projection holds only as far as
time scales linearly with the batch.

Beside the projection it prints the A100-hour floor of the recipe (:func:`a100_floor`, the number
docs/full-scale.md tabulates): the training FLOPs counted on the first step times the items the recipe trains on, at
:data:`ASSUMED_UTILISATION` of the A100's dense bfloat16 peak, an assumption, not a measurement.

One convention for model cost everywhere (``stepsnet models``, the README, this report): multiply-accumulates
("MACs"; the paper's, timm's and fvcore's "GFLOPs"). :func:`count_call_flops` returns the FLOPs of
:class:`torch.utils.flop_counter.FlopCounterMode`, 2 per multiply-accumulate; the report prints half of them as
MACs and keeps the counter's number in its JSON (``train_flops_per_step``) next to ``train_macs_per_step``.

On a CPU a recipe's bfloat16 / float16 autocast is slow (emulated on most CPUs: 20 minutes and more for two steps
of the medium language model), so a dry run on a CPU runs its steps and its evaluation batch in float32
(:func:`dry_run_amp`) and says so; the model, data path, optimizer and evaluation are the recipe's.
"""
from __future__ import annotations

import json
import math
import resource
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch

from stepsnet.utils.checkpoint import atomic_write_text
from stepsnet.utils.names import plural
from stepsnet.utils.tasks import TASKS, task_of_kind

__all__ = ['DryRunReport', 'DryRunMeter', 'Resized', 'count_call_flops', 'A100_BF16_PEAK', 'ASSUMED_UTILISATION',
           'RECIPE_PROCESSES', 'RUN_LENGTH_FIELDS', 'A100Floor', 'a100_floor', 'recipe_items', 'task_of_kind',
           'dry_run_amp', 'MAC_HEADER']

# the fields that set how many items a run trains on: a dry run that cuts them still prints the recipe's floor
RUN_LENGTH_FIELDS = ('batch_size', 'grad_accum', 'epochs', 'max_iters')
A100_BF16_PEAK = 312e12  # FLOP/s, dense bfloat16 (NVIDIA's A100 data sheet)
ASSUMED_UTILISATION = 0.4  # an assumption, not a measurement
# the process count each paper recipe is written for (its header): the image recipes 8 GPUs, the language models one
RECIPE_PROCESSES = {t.name: t.recipe_processes for t in TASKS.values()}
# how every printed header names the unit of model cost
MAC_HEADER = "GMACs (multiply-accumulates; the paper's 'GFLOPs')"


def _field(cfg: Any, name: str, default: Any = None) -> Any:
    return cfg.get(name, default) if isinstance(cfg, Mapping) else getattr(cfg, name, default)


def recipe_items(task: str, cfg: Any, items_per_step: float, total_steps: int,
                 ran: Optional[Any] = None) -> Tuple[float, str]:
    """The items (images or tokens) a recipe trains on at its own process count (:data:`RECIPE_PROCESSES`), and
    how that was counted.

    ``cfg`` is the recipe's config (a dataclass or its ``config_dict``); ``items_per_step`` (all processes) and
    ``total_steps`` are those of a dry run of ``ran``, the config it ran (default ``cfg``: the dry run changed nothing
    that counts; a dry run is usually given a cut batch). A run length in steps (language models, segmentation) is
    ``max_iters`` steps of ``cfg``'s batch on the recipe's processes; one in epochs (classification, detection) covers
    the same images at any batch, so the dry run's steps times its items per step, scaled from ``ran``'s epochs to
    ``cfg``'s. Which a task is, and what its items are, its row of :data:`~stepsnet.utils.tasks.TASKS` says.
    """
    n, row = RECIPE_PROCESSES[task], TASKS[task]
    ran = cfg if ran is None else ran
    if row.run_length == 'steps':
        batch, accum, iters = _field(cfg, 'batch_size'), _field(cfg, 'grad_accum', 1), _field(cfg, 'max_iters')
        if row.item == 'tokens':
            # no block size: the model's context, as many tokens per sequence as the dry run saw
            ran_seqs = _field(ran, 'batch_size') * _field(ran, 'grad_accum', 1)
            block = _field(cfg, 'block_size') or items_per_step / max(ran_seqs, 1)
            return iters * batch * block * accum * n, \
                f'{n} x {batch} x {block:g} x {accum} tokens x {iters:,} steps'
        per_step = f'{batch} x {accum}' if accum != 1 else f'{batch}'
        return iters * batch * accum * n, f'{n} x {per_step} {row.item} x {iters:,} steps'
    epochs, ran_epochs = _field(cfg, 'epochs'), _field(ran, 'epochs')
    items = items_per_step * total_steps * (epochs / ran_epochs if epochs and ran_epochs else 1)
    return items, f'{items:,.0f} {row.item}'


@dataclass(frozen=True)
class A100Floor:
    """A recipe's A100-hour floor (:func:`a100_floor`)."""
    hours: float
    flops: float  # training FLOPs of the recipe (2 per multiply-accumulate, as the peak counts them)
    items: float
    counted: str  # how the items were counted

    @property
    def macs(self) -> float:
        return self.flops / 2

    def line(self) -> str:
        return (f'{self.hours:,.1f} h at {ASSUMED_UTILISATION:.0%} of the bf16 peak, an assumption, not a '
                f'measurement ({self.counted})')


def a100_floor(task: str, cfg: Any, train_flops_per_item: float, items_per_step: float,
               total_steps: int, ran: Optional[Any] = None) -> A100Floor:
    """The A100-hours a recipe's training takes at best: its training FLOPs (``train_flops_per_item``, the
    counter's FLOPs of one item's forward and backward, 2 per multiply-accumulate, times :func:`recipe_items`) at
    :data:`ASSUMED_UTILISATION` of the A100's dense bfloat16 peak (:data:`A100_BF16_PEAK`). A floor, not a
    forecast: evaluation, data loading and communication are left out. The dry run's report prints it and
    docs/full-scale.md tabulates it (scripts/render_results.py). ``ran``: the config the dry run ran, when it is not
    ``cfg`` (:func:`recipe_items`)."""
    items, counted = recipe_items(task, cfg, items_per_step, total_steps, ran)
    flops = train_flops_per_item * items
    return A100Floor(flops / (A100_BF16_PEAK * ASSUMED_UTILISATION) / 3600, flops, items, counted)


def dry_run_amp(amp: bool, amp_dtype: str, device: str, dry_run: int) -> Tuple[bool, str]:
    """``(amp, note)``: the autocast a run's steps use. A dry run on a CPU runs in float32 (the precision CPUs run
    fastest: bfloat16 / float16 autocast is emulated on most), with a note saying so; otherwise the recipe's."""
    if amp and dry_run and torch.device(device).type == 'cpu':
        return False, f"on cpu the step runs in float32; the recipe's {amp_dtype} autocast applies on a GPU"
    return amp, ''


class Resized(torch.utils.data.Dataset):
    """``dataset`` seen with another length: its first ``length`` items, or its items repeated up to ``length``.

    A dry run evaluates the first batch of the validation set (a cut), and with ``--synthetic-data`` trains on a few
    generated images seen as many as the real data set holds (so that the steps per epoch, the schedule and the
    projection are the recipe's own). Attributes of the wrapped data set are forwarded; ``ids`` (COCO image ids)
    follows the new length.
    """

    def __init__(self, dataset: Any, length: int):
        if len(dataset) == 0:
            raise ValueError('cannot resize an empty data set')
        self.dataset, self.length = dataset, int(length)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Any:
        if not 0 <= index < self.length:
            raise IndexError(f'index {index} out of range for {self.length} items')
        return self.dataset[index % len(self.dataset)]

    @property
    def ids(self) -> List[Any]:
        ids = self.dataset.ids
        return [ids[i % len(ids)] for i in range(self.length)]

    def __getattr__(self, name: str) -> Any:
        if name in ('dataset', 'length') or name.startswith('__'):  # not set yet (unpickling in a worker)
            raise AttributeError(name)
        return getattr(self.dataset, name)


def count_call_flops(fn, *args: Any, **kwargs: Any):
    """``(result of fn(*args, **kwargs), FLOPs it ran)`` counted by :class:`torch.utils.flop_counter.FlopCounterMode`
    (matrix products and convolutions, forward and backward; 2 FLOPs per multiply-accumulate: the report prints
    half of them as MACs)."""
    from torch.utils.flop_counter import FlopCounterMode
    counter = FlopCounterMode(display=False)
    with counter:
        out = fn(*args, **kwargs)
    return out, int(counter.get_total_flops())


def _hms(seconds: float) -> str:
    if not math.isfinite(seconds):
        return 'unknown'
    if seconds < 120:
        return f'{seconds:.1f} s'
    if seconds < 3600:
        return f'{seconds / 60:.1f} min'
    hours = seconds / 3600
    return f'{hours:.1f} h' if hours < 48 else f'{hours / 24:.1f} days ({hours:,.0f} h)'


def _macs(n: float) -> str:
    for unit, scale in (('PMACs', 1e15), ('TMACs', 1e12), ('GMACs', 1e9), ('MMACs', 1e6)):
        if n >= scale:
            return f'{n / scale:.3g} {unit}'
    return f'{n:.3g} MACs'


def _bytes(n: Optional[int]) -> str:
    return 'unknown' if n is None else f'{n / 2 ** 30:.2f} GiB'


@dataclass
class DryRunReport:
    """The facts a dry run measured and the projection of the whole recipe from them (see the module docstring)."""
    kind: str
    model: str
    device: str
    processes: int
    params: int
    # forward and backward of one step on this process, counted on step 1: the counter's FLOPs (2 per MAC)
    train_flops_per_step: Optional[int]
    item_name: str
    items_per_micro_batch: float  # per process
    accumulation: int
    items_per_step: int  # all processes
    steps: int  # trained in the dry run
    first_step_s: float
    step_s: Optional[float]  # median of the steps after the first (None: only one step ran)
    eval_batch_s: Optional[float]
    eval_batches: int  # per evaluation, per process, in the full run
    evaluations: int  # in the full run
    total_steps: int  # of the full run
    peak_memory_bytes: Optional[int]
    peak_memory_kind: str  # 'cuda max allocated' or 'process peak RSS'
    amp: str
    compiled: bool
    losses: List[float] = field(default_factory=list)
    params_changed: bool = False
    notes: List[str] = field(default_factory=list)
    recipe_amp: str = ''  # the recipe's autocast dtype ('' without); ``amp`` is what the steps ran in
    a100_floor_h: Optional[float] = None  # the recipe's A100-hour floor (:func:`a100_floor`); None: not counted
    a100_floor_items: str = ''  # the items it counts

    @property
    def train_macs_per_step(self) -> Optional[int]:
        """Multiply-accumulates (the paper's "FLOPs") of one step: the counter's FLOPs / 2."""
        return None if self.train_flops_per_step is None else self.train_flops_per_step // 2

    @property
    def typical_step_s(self) -> float:
        return self.step_s if self.step_s is not None else self.first_step_s

    @property
    def items_per_s(self) -> float:
        return self.items_per_step / self.typical_step_s if self.typical_step_s > 0 else float('nan')

    @property
    def projected_train_s(self) -> float:
        return self.total_steps * self.typical_step_s

    @property
    def projected_eval_s(self) -> float:
        return self.evaluations * self.eval_batches * (self.eval_batch_s or 0.0)

    @property
    def projected_s(self) -> float:
        return self.projected_train_s + self.projected_eval_s

    @property
    def device_hours(self) -> float:
        return self.projected_s * self.processes / 3600

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d.update(train_macs_per_step=self.train_macs_per_step, typical_step_s=self.typical_step_s,
                 items_per_s=self.items_per_s, projected_train_s=self.projected_train_s,
                 projected_eval_s=self.projected_eval_s, projected_s=self.projected_s, device_hours=self.device_hours)
        return d

    def lines(self) -> List[str]:
        unit = self.item_name
        one = unit[:-1] if unit.endswith('s') else unit
        per_item = (self.train_macs_per_step or 0) / max(self.items_per_micro_batch * self.accumulation, 1)
        macs = ('not counted (compiled model)' if self.train_macs_per_step is None else
                f'{_macs(self.train_macs_per_step)} per training step on this process ({_macs(per_item)} per '
                f'{one}, forward and backward; torch.utils.flop_counter\'s FLOPs / 2)')
        floor = ('not counted' if self.a100_floor_h is None else
                 f'{self.a100_floor_h:,.1f} h at {ASSUMED_UTILISATION:.0%} of the bf16 peak, an assumption, not a '
                 f'measurement ({self.a100_floor_items})')
        steps = 'step 2' if self.steps == 2 else f'the median of steps 2-{self.steps}'
        later = (f'{self.step_s:.3f} s ({steps})' if self.step_s is not None
                 else 'only one step ran (its time, with the warm-up, is used below)')
        hw = 'GPU' if self.device.startswith('cuda') else 'CPU process'
        out = [
            f'dry run of {self.model} ({self.kind}) on {self.device}, '
            f'{plural(self.processes, "process", "processes")}, '
            f'{"compiled, " if self.compiled else ""}{"autocast " + self.amp if self.amp else "float32"}',
            f'  parameters:        {self.params:,} ({self.params / 1e6:.2f}M)',
            f'  {MAC_HEADER}:',
            f'                     {macs}',
            f'  effective batch:   {self.items_per_micro_batch:g} {unit} per process x '
            f'{plural(self.processes, "process", "processes")} '
            f'x {self.accumulation} accumulation = {self.items_per_step:,} {unit} per step',
            f'  time per step:     first {self.first_step_s:.3f} s (warm-up{", compilation" if self.compiled else ""} '
            f'included); then {later}',
            f'  throughput:        {self.items_per_s:,.1f} {unit}/s',
            f'  evaluation:        one batch in {self.eval_batch_s:.3f} s; a full evaluation is {self.eval_batches:,} '
            f'batch{"" if self.eval_batches == 1 else "es"} per process, {plural(self.evaluations, "evaluation")} in '
            'the run'
            if self.eval_batch_s is not None else
            '  evaluation:        not measured',
            f'  peak memory:       {_bytes(self.peak_memory_bytes)} ({self.peak_memory_kind})',
            f'  losses:            {", ".join(f"{v:.4f}" for v in self.losses)}; parameters changed: '
            f'{"yes" if self.params_changed else "NO"}',
            f'  whole run here:    {self.total_steps:,} step{"" if self.total_steps == 1 else "s"} x '
            f'{self.items_per_step:,} {unit} -> '
            f'{_hms(self.projected_s)} (training {_hms(self.projected_train_s)}, evaluation '
            f'{_hms(self.projected_eval_s)}), {self.device_hours:,.1f} {hw}-hours',
            '                     (the run as configured, at this batch and process count: a run length in epochs '
            'keeps its items, one in steps (max_iters) trains on fewer items when the batch or the processes are '
            'cut)',
            f'  A100 floor:        {floor}',
        ]
        out += [f'  note: {n}' for n in self.notes]
        return out

    def write_json(self, path: str) -> None:
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2))


class DryRunMeter:
    """Collects a dry run's measurements as :func:`stepsnet.engine.fit` runs it."""

    def __init__(self, device: str):
        self.device = device
        self.cuda = device.startswith('cuda')
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(device)
        self.step_times: List[float] = []
        self.losses: List[float] = []
        self.flops: Optional[int] = None
        self.eval_s: Optional[float] = None
        self.items: Optional[int] = None
        self.micro: Optional[int] = None
        self._t = 0.0

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def start_eval(self) -> None:
        self.sync()
        self._t = time.perf_counter()

    def stop_eval(self) -> None:
        self.sync()
        self.eval_s = time.perf_counter() - self._t

    def peak_memory(self):
        if self.cuda:
            return int(torch.cuda.max_memory_allocated(self.device)), 'CUDA max allocated'
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
        return int(rss if sys.platform == 'darwin' else rss * 1024), 'peak RSS of the process'

    def step_median(self) -> Optional[float]:
        return statistics.median(self.step_times[1:]) if len(self.step_times) > 1 else None
