"""Ablations of a trained Steps model without retraining: channel masking (Table 6) and step dropping (Table 7).

* **Masking** zeroes the first ``n`` channels (the slow path: they go through every step) or the last ``n``
  channels (the fast path: only the last step sees them) of the tensor entering the Steps trunk, i.e. the tokens
  entering ``model.blocks`` of a Steps-ViT or the input of a hierarchical stage's :class:`Steps` module.
* **Step dropping** removes a similar amount of computation from one step at a time: the residual branches of
  ``m_s`` consecutive blocks of step ``s`` are skipped (those blocks become the identity). ``m_s`` makes the
  dropped multiply-adds about equal across steps: the budget is the cost of ``blocks`` blocks of the widest step
  that has blocks, and each step drops the number of its own blocks whose measured cost comes nearest to it (at
  least one, at most the step's depth). For Steps-DeiT-S (192 x12, 272 x6, 384 x6) and ``blocks=1`` this is 4, 2
  and 1 blocks (4 x 192^2 ~ 2 x 272^2 ~ 384^2). Which ``m_s`` blocks is not said by the paper, and it matters: the
  last block of the last step feeds the head. So every contiguous *window* of ``m_s`` blocks inside the step is
  dropped in turn and the step's score is the mean over its windows (:func:`drop_windows`). Block costs are
  measured with ``FlopCounterMode`` on the model's input (attention matmuls included); without an input they fall
  back to ``width**2``.

Scores are top-1 (%) and the mean cross-entropy, which is continuous and so less coarse than top-1 on a small
validation set. Both work on any model with a :class:`Steps` trunk and any loader of ``(images, labels)``; a
model with no Steps module raises ``ValueError``. :func:`eval_loader` reads a data set with a checkpoint's
preprocessing (:func:`stepsnet.models.factory.classifier_from_checkpoint` rebuilds the model), and
:func:`aggregate` turns the tables of several independently trained models into mean and standard deviation.
:func:`mask_differences` and :func:`drop_differences` test what the tables compare (fast against slow path; each
step against the full model and against each other), paired by model, with the project's paired t-test and Holm's
correction across all differences of one table (:mod:`stepsnet.stats`); :func:`format_differences` prints them.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
from timm.data import create_transform
from torch.utils.data import DataLoader
from torch.utils.flop_counter import FlopCounterMode

from stepsnet import stats
from stepsnet.analysis.complexity import explicit_attention
from stepsnet.data.images import build_dataset, collate_skip_none
from stepsnet.steps import Steps
from stepsnet.tasks.classification import evaluate

__all__ = [
    'steps_modules', 'find_steps', 'masked_input', 'dropped_blocks', 'block_macs', 'drop_windows', 'StepWindows',
    'score', 'mask_table', 'drop_step_table', 'aggregate', 'format_mask_table', 'format_drop_table', 'eval_loader',
    'default_mask_sizes', 'mask_differences', 'drop_differences', 'format_differences',
]


# ---------------------------------------------------------------------------------------------- locating the trunk

def steps_modules(model: nn.Module) -> List[Tuple[str, Steps]]:
    """Every :class:`Steps` module of ``model`` with its path, in registration order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, Steps)]


def find_steps(model: nn.Module, name: Optional[str] = None) -> Tuple[str, Steps]:
    """The Steps trunk to ablate: ``name``, or the Steps module with the most blocks (ViT trunk, stage 3).

    Raises:
        ValueError: The model has no Steps module, or ``name`` is not one.
    """
    found = steps_modules(model)
    if not found:
        raise ValueError(
            f'{type(model).__name__} has no Steps module (it is not a Step by Step Network); expected a Steps '
            'model such as steps_deit_small_patch16_224 or steps_swin_tiny_patch4_window7_224')
    if name is None:
        return max(found, key=lambda nm: len(nm[1]))
    for n, m in found:
        if n == name:
            return n, m
    raise ValueError(f'{name!r} is not a Steps module of {type(model).__name__}; expected one of '
                     f'{[n for n, _ in found]}')


# ---------------------------------------------------------------------------------------------- interventions

