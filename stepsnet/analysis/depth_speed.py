"""Depth at a fixed width: speed and memory (Fig. 6c/d). The accuracy pilot (Fig. 1) is a comparison:
:func:`stepsnet.compare.depth_comparison`.

**Benchmark** (:func:`depth_benchmark`). For each total block count ``L`` a residual model and its Steps twin with
the same number of blocks and the same final width are built and measured the same way:

* DeiT-like (``family='deit'``): a trunk of ``L`` pre-norm ViT blocks at ``width`` against the 3-step trunk
  ``[width/2 x L/2, width/sqrt2 x L/4, width x L/4]`` (:func:`stepsnet.models.factory.deit_trunk_config`,
  pairing ``blocks``).
* Swin-like (``family='swin'``): Swin-T/S widths with stage depths ``(2, 2, L - 6, 2)`` against Steps-Swin with
  the paper's stage-4 plan (5 steps, 10 blocks) and a 3-step stage 3 of ``L - 14`` blocks, the stage-3 base depth
  ``d`` and move ``k`` chosen with ``d + 2k = L - 14`` and ``k ~ d / 2`` (stages 1-2 as in the baseline).

Throughput is inference images per second (no grad, eval mode), the two models of a depth alternating run by run
after warm-up, median of the runs. Memory follows the paper: the growth of the memory a step needs when the batch
goes from ``32`` to ``64`` (by default a training step, forward + backward, where activations are kept); each peak
is measured by :func:`stepsnet.analysis.speed.peak_memory_mb` (CPU: peak resident set of the step on top of the
resident model; CUDA: peak allocated).
"""
from __future__ import annotations

import csv
import io
import json
import statistics
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from tqdm import tqdm

from stepsnet.analysis.complexity import count_layers, count_macs
from stepsnet.analysis.speed import clock_fn, environment, peak_memory_mb
from stepsnet.models.factory import create_classifier, deit_trunk_config
from stepsnet.utils.checkpoint import atomic_write_text
from stepsnet.utils.figures import pyplot, save_figure

__all__ = [
    'model_config', 'swin_depth_config', 'depth_benchmark', 'format_depth_table', 'write_depth_csv', 'plot_depth',
    'PAPER_FIG6',
]

# Fig. 6c/d at about 485 layers: Steps-Swin vs Swin throughput and memory.
PAPER_FIG6 = dict(throughput_ratio=1.6, memory_ratio=1.3, layers=485)
# Steps-Swin / Swin throughput at the depths where Fig. 6c has a point for both (RTX 3090), read off the figure:
# about 730 / 685 FPS at 245 layers and 605 / 390 FPS at 485 layers; at 65-135 layers the two curves nearly meet.
PAPER_FIG6C_RATIOS = ((245, 1.07), (485, 1.55))

_DEFAULTS = dict(deit=dict(width=192, img_size=64, patch_size=8), swin=dict(width=96, img_size=64, window_size=4))


def swin_depth_config(
        blocks: int,
        kind: str = 'residual',
        width: int = 96,
        img_size: int = 64,
        window_size: int = 4,
) -> Tuple[str, Dict[str, Any]]:
    """A Swin-T/S-like model with ``blocks`` blocks in all (see the module docstring) as a timm name + kwargs.

    Raises:
        ValueError: Too few blocks, or an odd stage-3 block count for ``steps``.
    """
    common = dict(embed_dim=width, num_heads=(3, 6, 12, 24), img_size=img_size, window_size=window_size,
                  drop_path_rate=0.0)
    name = 'steps_swin_tiny_patch4_window7_224'
    if kind == 'residual':
        if blocks < 7:
            raise ValueError(f'a Swin-like model needs at least 7 blocks (2, 2, >=1, 2), got {blocks}')
        return name, dict(common, depths=(2, 2, blocks - 6, 2), num_steps=(1, 1, 1, 1), steps_move=(0, 0, 0, 0))
    if kind == 'steps':
        s3 = blocks - 14
        if s3 < 4 or s3 % 2:
            raise ValueError(f'a Steps-Swin-like model of {blocks} blocks has {s3} stage-3 blocks; expected an even '
                             'number >= 4 (blocks = 14 + 2 * (d + k) with a 10-block 5-step stage 4)')
        k = (s3 - 2) // 4 if s3 % 4 else s3 // 4
        d = s3 - 2 * k
        return name, dict(common, depths=(2, 2, d, 2), num_steps=(1, 1, 3, 5), steps_move=(0, 0, k, 2))
    raise ValueError(f"kind must be 'residual' or 'steps', got {kind!r}")


