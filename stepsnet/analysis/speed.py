"""Throughput and peak memory of baseline / Steps model pairs, measured the same way for both.

How a pair is measured (``benchmark_pair``):

* both models are built in the same process, on the same device, dtype and memory format, from random weights;
* each gets ``warmup`` untimed iterations, then ``runs`` timed runs of ``iters`` iterations each, the two models
  *alternating* run by run (A B, B A, A B, ...), so slow drifts of the machine (thermal, other jobs) hit both;
* throughput is images per second of a run; a model's figure is the median over its runs, and the pair's
  ratio is the median of the per-round ratios ``steps / baseline`` (robust to a noisy round);
* training iterations are forward + cross-entropy + backward + SGD step (as timm's ``benchmark.py``);
* peak memory is measured in a separate, untimed pass: on CUDA the peak allocated bytes during one
  iteration; on a Linux CPU the growth of the peak resident set (``VmHWM``) during one iteration, after
  making glibc return freed blocks to the system (so this is the memory the iteration needs on top of the
  resident model; it is approximate).

Rows use timm's ``benchmark.py`` column names (``infer_samples_per_sec``, ``infer_step_time`` in ms,
``infer_batch_size``, ``infer_img_size``, ``param_count`` in millions, ``train_*``) plus the device, dtype,
memory format, library versions and the ratios.
"""
from __future__ import annotations

import csv
import ctypes
import gc
import io
import os
import platform
import statistics
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import timm
import torch
import torch.nn as nn
from tqdm import tqdm

import stepsnet
from stepsnet.models.factory import create_classifier
from stepsnet.steps import Steps
from stepsnet.utils.checkpoint import atomic_write_text

__all__ = ['parse_pair', 'check_pair', 'benchmark_pair', 'benchmark_pairs', 'format_ratios', 'write_csv', 'read_csv',
           'plot_ratios', 'environment']


def parse_pair(text: str) -> Tuple[str, str]:
    """``'resnet50,steps_resnet50'`` -> ``('resnet50', 'steps_resnet50')`` (baseline first)."""
    parts = [p.strip() for p in text.split(',')]
    if len(parts) != 2 or not all(parts):
        raise ValueError(f'a pair is BASELINE,STEPS (two timm model names separated by a comma), got {text!r}')
    return parts[0], parts[1]


def check_pair(baseline: str, steps: str, tolerance: float = 0.05) -> None:
    """Refuse a pair whose ratio would mean nothing: the Steps model second, the two of about the same size.

    Both are built on the meta device (no memory, no compute).

    Raises:
        ValueError: The second model has no Steps module or the first has one (a swapped pair), or their
            parameter counts differ by more than ``tolerance`` (models of different sizes).
    """
    with torch.device('meta'):
        models = {n: create_classifier(n, 1000) for n in (baseline, steps)}
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


def _sync(device: str) -> None:
    if device.startswith('cuda'):
        torch.cuda.synchronize()


