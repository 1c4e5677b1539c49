"""Render the result tables of README.md and docs/ from the committed result files.

Every table below is computed from a file under ``docs/figures/`` (a comparison's ``results.json``, a sweep's or an
analysis's CSV) with the project's paired statistics (:mod:`stepsnet.stats`); none is typed by hand. Each sits
between ``<!-- results:NAME:begin -->`` and ``<!-- results:NAME:end -->`` in its document::

    python scripts/render_results.py            # rewrite every block
    python scripts/render_results.py --check    # list the stale blocks and exit 1 (tests/test_results_docs.py)

A verdict ("ahead", "behind") is printed only where the paired t-test, Holm-adjusted across the comparisons of the
same report, gives p < 0.05; anything else is "not distinguishable" with the number of seeds it had.
"""
from __future__ import annotations

import argparse
import csv
import json
import pathlib
import sys
from collections import defaultdict
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import yaml

from stepsnet.stats import PairedTest, adjust, format_p, outcome, paired_test

ROOT = pathlib.Path(__file__).resolve().parents[1]
FIG = ROOT / 'docs' / 'figures'
ANALYSES = FIG / 'analyses'
MINUS = '−'


# ---------------------------------------------------------------------------------------------------------- helpers

def _read_csv(path: pathlib.Path) -> List[Dict[str, str]]:
    with open(path, newline='', encoding='utf-8') as f:
        return list(csv.DictReader(f))


def _signed(x: float, digits: int) -> str:
    s = f'{x:+.{digits}f}'
    return s.replace('-', MINUS)