def model_config(family: str, blocks: int, kind: str, width: Optional[int] = None,
                 img_size: Optional[int] = None) -> Tuple[str, Dict[str, Any]]:
    """The timm name and kwargs of one benchmark model."""
    if family not in _DEFAULTS:
        raise ValueError(f"family must be one of {tuple(_DEFAULTS)}, got {family!r}")
    d = _DEFAULTS[family]
    width = width or d['width']
    img_size = img_size or d['img_size']
    if family == 'deit':
        heads = max(1, width // 64)
        return deit_trunk_config(blocks, kind, width, heads, img_size, d['patch_size'], pairing='blocks')
    # Swin's own window (7) where the input is Swin's own size; a 64x64 input has a 16x16 patch grid: window 4
    return swin_depth_config(blocks, kind, width, img_size, 7 if img_size % 224 == 0 else d['window_size'])


def _build(name: str, kwargs: Dict[str, Any], num_classes: int = 10) -> nn.Module:
    return create_classifier(name, num_classes, **kwargs)


def _step(model: nn.Module, x: torch.Tensor, mode: str):
    if mode == 'train':
        y = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)

        def run():
            model.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(x), y).backward()
        return run

    def infer():
        with torch.inference_mode():
            model(x)
    return infer


def _images_per_sec(model: nn.Module, x: torch.Tensor, device: str, clock=time.perf_counter) -> float:
    if device.startswith('cuda'):
        torch.cuda.synchronize()
    t0 = clock()
    with torch.inference_mode():
        model(x)
    if device.startswith('cuda'):
        torch.cuda.synchronize()
    return x.shape[0] / (clock() - t0)