class _Runner:
    """One model ready to run inference or training iterations on a fixed random batch."""

    def __init__(self, name: str, mode: str, batch_size: int, img_size: int, device: str, dtype: str,
                 channels_last: bool, num_classes: int):
        self.name, self.mode, self.device = name, mode, device
        self.model = create_classifier(name, num_classes, img_size).to(device)
        self.params = sum(p.numel() for p in self.model.parameters())
        mf = torch.channels_last if channels_last else torch.contiguous_format
        self.model.to(memory_format=mf)
        self.x = torch.randn(batch_size, 3, img_size, img_size, device=device).contiguous(memory_format=mf)
        self.y = torch.randint(0, num_classes, (batch_size,), device=device)
        self.autocast = dtype != 'float32'
        self.dtype = getattr(torch, dtype)
        if mode == 'train':
            self.model.train()
            self.opt = torch.optim.SGD(self.model.parameters(), lr=1e-4)
            self.loss = nn.CrossEntropyLoss()
        else:
            self.model.eval()

    def _ctx(self):
        dev = torch.device(self.device).type
        return torch.autocast(dev, dtype=self.dtype, enabled=self.autocast)

    def step(self) -> None:
        if self.mode == 'train':
            self.opt.zero_grad(set_to_none=True)
            with self._ctx():
                loss = self.loss(self.model(self.x), self.y)
            loss.backward()
            self.opt.step()
        else:
            with torch.inference_mode(), self._ctx():
                self.model(self.x)

    def timed(self, iters: int, clock: Callable[[], float] = time.perf_counter) -> float:
        """Images per second over ``iters`` iterations, timed with ``clock``."""
        _sync(self.device)
        t0 = clock()
        for _ in range(iters):
            self.step()
        _sync(self.device)
        return iters * self.x.shape[0] / (clock() - t0)

    def free(self) -> None:
        for attr in ('model', 'x', 'y', 'opt'):
            if hasattr(self, attr):
                delattr(self, attr)


def _read_status_kb(key: str) -> Optional[int]:
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith(key + ':'):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _libc() -> Optional[Any]:
    try:
        libc = ctypes.CDLL('libc.so.6')
        libc.mallopt(-3, 64 * 1024)  # M_MMAP_THRESHOLD: large blocks are mmapped and unmapped on free
        libc.mallopt(-1, 64 * 1024)  # M_TRIM_THRESHOLD: give the heap top back early
        return libc
    except (OSError, AttributeError):
        return None


def peak_memory_mb(step: Callable[[], None], device: str) -> Optional[float]:
    """Memory one call of ``step`` needs on top of what is already allocated (MiB), or None if unmeasurable."""
    if device.startswith('cuda'):
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        step()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - before) / 2 ** 20
    libc = _libc()
    if libc is None or _read_status_kb('VmHWM') is None:
        return None
    gc.collect()
    libc.malloc_trim(0)
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')  # reset VmHWM to the current resident set
    except OSError:
        return None
    before = _read_status_kb('VmRSS')
    step()
    peak = _read_status_kb('VmHWM')
    return max(0.0, (peak - before) / 1024.0)


def benchmark_pair(
        baseline: str,
        steps: str,
        mode: str = 'infer',
        batch_size: int = 32,
        img_size: int = 224,
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
) -> Dict[str, Any]:
    """Measure one mode (``infer`` or ``train``) of a baseline / Steps pair, alternating the two models.

    ``clock='process'`` times with the CPU time of this process instead of the wall clock (CPU only): on a
    machine shared with other jobs, and with one thread, it counts only the time the model computed.

    Returns:
        ``{'baseline': {...}, 'steps': {...}, 'ratio': float, 'ratio_of_medians': float}``; each model entry
        has ``samples_per_sec`` (median), ``runs`` (every run), ``step_time`` (ms per iteration at the median),
        ``peak_mem_mb`` and ``param_count``.
    """
    if mode not in ('infer', 'train'):
        raise ValueError(f"mode must be 'infer' or 'train', got {mode!r}")
    if runs < 1 or iters < 1 or warmup < 0:
        raise ValueError(f'need runs >= 1, iters >= 1, warmup >= 0; got runs={runs}, iters={iters}, warmup={warmup}')
    if dtype not in ('float32', 'bfloat16', 'float16'):
        raise ValueError(f'dtype must be float32, bfloat16 or float16, got {dtype!r}')
    if clock not in ('wall', 'process'):
        raise ValueError(f"clock must be 'wall' or 'process', got {clock!r}")
    if clock == 'process' and not device.startswith('cpu'):
        raise ValueError(f"clock='process' measures CPU time and only applies to device cpu, got {device!r}")
    clock_fn = time.process_time if clock == 'process' else time.perf_counter
    runners = [_Runner(n, mode, batch_size, img_size, device, dtype, channels_last, num_classes)
               for n in (baseline, steps)]
    for r in runners:
        for _ in range(warmup):
            r.step()
    _sync(device)
    speeds: List[List[float]] = [[], []]
    for k in tqdm(range(runs), desc=f'{mode} {baseline} vs {steps}', disable=not progress, leave=False):
        order = (0, 1) if k % 2 == 0 else (1, 0)
        for i in order:
            speeds[i].append(runners[i].timed(iters, clock_fn))
    mems = [peak_memory_mb(r.step, device) if memory else None for r in runners]
    out: Dict[str, Any] = {}
    for role, r, s, m in zip(('baseline', 'steps'), runners, speeds, mems):
        med = statistics.median(s)
        out[role] = dict(model=r.name, samples_per_sec=med, step_time=1000.0 * batch_size / med, runs=s,
                         peak_mem_mb=m, param_count=r.params)
        r.free()
    out['ratio'] = statistics.median(b / a for a, b in zip(speeds[0], speeds[1]))
    out['ratio_of_medians'] = out['steps']['samples_per_sec'] / out['baseline']['samples_per_sec']
    return out


