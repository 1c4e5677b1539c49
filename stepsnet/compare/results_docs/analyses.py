"""The tables of the paper's analyses at CPU scale (docs/analyses.md), from the CSV files under
``docs/figures/analyses/`` that :mod:`stepsnet.analysis` wrote: masking (Table 6), step dropping (Table 7), the
shortcut ratio at initialisation and after training (Fig. 2a, 2b) and the depth benchmark (Fig. 6c/d).

Each per-model or per-seed difference of a table is one family of :func:`stepsnet.stats.test_family` (the paired
t-test and the exact sign-flip test, each Holm-adjusted across the table), decided by rule ``both``.
"""
from __future__ import annotations

import pathlib
from typing import List, Mapping, Sequence, Tuple, Union

import numpy as np

from stepsnet import stats
from stepsnet.compare.results_docs.cells import (
    MINUS,
    analyses_dir,
    by_model,
    decide,
    diff_cell,
    floor_note,
    mean_std,
    read_csv,
    short_test,
    verdict_cell,
)
from stepsnet.stats import format_p

__all__ = ['MASK_FILE', 'DROP_STEP_FILES', 'DEPTH_BENCHMARK_FILE', 'MASK_PAPER', 'DROP_PAPER', 'DEPTH_PAPER',
           'render_mask', 'render_drop_step', 'render_shortcut_init', 'render_shortcut_trained',
           'render_depth_benchmark']

PathLike = Union[str, pathlib.Path]

# the files under docs/figures/analyses each table reads
MASK_FILE = 'mask_steps_deit_digits_3seeds.csv'
DROP_STEP_FILES = ('drop_step_steps_deit_digits_3seeds.csv', 'drop_step2_steps_deit_digits_3seeds.csv')
DEPTH_BENCHMARK_FILE = 'depth_benchmark.csv'

# the paper's numbers beside ours (Tables 6 and 7, ImageNet)
MASK_PAPER = {'slow': (81.0, 77.3, 68.3, 49.0, 20.4, 4.4), 'fast': (81.0, 80.9, 80.9, 80.8, 80.7, 80.3)}
DROP_PAPER = {'none': '81.0', '1': '77.0', '2': '78.1', '3': '80.5'}


# ----------------------------------------------------------------------------------------------- Tables 6 and 7

def render_mask(root: PathLike) -> str:
    """Table 6 at CPU scale: top-1 and loss with the first / last n channels zeroed, and slow − fast per model."""
    by_n = by_model(read_csv(analyses_dir(root) / MASK_FILE), 'n')
    ns = sorted(by_n, key=int)
    models = sorted(next(iter(by_n.values())))
    col = lambda n, k: [float(by_n[n][m][k]) for m in models]  # noqa: E731
    tests = stats.test_family([[a - b for a, b in zip(col(n, 'slow_top1'), col(n, 'fast_top1'))]
                               for n in ns if int(n) > 0])
    lines = ['| mask out channels (of 96) | ' + ' | '.join('none' if n == '0' else n for n in ns) + ' |',
             '|---|' + '---|' * len(ns)]
    for label, key, digits in [('slow path (first n), top-1', 'slow_top1', 1), ('fast path (last n), top-1',
                                                                                  'fast_top1', 1),
                               ('slow path, loss', 'slow_loss', 3), ('fast path, loss', 'fast_loss', 3)]:
        lines.append(f'| {label} | ' + ' | '.join(mean_std(col(n, key), digits) for n in ns) + ' |')
    cells = ['-'] + [short_test(t, s) for t, s in tests]
    lines.append(f'| slow {MINUS} fast, top-1 (95% CI), adjusted p (t-test / sign-flip) | ' + ' | '.join(cells) + ' |')
    for path_name in ('slow', 'fast'):
        lines.append(f'| paper, {path_name} path (n of 384) | ' + ' | '.join(f'{v:.1f}' for v in
                                                                             MASK_PAPER[path_name]) + ' |')
    lines += ['', f'Mean ± std over {len(models)} models. slow {MINUS} fast is paired by model (the same model with '
              'the first or the last n channels zeroed); "above" / "below" zero: the slow path keeps more / less '
              f'accuracy. Adjusted p: the paired t-test / the exact sign-flip test, each Holm-adjusted across the '
              f'{len(tests)} mask sizes; a verdict needs both below 0.05.'
              + floor_note([s for _, s in tests], unit='models')]
    return '\n'.join(lines) + '\n'