def _ms(values: Sequence[float], digits: int = 2) -> str:
    """mean ± sample std (the std left out for a single value)."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return 'not run'
    if arr.size == 1:
        return f'{arr[0]:.{digits}f}'
    return f'{arr.mean():.{digits}f} ± {arr.std(ddof=1):.{digits}f}'


def _diff_cell(t: PairedTest, digits: int = 2) -> str:
    """``+0.93 (−0.51 to +2.37)``: the mean paired difference and its 95% interval; bold when the verdict holds."""
    if t.mean is None:
        return 'not run'
    if t.ci_low is None:
        return f'{_signed(t.mean, digits)} (n={t.n})'
    return f'{_signed(t.mean, digits)} ({_signed(t.ci_low, digits)} to {_signed(t.ci_high, digits)})'


def _p_cell(t: PairedTest) -> str:
    return format_p(t.p_adj if t.p_adj is not None else t.p)


def _verdict_cell(t: PairedTest, higher_is_better: Optional[bool]) -> str:
    code = outcome(t, higher_is_better)
    if code in ('ahead', 'behind', 'above', 'below'):
        return f'**{code}**'
    if code == 'not distinguishable':
        return f'not distinguishable ({t.n} seeds)'
    return code


def _test(d: Mapping[str, Any]) -> PairedTest:
    """A stored test (a results.json written with its statistics), or one computed from its per-seed values."""
    if d.get('p') is not None or d.get('t') is not None:
        return PairedTest.from_dict(d)
    return paired_test(d.get('values') or [])


def _adjusted(tests: Sequence[PairedTest]) -> List[PairedTest]:
    """Holm across ``tests`` unless they already carry the adjustment of their own report."""
    return list(tests) if all(t.p_adj is not None or t.p is None for t in tests) else adjust(tests)


def _family_note(n_tests: int, seeds: str) -> str:
    return (f'Differences are paired by seed ({seeds}); in brackets the 95% interval of the mean difference (t '
            f'distribution). Adjusted p: paired t-test, Holm-adjusted across the {n_tests} comparisons of the '
            'report. A verdict in bold holds at adjusted p < 0.05; every other difference is not distinguishable '
            'from zero with these seeds.')


# ------------------------------------------------------------------------------------------------ comparisons

def _comparison_tests(r: Mapping[str, Any]) -> Dict[Tuple[str, str], PairedTest]:
    """Every test of a comparison report, keyed (point name, role) and ('trend', role), adjusted as one family."""
    keys, tests = [], []
    for p in r['points']:
        for role, d in p['diffs'].items():
            keys.append((p['name'], role))
            tests.append(_test(d))
    for role, d in (r.get('trend') or {}).items():
        keys.append(('trend', role))
        tests.append(_test(d))
    return dict(zip(keys, _adjusted(tests)))


def _arm_values(arm: Mapping[str, Any]) -> List[float]:
    return list(arm['per_seed'].values())


def _seeds_text(r: Mapping[str, Any]) -> str:
    seeds = r['seeds']
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[0] + len(seeds))):
        return f'seeds {seeds[0]}-{seeds[-1]}'
    return 'seeds ' + ', '.join(str(s) for s in seeds)


def render_comparison(path: pathlib.Path) -> str:
    """One row per depth: the residual trunk, each Steps arm, the paired differences with interval, p and verdict."""
    r = json.loads(path.read_text(encoding='utf-8'))
    tests = _comparison_tests(r)
    higher = r['higher_is_better']
    roles = [role for role in r['points'][0]['arms'] if role != 'baseline']
    names = {'steps': 'Steps, equal params/FLOPs', 'steps_compute': 'Steps, equal params/FLOPs',
             'steps_blocks': 'Steps, equal blocks'}
    head = '| residual blocks (layers) | residual |'
    rule = '|---|---|'
    for role in roles:
        head += f' {names.get(role, role)} (blocks) | {MINUS} residual (95% CI) | adjusted p | verdict |'
        rule += '---|---|---|---|'
    lines = [head, rule]
    for p in r['points']:
        base = p['arms']['baseline']
        row = f'| {base["blocks"]} ({base["layers"]}) | {_ms(_arm_values(base))} |'
        for role in roles:
            a, t = p['arms'][role], tests[(p['name'], role)]
            row += (f' {_ms(_arm_values(a))} ({a["blocks"]}) | {_diff_cell(t)} | {_p_cell(t)} | '
                    f'{_verdict_cell(t, higher)} |')
        lines.append(row)
    train = [(p, role) for p in r['points'] for role in roles if (p['name'], role + '_train') in tests]
    if train:
        lines += ['', f'On the training images (no augmentation), {MINUS} residual:', '',
                  '| residual blocks | arm | residual | Steps | difference (95% CI) | adjusted p | verdict |',
                  '|---|---|---|---|---|---|---|']
        for p, role in train:
            t = tests[(p['name'], role + '_train')]
            base, arm = p['arms']['baseline'], p['arms'][role]
            lines.append(f'| {base["blocks"]} | {names.get(role, role)} | {_ms(base["train_stats"]["values"])} | '
                         f'{_ms(arm["train_stats"]["values"])} | {_diff_cell(t)} | {_p_cell(t)} | '
                         f'{_verdict_cell(t, higher)} |')
    trend = [(role, tests[('trend', role)], d) for role, d in (r.get('trend') or {}).items()]
    if trend:
        lines.append('')
        for role, t, d in trend:
            lines.append(f'Change of the gap with depth ({names.get(role, role)}: the difference at {d["deep"]} '
                         f'minus the difference at {d["shallow"]}, per seed): {_diff_cell(t)}, adjusted p '
                         f'{_p_cell(t)}, {_verdict_cell(t, None)}.')
    lines += ['', _family_note(len(tests), _seeds_text(r))]
    return '\n'.join(lines) + '\n'


# ----------------------------------------------------------------------------------------------- Tables 6 and 7

MASK_PAPER = {'slow': (81.0, 77.3, 68.3, 49.0, 20.4, 4.4), 'fast': (81.0, 80.9, 80.9, 80.8, 80.7, 80.3)}
DROP_PAPER = {'none': '81.0', '1': '77.0', '2': '78.1', '3': '80.5'}


def _by_model(rows: Sequence[Mapping[str, str]], key: str) -> Dict[str, Dict[str, Mapping[str, str]]]:
    out: Dict[str, Dict[str, Mapping[str, str]]] = defaultdict(dict)
    for row in rows:
        out[row[key]][row['model']] = row
    return out


def render_mask(path: pathlib.Path = ANALYSES / 'mask_steps_deit_digits_3seeds.csv') -> str:
    """Table 6 at CPU scale: top-1 and loss with the first / last n channels zeroed, and slow − fast per model."""
    by_n = _by_model(_read_csv(path), 'n')
    ns = sorted(by_n, key=int)
    models = sorted(next(iter(by_n.values())))
    col = lambda n, k: [float(by_n[n][m][k]) for m in models]  # noqa: E731
    tests = _adjusted([paired_test([a - b for a, b in zip(col(n, 'slow_top1'), col(n, 'fast_top1'))])
                       for n in ns if int(n) > 0])
    lines = ['| mask out channels (of 96) | ' + ' | '.join('none' if n == '0' else n for n in ns) + ' |',
             '|---|' + '---|' * len(ns)]
    for label, key, digits in [('slow path (first n), top-1', 'slow_top1', 1), ('fast path (last n), top-1',
                                                                                  'fast_top1', 1),
                               ('slow path, loss', 'slow_loss', 3), ('fast path, loss', 'fast_loss', 3)]:
        lines.append(f'| {label} | ' + ' | '.join(_ms(col(n, key), digits) for n in ns) + ' |')
    cells = ['-'] + [f'{_diff_cell(t, 1)}, p {_p_cell(t)}: {_verdict_cell(t, None)}' for t in tests]
    lines.append(f'| slow {MINUS} fast, top-1 (95% CI), adjusted p | ' + ' | '.join(cells) + ' |')
    for path_name in ('slow', 'fast'):
        lines.append(f'| paper, {path_name} path (n of 384) | ' + ' | '.join(f'{v:.1f}' for v in
                                                                             MASK_PAPER[path_name]) + ' |')
    lines += ['', f'Mean ± std over {len(models)} models. slow {MINUS} fast is paired by model (the same model with '
              'the first or the last n channels zeroed); "above" / "below" zero: the slow path keeps more / less '
              f'accuracy, at Holm-adjusted p < 0.05 across the {len(tests)} mask sizes.']
    return '\n'.join(lines) + '\n'


def render_drop_step(paths: Sequence[pathlib.Path] = (ANALYSES / 'drop_step_steps_deit_digits_3seeds.csv',
                                                      ANALYSES / 'drop_step2_steps_deit_digits_3seeds.csv')) -> str:
    """Table 7 at CPU scale: the cost of dropping equal compute from each step, and the steps against each other."""
    lines = ['| dropping position | blocks dropped x windows | dropped MACs (share of trunk) | top-1 | loss | '
             f'top-1 {MINUS} none (95% CI) | top-1 over windows, min-max (first model) | paper |',
             '|---|---|---|---|---|---|---|---|']
    pair_rows: List[Tuple[str, PairedTest]] = []
    cost_tests: List[Tuple[int, str, PairedTest]] = []
    table_rows = []
    for budget, path in enumerate(paths, start=1):
        by_step = _by_model(_read_csv(path), 'step')
        models = sorted(by_step['none'])
        none = [float(by_step['none'][m]['top1']) for m in models]
        top1 = {}
        for step in sorted(by_step, key=lambda s: (s != 'none', s)):
            rows = by_step[step]
            first = rows[models[0]]
            top1[step] = [float(rows[m]['top1']) for m in models]
            if step == 'none' and budget > 1:
                continue
            if step == 'none':
                table_rows.append((step, budget, first, rows, None))
                continue
            t = paired_test([a - b for a, b in zip(top1[step], none)])
            cost_tests.append((len(table_rows), step, t))
            table_rows.append((step, budget, first, rows, t))
        steps = [s for s in top1 if s != 'none']
        for i, a in enumerate(steps):
            for b in steps[i + 1:]:
                suffix = '' if budget == 1 else f', budget {budget}'
                pair_rows.append((f'F{a} {MINUS} F{b}{suffix}',
                                  paired_test([x - y for x, y in zip(top1[a], top1[b])])))
    adjusted = _adjusted([t for *_, t in cost_tests] + [t for _, t in pair_rows])
    cost_adj = adjusted[:len(cost_tests)]
    pair_adj = adjusted[len(cost_tests):]
    by_row = {idx: t for (idx, _, _), t in zip(cost_tests, cost_adj)}
    for idx, (step, budget, first, rows, _) in enumerate(table_rows):
        models = sorted(rows)
        width = first['width']
        name = 'none' if step == 'none' else f'F{step} ({width} x{first["depth"]})' + (
            '' if budget == 1 else f', budget {budget}')
        if step == 'none':
            lines.append(f'| none | - | - | {_ms([float(rows[m]["top1"]) for m in models], 1)} | '
                         f'{_ms([float(rows[m]["loss"]) for m in models], 3)} | - | - | {DROP_PAPER["none"]} |')
            continue
        t = by_row[idx]
        macs = float(first['macs'])
        lines.append(f'| {name} | {first["dropped"]} x {first["windows"]} | {macs / 1e6:.2f}M '
                     f'({float(first["share"]) * 100:.1f}%) | {_ms([float(rows[m]["top1"]) for m in models], 1)} | '
                     f'{_ms([float(rows[m]["loss"]) for m in models], 3)} | {_diff_cell(t, 1)}, p {_p_cell(t)} | '
                     f'{float(first["top1_min"]):.1f}-{float(first["top1_max"]):.1f} | '
                     f'{DROP_PAPER[step] if budget == 1 else ""} |')
    lines += ['', '| steps against each other (top-1, paired by model) | difference (95% CI) | adjusted p | verdict |',
              '|---|---|---|---|']
    for (label, _), t in zip(pair_rows, pair_adj):
        lines.append(f'| {label} | {_diff_cell(t, 1)} | {_p_cell(t)} | {_verdict_cell(t, None)} |')
    lines += ['', f'Mean ± std over {len(models)} models; every difference is paired by model, and the adjusted p '
              f'is Holm across the {len(adjusted)} differences of the two tables. A step whose dropping costs '
              'accuracy is "below" zero; "F1 − F2 below zero" means dropping from F1 costs more than from F2.']
    return '\n'.join(lines) + '\n'


# ----------------------------------------------------------------------------------------------- shortcut ratio

def _gamma_at(rows: Sequence[Mapping[str, str]], label: str, depth: float, key: str = 'gamma') -> float:
    pts = [r for r in rows if r['label'] == label]
    best = min(pts, key=lambda r: abs(float(r['depth']) - depth))
    return float(best[key])


def render_shortcut_init() -> str:
    """Fig. 2a at CPU scale: gamma at half and full depth at init, both widths, noise and digits inputs."""
    files = {(w, d): _read_csv(ANALYSES / f'shortcut_init_w{w}_{d}.csv') for w in (128, 384) for d in
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


def render_shortcut_trained() -> str:
    """Fig. 2b at CPU scale: gamma along the trained pilot trunks, mean ± std over the three seeds."""
    seeds = [_read_csv(ANALYSES / f'shortcut_trained_pilot_seed{s}.csv') for s in range(3)]
    labels = list(dict.fromkeys(r['label'] for r in seeds[0]))
    depths = (0.25, 0.5, 0.75, 1.0)
    lines = ['| trained trunk | ' + ' | '.join(f'gamma @ {d}' for d in depths) + ' |', '|---|' + '---|' * len(depths)]
    for label in labels:
        cells = []
        for d in depths:
            cell = _ms([_gamma_at(rows, label, d) for rows in seeds])
            proc = [_gamma_at(rows, label, d, 'gamma_processed') for rows in seeds]
            full = [_gamma_at(rows, label, d) for rows in seeds]
            if any(abs(a - b) > 1e-6 for a, b in zip(proc, full)):
                cell += f' ({np.mean(proc):.2f})'
            cells.append(cell)
        lines.append(f'| {label} | ' + ' | '.join(cells) + ' |')
    pairs = [(a, b) for a, b in (('Steps 32 blocks (162 layers)', 'DeiT-like 32 blocks (162 layers)'),
                                 ('Steps 64 blocks (322 layers)', 'DeiT-like 32 blocks (162 layers)')) if
             a in labels and b in labels]
    tests = _adjusted([paired_test([_gamma_at(rows, a, d) - _gamma_at(rows, b, d) for rows in seeds])
                       for a, b in pairs for d in depths])
    for i, (a, b) in enumerate(pairs):
        cells = [f'{_diff_cell(t)}, p {_p_cell(t)}: {_verdict_cell(t, None)}'
                 for t in tests[i * len(depths):(i + 1) * len(depths)]]
        lines.append(f'| {a.split(" (")[0]} {MINUS} {b.split(" (")[0]} (95% CI), adjusted p | ' + ' | '.join(cells)
                     + ' |')
    lines += ['', 'Mean ± std over the pilot models of seeds 0-2 (`figures/analyses/shortcut_trained_pilot_seed{0,1,2}'
              '.csv`); in brackets the mean over the processed channels only, where it differs. The differences are '
              f'paired by seed, Holm-adjusted across the {len(tests)} of the table.']
    return '\n'.join(lines) + '\n'


# ------------------------------------------------------------------------------------------------- Fig. 6c/d

DEPTH_PAPER = {('swin', 18): '0.96-1.05x / ~1.0x (65-135 layers)', ('swin', 48): '1.07x / 1.07x',
               ('swin', 96): '**1.6x / 1.3x**'}


def render_depth_benchmark(path: pathlib.Path = ANALYSES / 'depth_benchmark.csv') -> str:
    rows = _read_csv(path)
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


# -------------------------------------------------------------------------------------------------- LM sweep

SWEEP = FIG / 'lm' / 'sweep.csv'
SWEEP_PROTOCOL = ROOT / 'benchmarks' / 'lm_sweep.yaml'
SWEEP_PAIRS = (('steps', 'baseline'), ('control', 'baseline'), ('steps', 'control'))


def sweep_tests(results: pathlib.Path = SWEEP, protocol_path: pathlib.Path = SWEEP_PROTOCOL) -> List[Dict[str, Any]]:
    """Every cell of an LM sweep at every rate: per-role losses by seed and the three paired tests (adjusted).

    ``results`` is the sweep's CSV (one row per finished run; a missing file is a sweep that has not run) and
    ``protocol_path`` its protocol (``benchmarks/lm_sweep.yaml`` or another file of that format).
    """
    protocol = yaml.safe_load(protocol_path.read_text(encoding='utf-8'))
    runs: Dict[Tuple[str, int, float], Dict[int, float]] = defaultdict(dict)
    for row in (_read_csv(results) if results.is_file() else []):
        runs[(row['model_key'], int(row['max_iters']), float(row['lr']))][int(row['seed'])] = float(row['val_loss'])
    base_lr = float(yaml.safe_load((ROOT / protocol['config']).read_text(encoding='utf-8'))['lr'])
    cells = []
    for cell in protocol['cells']:
        lrs = cell.get('lr', [base_lr])
        lrs = lrs if isinstance(lrs, list) else [lrs]
        for lr in lrs:
            losses = {role: runs.get((key, int(cell['max_iters']), float(lr)), {})
                      for role, key in cell['roles'].items()}
            tests = {}
            for a, b in SWEEP_PAIRS:
                if a in losses and b in losses and losses[a] and losses[b]:
                    tests[(a, b)] = paired_test([losses[a][s] - losses[b][s] for s in losses[a] if s in losses[b]])
            cells.append(dict(name=cell['name'], lr=float(lr), steps=int(cell['max_iters']), losses=losses,
                              tests=tests))
    flat = [(i, k) for i, c in enumerate(cells) for k in c['tests'] if c['name'] != 'sanity']
    adjusted = adjust([cells[i]['tests'][k] for i, k in flat])
    for (i, k), t in zip(flat, adjusted):
        cells[i]['tests'][k] = t
    return cells


def best_rate_test(cells: Sequence[Mapping[str, Any]]):
    """The learning-rate cell compared at each model's own best rate (lowest mean loss over seeds), paired by seed."""
    grid = [c for c in cells if len([d for d in cells if d['name'] == c['name']]) > 1]
    if not grid:
        return None
    best = {role: min(grid, key=lambda c: np.mean(list(c['losses'][role].values()))) for role in ('baseline', 'steps')}
    b, s = best['baseline']['losses']['baseline'], best['steps']['losses']['steps']
    t = paired_test([s[k] - b[k] for k in s if k in b])
    return grid[0]['name'], (best['baseline']['lr'], best['steps']['lr']), (t, grid[0]['steps'])