@contextlib.contextmanager
def masked_input(steps: Steps, first: int = 0, last: int = 0) -> Iterator[None]:
    """Zero the first ``first`` and the last ``last`` channels of the tensor entering ``steps``.

    Raises:
        ValueError: A count is negative or larger than the trunk's width.
    """
    c = steps.plan.channels
    for label, n in (('first', first), ('last', last)):
        if not 0 <= n <= c:
            raise ValueError(f'cannot mask the {label} {n} channels of a Steps trunk of width {c}; expected 0..{c}')

    def hook(_m, args):
        x = args[0].clone()
        dim = steps.dim
        if first:
            x.narrow(dim, 0, first).zero_()
        if last:
            x.narrow(dim, x.shape[dim] - last, last).zero_()
        return (x,) + tuple(args[1:])

    handle = steps.register_forward_pre_hook(hook)
    try:
        yield
    finally:
        handle.remove()


@contextlib.contextmanager
def dropped_blocks(blocks: Sequence[nn.Module]) -> Iterator[None]:
    """Make each block the identity (its residual branch is skipped) inside the context."""
    handles = [b.register_forward_hook(lambda _m, args, _out: args[0]) for b in blocks]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


# ---------------------------------------------------------------------------------------------- step dropping

@torch.no_grad()
def block_macs(model: nn.Module, steps: Steps, images: Optional[torch.Tensor] = None) -> List[float]:
    """Multiply-adds of every block of ``steps`` for one input (``width**2`` per block when ``images`` is None)."""
    if images is None:
        return [float(w * w) for w in steps.plan.block_widths()]
    path = next(n for n, m in model.named_modules() if m is steps)
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    try:
        with explicit_attention(model), counter:
            model(images[:1])
    finally:
        model.train(was_training)
    counts = counter.get_flop_counts()
    prefix = f'{type(model).__name__}.{path}.' if path else f'{type(model).__name__}.'
    out = []
    for i in range(len(steps)):
        ops = counts.get(f'{prefix}{i}', {})
        out.append(sum(ops.values()) / 2.0)
    if not any(out):  # the counter could not attribute costs to the blocks: use the quadratic model
        return [float(w * w) for w in steps.plan.block_widths()]
    return out


@dataclass
class StepWindows:
    """What is dropped from one step: every window of ``size`` consecutive blocks inside it.

    Attributes:
        step: Step number (1-based).
        width: The step's width.
        depth: Blocks in the step.
        size: Blocks dropped at a time (``m_s``).
        windows: Each window's block indices (execution order), first window first.
        macs: Multiply-adds dropped per image, mean over the windows (or ``width**2`` cost units without an input).
        share: ``macs`` over the whole trunk's.
    """
    step: int
    width: int
    depth: int
    size: int
    windows: Tuple[Tuple[int, ...], ...]
    macs: float
    share: float


def drop_windows(steps: Steps, costs: Sequence[float], blocks: int = 1) -> List[StepWindows]:
    """For every step with blocks: how many blocks to drop (about equal cost across steps), and every window.

    Args:
        steps: The trunk.
        costs: Cost of each block (see :func:`block_macs`).
        blocks: Budget, in blocks of the widest step that has blocks.

    Raises:
        ValueError: ``blocks`` < 1 or larger than that step's depth; ``costs`` of the wrong length.
    """
    plan = steps.plan
    if len(costs) != plan.num_blocks:
        raise ValueError(f'{len(costs)} block costs for a trunk of {plan.num_blocks} blocks')
    starts = [sum(plan.depths[:s]) for s in range(plan.num_steps)]
    ref = max(s for s in range(plan.num_steps) if plan.depths[s])
    if not 1 <= blocks <= plan.depths[ref]:
        raise ValueError(f'blocks={blocks}: the budget must be 1..{plan.depths[ref]} blocks of the widest step '
                         f'({plan.widths[ref]} x{plan.depths[ref]})')
    budget = float(sum(costs[starts[ref]:starts[ref] + blocks]))
    total = float(sum(costs))
    out = []
    for s in range(plan.num_steps):
        d = plan.depths[s]
        if not d:
            continue
        m = min(d, max(1, round(budget / costs[starts[s]])))
        windows = tuple(tuple(range(starts[s] + i, starts[s] + i + m)) for i in range(d - m + 1))
        macs = float(np.mean([sum(costs[i] for i in w) for w in windows]))
        out.append(StepWindows(s + 1, plan.widths[s], d, m, windows, macs, macs / total))
    return out


# ---------------------------------------------------------------------------------------------- tables