def depth_benchmark(
        families: Sequence[str] = ('deit',),
        blocks: Sequence[int] = (12, 24, 48, 96),
        width: Optional[int] = None,
        img_size: Optional[int] = None,
        device: str = 'cpu',
        batch_sizes: Tuple[int, int] = (32, 64),
        throughput_batch: int = 32,
        warmup: int = 1,
        runs: int = 3,
        memory: bool = True,
        memory_mode: str = 'train',
        threads: Optional[int] = None,
        progress: bool = True,
        clock: str = 'wall',
) -> List[Dict[str, Any]]:
    """Throughput and memory of residual and Steps models at each depth (see the module docstring).

    Args:
        families: ``deit`` and / or ``swin``.
        blocks: Total residual blocks of each model (the Steps twin has as many).
        width: Trunk width (DeiT, default 192) or stage-1 width (Swin, default 96).
        img_size: Input size (default 64: DeiT patch 8, Swin window 4).
        device: ``cpu`` or ``cuda``.
        batch_sizes: The two batch sizes whose memory difference is reported.
        throughput_batch: Batch size of the throughput runs.
        warmup: Untimed forwards per model.
        runs: Timed forwards per model (alternating); the median is kept.
        memory: Measure memory.
        memory_mode: ``train`` (forward + backward) or ``infer`` (no-grad forward) for the memory steps.
        threads: ``torch.set_num_threads`` for the run.
        progress: Progress bar.
        clock: ``wall``, or ``process`` (CPU time of this process; CPU only: with one thread it ignores the time
            other jobs on a shared machine take).

    Returns:
        One row per (family, blocks, kind) with ``layers``, ``params``, ``macs``, ``img_per_s`` (and every run),
        ``mem_small_mb``, ``mem_large_mb``, ``mem_growth_mb``, plus the Steps rows' ``throughput_ratio``
        (Steps / residual) and ``memory_ratio`` (residual / Steps growth).
    """
    if memory_mode not in ('train', 'infer'):
        raise ValueError(f"memory_mode must be 'train' or 'infer', got {memory_mode!r}")
    timer = clock_fn(clock, device)
    if runs < 1 or warmup < 0:
        raise ValueError(f'need runs >= 1 and warmup >= 0, got runs={runs}, warmup={warmup}')
    if threads:
        torch.set_num_threads(threads)
    env = environment(device)
    rows: List[Dict[str, Any]] = []
    jobs = [(f, b) for f in families for b in blocks]
    for family, b in tqdm(jobs, desc='depth benchmark', disable=not progress):
        pair = []
        for kind in ('residual', 'steps'):
            name, kw = model_config(family, b, kind, width, img_size)
            torch.manual_seed(0)
            model = _build(name, kw).to(device).eval()
            size = kw['img_size']
            pair.append(dict(family=family, kind=kind, blocks=b, layers=count_layers(model),
                             params=sum(p.numel() for p in model.parameters()),
                             macs=count_macs(model, (3, size, size)), img_size=size, model=name,
                             model_kwargs=kw, _model=model))
        x = torch.randn(throughput_batch, 3, pair[0]['img_size'], pair[0]['img_size'], device=device)
        for r in pair:
            for _ in range(warmup):
                _images_per_sec(r['_model'], x, device, timer)
            r['runs'] = []
        for k in range(runs):
            for i in ((0, 1) if k % 2 == 0 else (1, 0)):
                pair[i]['runs'].append(_images_per_sec(pair[i]['_model'], x, device, timer))
        for r in pair:
            r['img_per_s'] = statistics.median(r['runs'])
            r['throughput_batch'] = throughput_batch
            r['clock'] = clock
            if memory:
                model = r['_model']
                model.train(memory_mode == 'train')
                peaks = []
                for bs in batch_sizes:
                    xb = torch.randn(bs, 3, r['img_size'], r['img_size'], device=device)
                    peaks.append(peak_memory_mb(_step(model, xb, memory_mode), device))
                    del xb
                model.zero_grad(set_to_none=True)
                r['mem_small_mb'], r['mem_large_mb'] = peaks
                r['mem_growth_mb'] = (peaks[1] - peaks[0]) if None not in peaks else None
                r['memory_mode'] = memory_mode
                r['batch_sizes'] = f'{batch_sizes[0]}->{batch_sizes[1]}'
            del r['_model']
        pair[1]['throughput_ratio'] = pair[1]['img_per_s'] / pair[0]['img_per_s']
        g0, g1 = pair[0].get('mem_growth_mb'), pair[1].get('mem_growth_mb')
        pair[1]['memory_ratio'] = (g0 / g1) if g0 and g1 else None
        for r in pair:
            r.update(device=env['device'], device_name=env['device_name'], torch=env['torch'], threads=
                     torch.get_num_threads())
        rows.extend(pair)
    return rows


def format_depth_table(rows: Sequence[Dict[str, Any]]) -> str:
    """Markdown: one line per model, with the Steps / residual ratios (and the MAC ratio) on the Steps lines."""
    growth = rows[0].get('batch_sizes', '32->64') if rows else '32->64'
    lines = [f'| family | kind | blocks | layers | params | MACs/img | img/s | memory growth {growth} (MB) | '
             'throughput Steps/res | MACs res/Steps | memory res/Steps |', '|' + '---|' * 11]
    res = {(r['family'], r['blocks']): r for r in rows if r['kind'] == 'residual'}
    for r in rows:
        tr = f'{r["throughput_ratio"]:.2f}x' if r.get('throughput_ratio') else ''
        mr = f'{r["memory_ratio"]:.2f}x' if r.get('memory_ratio') else ''
        base = res.get((r['family'], r['blocks']))
        macs = f'{base["macs"] / r["macs"]:.2f}x' if r['kind'] == 'steps' and base else ''
        mem = f'{r["mem_growth_mb"]:.0f}' if r.get('mem_growth_mb') is not None else '-'
        lines.append(f'| {r["family"]} | {r["kind"]} | {r["blocks"]} | {r["layers"]} | {r["params"] / 1e6:.2f}M | '
                     f'{r["macs"] / 1e9:.3f}G | {r["img_per_s"]:.1f} | {mem} | {tr} | {macs} | {mr} |')
    lines += ['', 'Pairing: equal blocks (the Steps model has the residual model\'s blocks and final width, so about '
              'half its FLOPs).',
              f'Paper (Fig. 6c/d, Steps-Swin vs Swin at ~{PAPER_FIG6["layers"]} layers): '
              f'{PAPER_FIG6["throughput_ratio"]}x throughput, {PAPER_FIG6["memory_ratio"]}x less memory.']
    return '\n'.join(lines) + '\n'