def render_lm_sweep() -> str:
    cells = sweep_tests()
    lines = ['| cell | steps | lr | residual | Steps | control | Steps − residual (95% CI) | adjusted p | verdict | '
             'control − residual | Steps − control (95% CI), adjusted p |',
             '|---|---|---|---|---|---|---|---|---|---|---|']
    n_tests = 0
    for c in cells:
        L = c['losses']
        t = c['tests'].get(('steps', 'baseline'))
        if c['name'] == 'sanity':
            seeds = [s for s in L['steps'] if s in L['baseline']]
            largest = max(abs(L['steps'][s] - L['baseline'][s]) for s in seeds)
            lines.append(f'| sanity (`num_steps: 1`) | {c["steps"]} | {c["lr"]:g} | '
                         f'{_ms([L["baseline"][s] for s in seeds], 4)} | {_ms([L["steps"][s] for s in seeds], 4)} | | '
                         f'largest difference {largest:.1e} (n={len(seeds)}) | - | identical | | |')
            continue
        control = _ms(list(L['control'].values()), 4) if 'control' in L else ''
        row = (f'| {c["name"]} | {c["steps"]} | {c["lr"]:g} | {_ms(list(L["baseline"].values()), 4)} | '
               f'{_ms(list(L["steps"].values()), 4)} | {control} | ')
        row += f'{_diff_cell(t, 3)} | {_p_cell(t)} | {_verdict_cell(t, False)} |'
        n_tests += len(c['tests'])
        ct = c['tests'].get(('control', 'baseline'))
        sc = c['tests'].get(('steps', 'control'))
        row += f' {_diff_cell(ct, 3) if ct else ""} |'
        row += (f' {_diff_cell(sc, 3)}, p {_p_cell(sc)}: {_verdict_cell(sc, False)} |' if sc else ' |')
        lines.append(row)
    best = best_rate_test(cells)
    if best is not None:
        name, (rb, rs), t = best
        lines.append(f'| {name}, each model at its own best rate | {t[1]} | {rb:g} / {rs:g} | | | | '
                     f'{_diff_cell(t[0], 3)} | {format_p(t[0].p)} (unadjusted) | {_verdict_cell(t[0], False)} | | |')
    lines += ['', 'Validation loss in nats per byte, mean ± std over seeds; differences paired by seed, positive = the '
              'first model has the higher (worse) loss, so "behind" means a higher loss than the second model. '
              f'Adjusted p: paired t-test, Holm across the {n_tests} differences of the table (the sanity cell, '
              'exact by construction, aside; the comparison at each model\'s best rate, chosen after seeing the grid, '
              'is shown with its unadjusted p and decided on it).']
    return '\n'.join(lines) + '\n'