def render_drop_step(root: PathLike) -> str:
    """Table 7 at CPU scale: the cost of dropping equal compute from each step, and the steps against each other
    (one file per budget, :data:`DROP_STEP_FILES`)."""
    lines = ['| dropping position | blocks dropped x windows | dropped MACs (share of trunk) | top-1 | loss | '
             f'top-1 {MINUS} none (95% CI), adjusted p (t-test / sign-flip) | top-1 over windows, min-max (first '
             'model) | paper |', '|---|---|---|---|---|---|---|---|']
    pair_rows: List[Tuple[str, List[float]]] = []
    cost_rows: List[Tuple[int, List[float]]] = []
    table_rows = []
    for budget, file_name in enumerate(DROP_STEP_FILES, start=1):
        by_step = by_model(read_csv(analyses_dir(root) / file_name), 'step')
        models = sorted(by_step['none'])
        none = [float(by_step['none'][m]['top1']) for m in models]
        top1 = {}
        for step in sorted(by_step, key=lambda s: (s != 'none', s)):
            rows = by_step[step]
            first = rows[models[0]]
            top1[step] = [float(rows[m]['top1']) for m in models]
            if step == 'none' and budget > 1:
                continue
            if step != 'none':
                cost_rows.append((len(table_rows), [a - b for a, b in zip(top1[step], none)]))
            table_rows.append((step, budget, first, rows))
        steps = [s for s in top1 if s != 'none']
        for i, a in enumerate(steps):
            for b in steps[i + 1:]:
                suffix = '' if budget == 1 else f', budget {budget}'
                pair_rows.append((f'F{a} {MINUS} F{b}{suffix}', [x - y for x, y in zip(top1[a], top1[b])]))
    tests = stats.test_family([v for _, v in cost_rows] + [v for _, v in pair_rows])
    by_row = {idx: ts for (idx, _), ts in zip(cost_rows, tests[:len(cost_rows)])}
    for idx, (step, budget, first, rows) in enumerate(table_rows):
        models = sorted(rows)
        width = first['width']
        name = 'none' if step == 'none' else f'F{step} ({width} x{first["depth"]})' + (
            '' if budget == 1 else f', budget {budget}')
        if step == 'none':
            lines.append(f'| none | - | - | {mean_std([float(rows[m]["top1"]) for m in models], 1)} | '
                         f'{mean_std([float(rows[m]["loss"]) for m in models], 3)} | - | - | {DROP_PAPER["none"]} |')
            continue
        t, s = by_row[idx]
        macs = float(first['macs'])
        top1_cell = mean_std([float(rows[m]['top1']) for m in models], 1)
        lines.append(f'| {name} | {first["dropped"]} x {first["windows"]} | {macs / 1e6:.2f}M '
                     f'({float(first["share"]) * 100:.1f}%) | {top1_cell} | '
                     f'{mean_std([float(rows[m]["loss"]) for m in models], 3)} | {diff_cell(t, 1)}, p '
                     f'{format_p(t.p_adj)} / {format_p(s.p_adj)} | '
                     f'{float(first["top1_min"]):.1f}-{float(first["top1_max"]):.1f} | '
                     f'{DROP_PAPER[step] if budget == 1 else ""} |')
    lines += ['', '| steps against each other (top-1, paired by model) | difference (95% CI) | t-test adjusted p | '
              'sign-flip adjusted p | verdict |', '|---|---|---|---|---|']
    for (label, _), (t, s) in zip(pair_rows, tests[len(cost_rows):]):
        lines.append(f'| {label} | {diff_cell(t, 1)} | {format_p(t.p_adj)} | {format_p(s.p_adj)} | '
                     f'{verdict_cell(decide(t, s, None), t.n)} |')
    lines += ['', f'Mean ± std over {len(models)} models; every difference is paired by model. Adjusted p: the paired '
              f't-test / the exact sign-flip test, each Holm-adjusted across the {len(tests)} differences of the two '
              'tables; a verdict needs both below 0.05. A step whose dropping costs accuracy is "below" zero; "F1 − '
              'F2 below zero" means dropping from F1 costs more than from F2.'
              + floor_note([s for _, s in tests], unit='models')]
    return '\n'.join(lines) + '\n'


# ----------------------------------------------------------------------------------------------- shortcut ratio

def _gamma_at(rows: Sequence[Mapping[str, str]], label: str, depth: float, key: str = 'gamma') -> float:
    """The shortcut ratio of the trunk ``label`` at the block nearest to the relative ``depth``."""
    pts = [r for r in rows if r['label'] == label]
    best = min(pts, key=lambda r: abs(float(r['depth']) - depth))
    return float(best[key])