def default_mask_sizes(width: int, count: int = 6) -> List[int]:
    """The paper's 0/32/64/96/128/160 of a 384-wide trunk, scaled to ``width``: ``k * width / 12``, k = 0..5."""
    return [round(k * width / 12) for k in range(count)]


def score(model: nn.Module, loader: DataLoader, device: str = 'cpu', progress: bool = False,
          desc: str = 'eval') -> Dict[str, float]:
    """Top-1 (%) and mean cross-entropy of ``model`` over ``loader``: classification's own evaluation."""
    m = evaluate(model, loader, device, progress=progress, desc=desc)
    return {'top1': m['top1'], 'loss': m['loss']}


def mask_table(
        model: nn.Module,
        loader: DataLoader,
        sizes: Optional[Sequence[int]] = None,
        trunk: Optional[str] = None,
        device: str = 'cpu',
        progress: bool = True,
) -> List[Dict[str, Any]]:
    """Scores with the first (slow path) or last (fast path) ``n`` input channels of the Steps trunk zeroed.

    Args:
        model: A trained Steps model.
        loader: ``(images, labels)`` batches.
        sizes: Channel counts ``n`` (default :func:`default_mask_sizes`).
        trunk: Steps module path (default :func:`find_steps`).
        device: Where to run.
        progress: Show progress bars.

    Returns:
        Rows ``{'n', 'slow_top1', 'slow_loss', 'fast_top1', 'fast_loss'}``.

    Raises:
        ValueError: No Steps module, or ``n`` larger than the trunk width.
    """
    name, steps = find_steps(model, trunk)
    sizes = list(sizes) if sizes is not None else default_mask_sizes(steps.plan.channels)
    for n in sizes:
        if not 0 <= n <= steps.plan.channels:
            raise ValueError(f'mask size {n} is outside 0..{steps.plan.channels} (the width of trunk {name!r})')
    model.to(device).eval()
    base = None
    rows = []
    for n in sizes:
        if n == 0:
            base = base or score(model, loader, device, progress, 'mask none')
            slow = fast = base
        else:
            with masked_input(steps, first=n):
                slow = score(model, loader, device, progress, f'mask first {n}')
            with masked_input(steps, last=n):
                fast = score(model, loader, device, progress, f'mask last {n}')
        rows.append(dict(n=n, slow_top1=slow['top1'], slow_loss=slow['loss'], fast_top1=fast['top1'],
                         fast_loss=fast['loss']))
    return rows


def drop_step_table(
        model: nn.Module,
        loader: DataLoader,
        blocks: int = 1,
        trunk: Optional[str] = None,
        device: str = 'cpu',
        example: Optional[torch.Tensor] = None,
        progress: bool = True,
) -> List[Dict[str, Any]]:
    """Scores with a similar amount of computation dropped from each step in turn, averaged over its windows.

    Args:
        model: A trained Steps model.
        loader: ``(images, labels)`` batches.
        blocks: Budget, in blocks of the widest step that has blocks.
        trunk: Steps module path (default :func:`find_steps`).
        device: Where to run.
        example: One input batch for measuring block costs (default: the loader's first batch).
        progress: Show progress bars.

    Returns:
        A row ``step='none'`` (nothing dropped), then one per step with ``width``, ``depth``, ``dropped`` (blocks
        per window), ``windows`` (how many), ``macs``, ``share``, ``top1`` and ``loss`` (means over the windows),
        ``top1_min`` / ``top1_max`` (the spread over windows) and ``per_window`` (``first_block:top1`` pairs).
    """
    _, steps = find_steps(model, trunk)
    model.to(device).eval()
    if example is None:
        example = next(iter(loader))[0]
    plan = drop_windows(steps, block_macs(model, steps, example.to(device)), blocks)
    full = score(model, loader, device, progress, 'drop none')
    rows: List[Dict[str, Any]] = [dict(step='none', width=steps.plan.channels, depth=steps.plan.num_blocks,
                                       dropped=0, windows=0, macs=0.0, share=0.0, top1=full['top1'],
                                       loss=full['loss'], top1_min=full['top1'], top1_max=full['top1'],
                                       per_window='')]
    members = list(steps)
    for d in plan:
        scores = []
        for w in d.windows:
            with dropped_blocks([members[i] for i in w]):
                scores.append(score(model, loader, device, progress, f'drop F{d.step} blocks {w[0]}-{w[-1]}'))
        top1 = [r['top1'] for r in scores]
        rows.append(dict(step=d.step, width=d.width, depth=d.depth, dropped=d.size, windows=len(d.windows),
                         macs=d.macs, share=d.share, top1=float(np.mean(top1)),
                         loss=float(np.mean([r['loss'] for r in scores])), top1_min=min(top1), top1_max=max(top1),
                         per_window=' '.join(f'{w[0]}:{t:.2f}' for w, t in zip(d.windows, top1))))
    return rows