LLAMA_RUNS = FIG / 'lm' / 'llama' / 'runs.csv'
LLAMA_PROTOCOL = ROOT / 'benchmarks' / 'llama_compare.yaml'


def _seed_values(values: Mapping[int, float]) -> str:
    return ', '.join(f'{values[s]:.4f}' for s in sorted(values))


def render_llama_compare() -> str:
    """The Llama pair's cells (benchmarks/llama_compare.yaml), each beside the GPT sweep's cell of the same name."""
    gpt = {(c['name'], c['steps']): c for c in sweep_tests()}
    lines = ['| cell | steps | pair | residual loss per seed | Steps loss per seed | Steps − residual (95% CI) | '
             'adjusted p | verdict |', '|---|---|---|---|---|---|---|---|']
    for c in sweep_tests(LLAMA_RUNS, LLAMA_PROTOCOL):
        for pair, cell in (('Llama', c), ('GPT-2-style', gpt.get((c['name'], c['steps'])))):
            if cell is None:
                continue
            L, t = cell['losses'], cell['tests'].get(('steps', 'baseline'))
            if t is None:
                lines.append(f'| {c["name"]} | {c["steps"]} | {pair} | not run yet | not run yet | | | planned |')
                continue
            lines.append(f'| {c["name"]} | {c["steps"]} | {pair} | {_seed_values(L["baseline"])} | '
                         f'{_seed_values(L["steps"])} | {_diff_cell(t, 3)} | {_p_cell(t)} | '
                         f'{_verdict_cell(t, False)} |')
    lines += ['', 'Validation loss in nats per byte per seed (seeds 0, 1, 2 in order); differences paired by seed, '
              'positive = the Steps model has the higher (worse) loss. Adjusted p: paired t-test, Holm across the '
              'Llama cells that ran; the GPT-2-style rows are the LM sweep\'s, adjusted across that sweep '
              '(docs/language-modelling.md).']
    return '\n'.join(lines) + '\n'