def benchmark_pairs(
        pairs: Sequence[Tuple[str, str]],
        modes: Sequence[str] = ('infer', 'train'),
        batch_size: int = 32,
        img_size: int = 224,
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
) -> List[Dict[str, Any]]:
    """Benchmark every pair in every mode; one CSV-ready row per model (timm's column names).

    Each row also holds ``pair`` (``baseline,steps``), ``role``, ``<mode>_ratio`` (Steps / baseline throughput,
    1.0 on the baseline row), ``<mode>_runs`` (every run's images/s), the peak memory, and the environment.
    """
    env = environment(device)
    rows: List[Dict[str, Any]] = []
    for baseline, steps in pairs:
        pair_rows = {role: dict(model=name, pair=f'{baseline},{steps}', role=role)
                     for role, name in (('baseline', baseline), ('steps', steps))}
        for mode in modes:
            res = benchmark_pair(baseline, steps, mode, batch_size, img_size, device, dtype, channels_last, warmup,
                                 runs, iters, num_classes, memory, progress, clock)
            for role in ('baseline', 'steps'):
                r = res[role]
                row = pair_rows[role]
                row[f'{mode}_samples_per_sec'] = round(r['samples_per_sec'], 2)
                row[f'{mode}_step_time'] = round(r['step_time'], 3)
                row[f'{mode}_batch_size'] = batch_size
                row[f'{mode}_img_size'] = img_size
                row[f'{mode}_peak_mem_mb'] = None if r['peak_mem_mb'] is None else round(r['peak_mem_mb'], 1)
                row[f'{mode}_ratio'] = 1.0 if role == 'baseline' else round(res['ratio'], 4)
                row[f'{mode}_runs'] = ' '.join(f'{s:.2f}' for s in r['runs'])
                row['param_count'] = round(r['param_count'] / 1e6, 2)
        for role in ('baseline', 'steps'):
            pair_rows[role].update(dtype=dtype, memory_format='channels_last' if channels_last else 'nchw',
                                   warmup=warmup, runs=runs, iters=iters, clock=clock, **env)
            rows.append(pair_rows[role])
    return rows