def render_shortcut_init(root: PathLike) -> str:
    """Fig. 2a at CPU scale: gamma at half and full depth at init, both widths, noise and digits inputs."""
    files = {(w, d): read_csv(analyses_dir(root) / f'shortcut_init_w{w}_{d}.csv') for w in (128, 384) for d in
             ('random', 'digits')}
    labels = list(dict.fromkeys(r['label'] for r in files[(128, 'random')]))
    paper = {'DeiT 24 blocks': '~0.94 / ~0.92', 'DeiT 96 blocks': '~0.82 / ~0.70',
             'Steps-DeiT 96 blocks': '~1.0 / ~0.75', 'Steps-DeiT 24 blocks': '-'}
    lines = ['| trunk at init | input | width 128: gamma @ 0.5 | @ 1.0 | width 384: gamma @ 0.5 | @ 1.0 | '
             'paper @ 0.5 / 1.0 (read off Fig. 2a) |', '|---|---|---|---|---|---|---|']
    for label in labels:
        short = label.split(' (')[0]
        for data, name in (('random', 'noise'), ('digits', 'digits')):
            cells = []
            for w in (128, 384):
                rows = files[(w, data)]
                cells += [f'{_gamma_at(rows, label, 0.5):.3f}', f'{_gamma_at(rows, label, 1.0):.3f}']
            ref = paper.get(short, '') if data == 'random' else ''
            lines.append(f'| {short} | {name} | ' + ' | '.join(cells) + f' | {ref} |')
    lines += ['', 'One initialisation (seed 0) on 16 images; `figures/analyses/shortcut_init_w{128,384}_{random,digits}'
              '.csv` hold every block.']
    return '\n'.join(lines) + '\n'


def render_shortcut_trained(root: PathLike) -> str:
    """Fig. 2b at CPU scale: gamma along the trained pilot trunks, mean ± std over the three seeds."""
    seeds = [read_csv(analyses_dir(root) / f'shortcut_trained_pilot_seed{s}.csv') for s in range(3)]
    labels = list(dict.fromkeys(r['label'] for r in seeds[0]))
    depths = (0.25, 0.5, 0.75, 1.0)
    lines = ['| trained trunk | ' + ' | '.join(f'gamma @ {d}' for d in depths) + ' |', '|---|' + '---|' * len(depths)]
    for label in labels:
        cells = []
        for d in depths:
            cell = mean_std([_gamma_at(rows, label, d) for rows in seeds])
            proc = [_gamma_at(rows, label, d, 'gamma_processed') for rows in seeds]
            full = [_gamma_at(rows, label, d) for rows in seeds]
            if any(abs(a - b) > 1e-6 for a, b in zip(proc, full)):
                cell += f' ({np.mean(proc):.2f})'
            cells.append(cell)
        lines.append(f'| {label} | ' + ' | '.join(cells) + ' |')
    pairs = [(a, b) for a, b in (('Steps 32 blocks (162 layers)', 'DeiT-like 32 blocks (162 layers)'),
                                 ('Steps 64 blocks (322 layers)', 'DeiT-like 32 blocks (162 layers)')) if
             a in labels and b in labels]
    tests = stats.test_family([[_gamma_at(rows, a, d) - _gamma_at(rows, b, d) for rows in seeds]
                               for a, b in pairs for d in depths])
    for i, (a, b) in enumerate(pairs):
        cells = [short_test(t, s, 2) for t, s in tests[i * len(depths):(i + 1) * len(depths)]]
        lines.append(f'| {a.split(" (")[0]} {MINUS} {b.split(" (")[0]} (95% CI), adjusted p (t-test / sign-flip) | '
                     + ' | '.join(cells) + ' |')
    lines += ['', 'Mean ± std over the pilot models of seeds 0-2 (`figures/analyses/shortcut_trained_pilot_seed{0,1,2}'
              '.csv`); in brackets the mean over the processed channels only, where it differs. The differences are '
              'paired by seed. Adjusted p: the paired t-test / the exact sign-flip test, each Holm-adjusted across the '
              f'{len(tests)} differences of the table; a verdict needs both below 0.05.'
              + floor_note([s for _, s in tests])]
    return '\n'.join(lines) + '\n'


# ------------------------------------------------------------------------------------------------- Fig. 6c/d

DEPTH_PAPER = {('swin', 18): '0.96-1.05x / ~1.0x (65-135 layers)', ('swin', 48): '1.07x / 1.07x',
               ('swin', 96): '**1.6x / 1.3x**'}


def render_depth_benchmark(root: PathLike) -> str:
    """Fig. 6c/d at CPU scale: each Steps trunk against the residual trunk of as many blocks (MACs, throughput,
    memory), beside the paper's Steps-Swin ratios."""
    rows = read_csv(analyses_dir(root) / DEPTH_BENCHMARK_FILE)
    res = {(r['family'], int(r['blocks'])): r for r in rows if r['kind'] == 'residual'}
    lines = ['| model (equal blocks) | layers | MACs residual / Steps | **throughput Steps / residual** | '
             '**memory residual / Steps** | paper, Steps-Swin vs Swin (Fig. 6c/d, read off) |',
             '|---|---|---|---|---|---|']
    for r in rows:
        if r['kind'] != 'steps':
            continue
        key = (r['family'], int(r['blocks']))
        base = res[key]
        name = {'deit': 'DeiT-like', 'swin': 'Swin-like'}[r['family']]
        lines.append(f'| {name} {r["blocks"]} blocks | {r["layers"]} | {float(base["macs"]) / float(r["macs"]):.2f}x | '
                     f'{float(r["throughput_ratio"]):.2f}x | {float(r["memory_ratio"]):.2f}x | '
                     f'{DEPTH_PAPER.get(key, "")} |')
    return '\n'.join(lines) + '\n'