# ------------------------------------------------------------------------------------------------- dry runs

DRY_RUNS = FIG / 'dry_run'
A100_BF16_PEAK = 312e12  # FLOP/s, dense bfloat16 (NVIDIA's A100 data sheet)
ASSUMED_UTILISATION = 0.4


# the process count each paper recipe is written for (its header): the image recipes 8 GPUs, the language models one
RECIPE_PROCESSES = {'cls': 8, 'det': 8, 'seg': 8, 'lm': 1}


def _recipe_items(r: Mapping[str, Any]) -> Tuple[float, str]:
    """The items (images or tokens) the recipe of a recorded dry run trains on, and how that was counted."""
    from stepsnet.utils.config import recipe_task
    path = str(ROOT / r['command'].split(' -c ', 1)[1].split()[0])
    task = recipe_task(path)
    module = __import__(f'stepsnet.config.{_CONFIG_MODULES[task]}', fromlist=['load_config'])
    cfg = module.load_config(path)
    n = RECIPE_PROCESSES[task]
    if task == 'lm':  # a run length in steps, each of the recipe's batch
        return cfg.max_iters * cfg.batch_size * cfg.block_size * cfg.grad_accum * n, f'{n} x {cfg.batch_size} x ' \
            f'{cfg.block_size} x {cfg.grad_accum} tokens x {cfg.max_iters:,} steps'
    if task == 'seg':
        return cfg.max_iters * cfg.batch_size * n, f'{n} x {cfg.batch_size} images x {cfg.max_iters:,} steps'
    # epochs: the dry run's steps at its own batch cover the same images as the recipe's
    return r['items_per_step'] * r['total_steps'], f'{r["total_steps"] * r["items_per_step"]:,.0f} images'