def format_ratios(rows: Sequence[Dict[str, Any]]) -> str:
    """A markdown table: per pair, throughput of both models and the Steps / baseline ratio per mode."""
    modes = [m for m in ('infer', 'train') if any(f'{m}_samples_per_sec' in r for r in rows)]
    head = ['pair']
    for m in modes:
        head += [f'{m} base (img/s)', f'{m} steps (img/s)', f'{m} ratio', f'{m} mem base/steps (MiB)']
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    by_pair: Dict[str, Dict[str, Dict[str, Any]]] = {}
    for r in rows:
        by_pair.setdefault(r['pair'], {})[r['role']] = r
    for pair, d in by_pair.items():
        b, s = d['baseline'], d['steps']
        cells = [pair]
        for m in modes:
            mb, ms = b.get(f'{m}_peak_mem_mb'), s.get(f'{m}_peak_mem_mb')
            mem = '-' if mb is None or ms is None else f'{mb:.0f} / {ms:.0f}'
            cells += [f'{b[f"{m}_samples_per_sec"]:.2f}', f'{s[f"{m}_samples_per_sec"]:.2f}',
                      f'{s[f"{m}_ratio"]:.3f}', mem]
        lines.append('| ' + ' | '.join(cells) + ' |')
    if rows:
        r0 = rows[0]
        lines.append('')
        lines.append(f'{r0["device"]} ({r0["device_name"]}), {r0["dtype"]}, {r0["memory_format"]}, batch '
                     f'{r0.get("infer_batch_size", r0.get("train_batch_size"))}, img '
                     f'{r0.get("infer_img_size", r0.get("train_img_size"))}, warm-up {r0["warmup"]}, '
                     f'median of {r0["runs"]} alternating runs x {r0["iters"]} iterations, {r0.get("clock", "wall")} '
                     f'clock; torch {r0["torch"]}, '
                     f'timm {r0["timm"]}, stepsnet {r0["stepsnet"]}')
    return '\n'.join(lines) + '\n'


def write_csv(rows: Sequence[Dict[str, Any]], path: str) -> None:
    """Write the rows (union of their keys, in first-seen order) atomically."""
    fields: List[str] = []
    for r in rows:
        fields += [k for k in r if k not in fields]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, restval='')
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def read_csv(path: str) -> List[Dict[str, Any]]:
    """Rows written by :func:`write_csv`, numbers converted back (to merge runs made one pair at a time)."""
    def conv(v: str) -> Any:
        if v == '':
            return None
        try:
            return int(v)
        except ValueError:
            try:
                return float(v)
            except ValueError:
                return v
    with open(path, newline='') as f:
        return [{k: (v if k in _TEXT_COLUMNS else conv(v)) for k, v in r.items()} for r in csv.DictReader(f)]


_TEXT_COLUMNS = {'model', 'pair', 'role', 'infer_runs', 'train_runs', 'dtype', 'memory_format', 'device',
                 'device_name', 'torch', 'timm', 'stepsnet', 'python', 'clock'}


def plot_ratios(rows: Sequence[Dict[str, Any]], path: str) -> None:
    """Bar chart of the Steps / baseline throughput ratio per pair and mode."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    steps_rows = [r for r in rows if r['role'] == 'steps']
    modes = [m for m in ('infer', 'train') if any(f'{m}_ratio' in r for r in steps_rows)]
    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(steps_rows), 3.6))
    w = 0.8 / max(len(modes), 1)
    for j, m in enumerate(modes):
        xs = [i + (j - (len(modes) - 1) / 2) * w for i in range(len(steps_rows))]
        vals = [r.get(f'{m}_ratio', float('nan')) for r in steps_rows]
        bars = ax.bar(xs, vals, width=w, label=m)
        for x, v in zip(xs, vals):
            ax.text(x, v + 0.01, f'{v:.2f}', ha='center', va='bottom', fontsize=8)
        del bars
    ax.axhline(1.0, color='k', lw=0.8)
    ax.set_xticks(range(len(steps_rows)), [r['model'] for r in steps_rows], rotation=15, fontsize=8)
    ax.set_ylabel('Steps / baseline throughput')
    r0 = rows[0] if rows else {}
    ax.set_title(f'{r0.get("device", "")} {r0.get("dtype", "")}, batch {r0.get("infer_batch_size", "")}', fontsize=9)
    ax.set_ylim(0, 1.25)
    ax.legend(fontsize=8)
    fig.tight_layout()
    tmp = path + '.tmp.png'
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)