_DEPTH_COLS = ('family', 'kind', 'blocks', 'layers', 'params', 'macs', 'img_size', 'throughput_batch', 'img_per_s',
               'runs', 'memory_mode', 'batch_sizes', 'mem_small_mb', 'mem_large_mb', 'mem_growth_mb',
               'throughput_ratio', 'memory_ratio', 'clock', 'device', 'device_name', 'threads', 'torch', 'model',
               'model_kwargs')


def _csv(rows: Sequence[Dict[str, Any]], cols: Sequence[str], path: str) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator='\n')
    w.writerow(cols)
    for r in rows:
        out = []
        for c in cols:
            v = r.get(c, '')
            if isinstance(v, float):
                v = f'{v:.6g}'
            elif isinstance(v, (list, tuple)):
                v = ' '.join(f'{x:.4g}' if isinstance(x, float) else str(x) for x in v)
            elif isinstance(v, dict):
                v = json.dumps(v)
            elif v is None:
                v = ''
            out.append(v)
        w.writerow(out)
    atomic_write_text(path, buf.getvalue())


def write_depth_csv(rows: Sequence[Dict[str, Any]], path: str) -> None:
    _csv(rows, _DEPTH_COLS, path)


def plot_depth(rows: Sequence[Dict[str, Any]], path: str) -> None:
    """Fig. 6c/d axes: throughput and memory growth against the number of layers, one line per family and kind."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    colors = dict(residual='#404040', steps='#e07040')
    for family in dict.fromkeys(r['family'] for r in rows):
        steps = sorted((r for r in rows if r['family'] == family and r.get('throughput_ratio')),
                       key=lambda r: r['layers'])
        axes[2].plot([r['layers'] for r in steps], [r['throughput_ratio'] for r in steps],
                     '-' if family == 'swin' else '--', marker='o', color='#e07040',
                     label=f'{"Swin" if family == "swin" else "DeiT"}-like, {steps[0]["img_size"]}px'
                     if steps else None)
        for kind in ('residual', 'steps'):
            rs = sorted((r for r in rows if r['family'] == family and r['kind'] == kind), key=lambda r: r['layers'])
            if not rs:
                continue
            label = ('Steps-' if kind == 'steps' else '') + ('DeiT' if family == 'deit' else 'Swin')
            ls = '-' if family == 'swin' else '--'
            axes[0].plot([r['layers'] for r in rs], [r['img_per_s'] for r in rs], ls, marker='o',
                         color=colors[kind], label=label)
            if all(r.get('mem_growth_mb') is not None for r in rs):
                axes[1].plot([r['layers'] for r in rs], [r['mem_growth_mb'] for r in rs], ls, marker='o',
                             color=colors[kind], label=label)
    axes[0].set(xlabel='#layers', ylabel='images / s (inference)', title='throughput')
    growth = rows[0].get('batch_sizes', '32->64') if rows else ''
    axes[1].set(xlabel='#layers', ylabel='MB', title=f'memory growth, batch {growth}')
    axes[2].plot(*zip(*PAPER_FIG6C_RATIOS), 's', color='k', label='paper, Fig. 6c (read off)')
    axes[2].axhline(1.0, color='k', lw=0.6)
    axes[2].set(xlabel='#layers', ylabel='Steps / residual', title='throughput ratio, equal blocks')
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