def _si(flops: float) -> str:
    for unit, scale in (('E', 1e18), ('P', 1e15), ('T', 1e12), ('G', 1e9), ('M', 1e6)):
        if flops >= scale:
            return f'{flops / scale:.3g} {unit}'
    return f'{flops:.3g}'


_CONFIG_MODULES = {'cls': 'classification', 'det': 'detection', 'seg': 'segmentation', 'lm': 'lm'}


def render_dry_runs() -> str:
    """The recorded dry runs (scripts/record_dry_runs.py): what each measured on this CPU, and the recipe's training
    FLOPs and an A100 estimate from them; then each printout as it appeared."""
    paths = sorted(DRY_RUNS.glob('*.json')) if DRY_RUNS.is_dir() else []
    if not paths:
        return 'Not recorded yet: `python scripts/record_dry_runs.py`.\n'
    lines = ['| dry run | parameters | training FLOPs per item | batch per step | first step | later steps | '
             'peak memory | the recipe trains on | on this CPU | recipe FLOPs | A100-hours at 40% of peak (a floor) |',
             '|---|---|---|---|---|---|---|---|---|---|---|']
    texts = []
    for path in paths:
        r = json.loads(path.read_text(encoding='utf-8'))
        per_item = r['train_flops_per_step'] / (r['items_per_micro_batch'] * r['accumulation'])
        items, counted = _recipe_items(r)
        cpu_h = (items / r['items_per_s'] + r['projected_eval_s']) / 3600
        flops = per_item * items
        a100 = flops / (A100_BF16_PEAK * ASSUMED_UTILISATION) / 3600
        later = f'{r["step_s"]:.2f} s' if r['step_s'] is not None else 'one step only'
        lines.append(
            f'| {r["name"]} | {r["params"] / 1e6:.1f}M | {_si(per_item)} | {r["items_per_step"]:,} '
            f'{r["item_name"]} | {r["first_step_s"]:.2f} s | {later} | {r["peak_memory_bytes"] / 2 ** 30:.1f} GiB | '
            f'{counted} | {cpu_h:,.0f} h | {_si(flops)} | {a100:,.1f} |')
        txt = path.with_suffix('.txt')
        if txt.is_file():
            texts.append(f'`{r["name"]}` ({r["machine"].get("cpu", "CPU")}, {r["threads"]} threads):\n\n```text\n'
                         f'{txt.read_text(encoding="utf-8").rstrip()}\n```')
    note = ('Measured on one CPU, float32, the batch cut as each printout says. *The recipe trains on*: the images or '
            'tokens of the whole recipe at its own batch and process count (8 processes for the image recipes, one '
            'for the language models, as their headers say; the `_data_dir` run reads a folder of 8 images, so its '
            'recipe is 300 epochs of those). *On this CPU*: those items at the measured throughput plus the '
            'evaluations, one process (time taken as linear in the batch). *Recipe FLOPs*: the training FLOPs per '
            'item, counted on the first step, times those items. *A100-hours*: those FLOPs at '
            f'{ASSUMED_UTILISATION:.0%} of the A100\'s dense bfloat16 peak ({A100_BF16_PEAK / 1e12:.0f} TFLOP/s), an '
            'assumption, not a measurement, and a floor rather than a forecast: evaluation, data loading and '
            'communication are left out, and vision training rarely keeps 40% of a GPU\'s peak. The paper does not '
            'state its hardware.')
    lines += ['', note, '']
    return '\n'.join(lines + texts) + '\n'


