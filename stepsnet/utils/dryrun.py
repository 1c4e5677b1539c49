"""What a dry run measures and what it projects (``--dry-run`` on every training command).

A dry run builds everything a recipe asks for (model, data pipeline, optimizer, schedule, EMA, loss), trains a few
optimizer steps and evaluates one batch, writes nothing into the run folder and prints a report: parameters, the
FLOPs of one training step, the effective batch, the time per step (the first one, which includes warm-up and
compilation, apart), the peak memory, the throughput and the projected wall time of the whole recipe on this
machine and process count. It is the check to run before queueing a long job (Lightning's ``fast_dev_run`` and
mmengine's config checks are the same idea).

The projection is arithmetic on what was measured: ``total_steps x (median step time) + evaluations x (batches per
evaluation) x (time of the one evaluated batch)``. It assumes the measured steps are representative (no warm-up
left after the first step, data loading keeping up, evaluation batches as fast as the one measured); with a batch
cut below the recipe's the steps are more numerous and each one cheaper, so the projection holds only as far as
time scales linearly with the batch.
"""
from __future__ import annotations

import json
import math
import resource
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional

import torch

from stepsnet.utils.checkpoint import atomic_write_text
from stepsnet.utils.names import plural

__all__ = ['DryRunReport', 'DryRunMeter', 'Resized', 'count_flops']


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


def count_flops(fn, *args: Any, **kwargs: Any):
    """``(result of fn(*args, **kwargs), FLOPs it ran)`` counted by :class:`torch.utils.flop_counter.FlopCounterMode`
    (matrix products and convolutions, forward and backward; 2 FLOPs per multiply-add)."""
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


def _flops(n: float) -> str:
    for unit, scale in (('PFLOPs', 1e15), ('TFLOPs', 1e12), ('GFLOPs', 1e9), ('MFLOPs', 1e6)):
        if n >= scale:
            return f'{n / scale:.3g} {unit}'
    return f'{n:.3g} FLOPs'


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
    train_flops_per_step: Optional[int]  # forward and backward of one step on this process, counted on step 1
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
        d.update(typical_step_s=self.typical_step_s, items_per_s=self.items_per_s,
                 projected_train_s=self.projected_train_s, projected_eval_s=self.projected_eval_s,
                 projected_s=self.projected_s, device_hours=self.device_hours)
        return d

    def lines(self) -> List[str]:
        unit = self.item_name
        one = unit[:-1] if unit.endswith('s') else unit
        per_item = (self.train_flops_per_step or 0) / max(self.items_per_micro_batch * self.accumulation, 1)
        flops = ('not counted (compiled model)' if self.train_flops_per_step is None else
                 f'{_flops(self.train_flops_per_step)} per training step on this process ({_flops(per_item)} per '
                 f'{one}, forward and backward)')
        steps = 'step 2' if self.steps == 2 else f'the median of steps 2-{self.steps}'
        later = (f'{self.step_s:.3f} s ({steps})' if self.step_s is not None
                 else 'only one step ran (its time, with the warm-up, is used below)')
        hw = 'GPU' if self.device.startswith('cuda') else 'CPU process'
        out = [
            f'dry run of {self.model} ({self.kind}) on {self.device}, '
            f'{plural(self.processes, "process", "processes")}, '
            f'{"compiled, " if self.compiled else ""}{"autocast " + self.amp if self.amp else "float32"}',
            f'  parameters:        {self.params:,} ({self.params / 1e6:.2f}M)',
            f'  FLOPs:             {flops}',
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