def aggregate(tables: Sequence[Sequence[Mapping[str, Any]]], key: str,
              values: Sequence[str]) -> List[Dict[str, Any]]:
    """Mean and sample standard deviation of ``values`` over tables of several models, row by row.

    Rows are matched by ``key`` (``n`` for masking, ``step`` for step dropping); other fields come from the first
    table. Each value ``v`` becomes ``v`` (mean), ``v_std`` (None for one model) and ``v_all`` (every model's).

    Raises:
        ValueError: The tables do not have the same rows.
    """
    if not tables:
        raise ValueError('aggregate needs at least one table')
    keys = [r[key] for r in tables[0]]
    for t in tables[1:]:
        if [r[key] for r in t] != keys:
            raise ValueError(f'tables have different rows ({keys} vs {[r[key] for r in t]}); expected models with '
                             'the same trunk plan')
    out = []
    for i, row in enumerate(tables[0]):
        merged = dict(row, models=len(tables))
        for v in values:
            xs = [float(t[i][v]) for t in tables]
            merged[v], merged[f'{v}_std'], _ = stats.mean_sd(xs)
            merged[f'{v}_all'] = xs
        out.append(merged)
    return out


def _cell(r: Mapping[str, Any], v: str, digits: int = 1) -> str:
    std = r.get(f'{v}_std')
    return f'{r[v]:.{digits}f}' + (f' ± {std:.{digits}f}' if std is not None else '')


def format_mask_table(rows: Sequence[Mapping[str, Any]], paper: bool = False) -> str:
    """Table 6 layout: one column per ``n``; rows slow / fast path top-1 and loss (mean ± std over models)."""
    head = '| mask out channels | ' + ' | '.join('none' if r['n'] == 0 else str(r['n']) for r in rows) + ' |'
    lines = [head, '|---|' + '---|' * len(rows)]
    for path in ('slow', 'fast'):
        which = 'first' if path == 'slow' else 'last'
        lines.append(f'| {path} path ({which} n), top-1 | ' + ' | '.join(_cell(r, f'{path}_top1') for r in rows) + ' |')
    for path in ('slow', 'fast'):
        lines.append(f'| {path} path, loss | ' + ' | '.join(_cell(r, f'{path}_loss', 3) for r in rows) + ' |')
    if paper:
        lines += ['', 'Paper (Steps-DeiT-S, ImageNet-1K; n = 0/32/64/96/128/160 of 384): slow path '
                  '81.0/77.3/68.3/49.0/20.4/4.4, fast path 81.0/80.9/80.9/80.8/80.7/80.3.']
    return '\n'.join(lines) + '\n'


def format_drop_table(rows: Sequence[Mapping[str, Any]], paper: bool = False) -> str:
    """Table 7 layout: one row per step, with what was dropped and the scores (mean over windows, then over
    models ± std; the window range is of the first model)."""
    lines = ['| dropping position | step width x blocks | blocks dropped x windows | dropped MACs (share of trunk) | '
             'top-1 | loss | top-1 over windows (min-max) |', '|---|---|---|---|---|---|---|']
    for r in rows:
        none = r['step'] == 'none'
        pos = 'none' if none else f'F{r["step"]}'
        what = '-' if none else f'{r["dropped"]} x {r["windows"]}'
        share = '-' if none else f'{r["macs"] / 1e6:.2f}M ({100 * r["share"]:.1f}%)'
        spread = '-' if none else f'{r["top1_min"]:.1f}-{r["top1_max"]:.1f}'
        lines.append(f'| {pos} | {r["width"]} x{r["depth"]} | {what} | {share} | {_cell(r, "top1")} | '
                     f'{_cell(r, "loss", 3)} | {spread} |')
    if paper:
        lines += ['', 'Paper (Steps-DeiT-S, ImageNet-1K): F1 77.0, F2 78.1, F3 80.5 (full model 81.0).']
    return '\n'.join(lines) + '\n'