# --------------------------------------------------------------------------------------------- README summary

def render_summary() -> str:
    """The README's results: each headline comparison with its interval, adjusted p and verdict, and where it is."""
    rows = []
    for folder, what in (('pilot_8seeds', 'Depth (Fig. 1), 8-seed pilot'),
                         ('pilot', 'Depth (Fig. 1), 3-seed pilot'), ('main_job', 'Main job (`make run`)')):
        path = ANALYSES / folder / 'results.json'
        if not path.is_file():
            continue
        r = json.loads(path.read_text(encoding='utf-8'))
        tests = _comparison_tests(r)
        for p in r['points']:
            for role in p['diffs']:
                if (role.endswith('_train') and folder != 'pilot_8seeds') or (folder == 'pilot' and
                                                                               role != 'steps_blocks'):
                    continue
                t = tests[(p['name'], role)]
                arm = {'steps_blocks': 'Steps, equal blocks', 'steps_compute': 'Steps, equal params/FLOPs'}.get(
                    role.replace('_train', ''), 'Steps, equal params/FLOPs')
                metric = 'training top-1' if role.endswith('_train') else 'val top-1'
                rows.append((f'{what}: {arm} {MINUS} residual at {p["name"]}, {metric} (points)', t, True,
                             f'docs/figures/analyses/{folder}/'))
    for c in sweep_tests():
        if c['name'].startswith(('depth', 'budget')) and c['name'] != 'sanity':
            t = c['tests'].get(('steps', 'baseline'))
            if t is not None:
                rows.append((f'LM sweep, {c["name"]} ({c["steps"]} steps): Steps {MINUS} residual, val loss '
                             '(nats/byte)', t, False, 'docs/figures/lm/'))
    for c in sweep_tests(LLAMA_RUNS, LLAMA_PROTOCOL):
        t = c['tests'].get(('steps', 'baseline'))
        if t is not None:
            rows.append((f'Llama pair, {c["name"]} ({c["steps"]} steps): Steps {MINUS} LlamaForCausalLM, val loss '
                         '(nats/byte)', t, False, 'docs/figures/lm/llama/'))
    lines = ['| comparison | seeds | difference (95% CI) | adjusted p | verdict | files |', '|---|---|---|---|---|---|']
    for name, t, higher, where in rows:
        digits = 2 if higher else 3
        lines.append(f'| {name} | {t.n} | {_diff_cell(t, digits)} | {_p_cell(t)} | {_verdict_cell(t, higher)} | '
                     f'[{where}]({where}) |')
    lines += ['', 'Each p is Holm-adjusted across the comparisons of its own report; "ahead" / "behind" only where it '
              'is below 0.05. For the LM a lower loss is better, so "behind" means a higher loss than the residual '
              'model.']
    return '\n'.join(lines) + '\n'


# ---------------------------------------------------------------------------------------------------- registry

BLOCKS: Dict[str, Tuple[str, Callable[[], str]]] = {
    'summary': ('README.md', render_summary),
    'pilot-8seeds': ('docs/analyses.md', lambda: render_comparison(ANALYSES / 'pilot_8seeds' / 'results.json')),
    'pilot': ('docs/analyses.md', lambda: render_comparison(ANALYSES / 'pilot' / 'results.json')),
    'main-job': ('docs/analyses.md', lambda: render_comparison(ANALYSES / 'main_job' / 'results.json')),
    'shortcut-init': ('docs/analyses.md', render_shortcut_init),
    'mask': ('docs/analyses.md', render_mask),
    'drop-step': ('docs/analyses.md', render_drop_step),
    'shortcut-trained': ('docs/analyses.md', render_shortcut_trained),
    'depth-benchmark': ('docs/analyses.md', render_depth_benchmark),
    'lm-sweep': ('docs/language-modelling.md', render_lm_sweep),
    'llama-compare': ('docs/llama.md', render_llama_compare),
    'dry-runs': ('docs/full-scale.md', render_dry_runs),
}


def markers(name: str) -> Tuple[str, str]:
    return f'<!-- results:{name}:begin -->', f'<!-- results:{name}:end -->'


def render_text(text: str, name: str, table: str) -> str:
    """``text`` with the block ``name`` replaced by ``table``."""
    begin, end = markers(name)
    if begin not in text or end not in text:
        raise ValueError(f'no {begin} ... {end} block')
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    return f'{head}{begin}\n{table}{end}{tail}'


def stale_blocks(names: Optional[Sequence[str]] = None) -> List[str]:
    """The blocks whose text differs from what the result files render now."""
    stale = []
    for name in names or BLOCKS:
        doc, render = BLOCKS[name]
        text = (ROOT / doc).read_text(encoding='utf-8')
        if render_text(text, name, render()) != text:
            stale.append(f'{doc}: {name}')
    return stale


def write_blocks(names: Optional[Sequence[str]] = None) -> None:
    for name in names or BLOCKS:
        doc, render = BLOCKS[name]
        path = ROOT / doc
        text = path.read_text(encoding='utf-8')
        new = render_text(text, name, render())
        if new != text:
            tmp = path.with_suffix('.tmp')
            tmp.write_text(new, encoding='utf-8')
            tmp.replace(path)
        print(f'{doc}: {name} {"updated" if new != text else "unchanged"}')


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--check', action='store_true', help='list the stale blocks and exit 1 if there are any')
    ap.add_argument('blocks', nargs='*', metavar='BLOCK', help=f'only these blocks (default: all): {", ".join(BLOCKS)}')
    args = ap.parse_args(argv)
    unknown = [b for b in args.blocks if b not in BLOCKS]
    if unknown:
        ap.error(f'unknown block(s) {", ".join(unknown)}; expected some of {", ".join(BLOCKS)}')
    if args.check:
        stale = stale_blocks(args.blocks or None)
        for s in stale:
            print(f'stale: {s}')
        return 1 if stale else 0
    write_blocks(args.blocks or None)
    return 0


if __name__ == '__main__':
    sys.exit(main())