def _paired(items: Sequence[Tuple[str, str, Sequence[float]]]) -> List[Dict[str, Any]]:
    """Rows ``{'what', 'metric', t-test fields, 'sign_flip', 'outcome', 'verdict'}``: both tests, each Holm-adjusted
    across all ``items``; a verdict needs both (:data:`stepsnet.stats.RULES` ``both``)."""
    rows = []
    for (what, metric, _), (t, s) in zip(items, stats.test_family([values for _, _, values in items])):
        p = stats.deciding_p(t, s, 'both')
        rows.append(dict(what=what, metric=metric, **t.to_dict(), sign_flip=s.to_dict(),
                         outcome=stats.outcome(t, None, p=p),
                         verdict=stats.verdict(t, None, digits=3 if metric == 'loss' else 2, p=p,
                                               p_name=stats.p_name('both'))))
    return rows


def mask_differences(tables: Sequence[Sequence[Mapping[str, Any]]]) -> List[Dict[str, Any]]:
    """Fast path masked minus slow path masked, per ``n > 0``, for top-1 and loss, paired by model.

    The paper's Table 6 reading is that masking the slow path (first ``n`` channels) costs more: a positive top-1
    difference and a negative loss difference. Holm runs across every difference returned.
    """
    items = []
    for metric in ('top1', 'loss'):
        for i, row in enumerate(tables[0]):
            if row['n']:
                items.append((f'n {row["n"]}: fast − slow path masked', metric,
                              [t[i][f'fast_{metric}'] - t[i][f'slow_{metric}'] for t in tables]))
    return _paired(items)


def drop_differences(tables: Sequence[Sequence[Mapping[str, Any]]]) -> List[Dict[str, Any]]:
    """Each step dropped minus nothing dropped, and each later step dropped minus each earlier one, for top-1 and
    loss, paired by model (the paper's Table 7 finds dropping from a later step costs less). Holm across all."""
    steps_ = [i for i, r in enumerate(tables[0]) if r['step'] != 'none']
    items = []
    for metric in ('top1', 'loss'):
        for i in steps_:
            items.append((f'F{tables[0][i]["step"]} dropped − none', metric,
                          [t[i][metric] - t[0][metric] for t in tables]))
        for a, i in enumerate(steps_):
            for j in steps_[a + 1:]:
                items.append((f'F{tables[0][j]["step"]} − F{tables[0][i]["step"]} dropped', metric,
                              [t[j][metric] - t[i][metric] for t in tables]))
    return _paired(items)


def format_differences(rows: Sequence[Mapping[str, Any]]) -> str:
    """The paired differences as a markdown table: every number of each test and its verdict."""
    lines = [f'Paired differences over models: two-sided paired t-test and exact sign-flip test, each '
             f'Holm-adjusted across the {len(rows)} differences below; a difference is above / below zero only where '
             'both adjusted p are below 0.05.', '',
             f'| difference | score | {stats.TABLE_HEAD_BOTH} | verdict |', '|---' * 11 + '|']
    for r in rows:
        flip = stats.SignFlipTest.from_dict(r['sign_flip'])
        cells = stats.table_cells_both(stats.PairedTest.from_dict(r), flip, 3 if r['metric'] == 'loss' else 2)
        lines.append(f'| {r["what"]} | {"top-1" if r["metric"] == "top1" else "loss"} | {" | ".join(cells)} | '
                     f'{r["verdict"].split(" (")[0]} |')
    return '\n'.join(lines) + '\n'


# ---------------------------------------------------------------------------------------------- models and data

def eval_loader(
        data_config: Mapping[str, Any],
        dataset: str = 'digits',
        data_dir: Optional[str] = None,
        split: str = 'val',
        batch_size: int = 128,
        workers: int = 0,
) -> DataLoader:
    """A loader of a split with a model's evaluation preprocessing.

    ``data_config`` holds timm's keys (``input_size``, ``interpolation``, ``mean``, ``std``, ``crop_pct``), as a
    checkpoint stores them (:func:`stepsnet.models.factory.classifier_from_checkpoint`).
    """
    tf = create_transform(**data_config, is_training=False)
    ds = build_dataset(dataset, data_dir, split, tf, img_size=int(data_config['input_size'][-1]))
    return DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=collate_skip_none)
