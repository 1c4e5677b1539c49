"""Render the result tables of docs/ from the committed result files.

Every table below is computed from a file under ``docs/figures/`` (a comparison's ``results.json``, a sweep's or an
analysis's CSV); none is typed by hand, and none has statistics of its own here: a comparison's tests are those of
:func:`stepsnet.compare.judge` (read from its ``results.json``, or computed by it from the stored per-seed values
where the file was written before the sign-flip test), the LM sweep's those of :mod:`stepsnet.reports.lm_sweep`
(which the sweep's own report uses too), and an analysis table's per-model differences one family of
:func:`stepsnet.stats.test_family`. Each table sits between ``<!-- results:NAME:begin -->`` and
``<!-- results:NAME:end -->`` in its document::

    python scripts/render_results.py            # rewrite every block
    python scripts/render_results.py --check    # list the stale blocks and exit 1 (tests/test_results_docs.py)

Every difference is shown with both tests, the paired t-test and the exact sign-flip test, each Holm-adjusted
across the comparisons of its report. In an exploratory report a verdict ("ahead", "behind") needs both adjusted p
below 0.05 (rule ``both`` of :data:`stepsnet.stats.RULES`), so that none rests on the normality of three numbers; a
pre-registered comparison is decided by the test its protocol names. Anything else is "not distinguishable" with
the number of seeds it had.
"""
from __future__ import annotations

import argparse
import copy
import csv
import json
import pathlib
import sys
from collections import defaultdict
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import yaml

from stepsnet import stats
from stepsnet.compare.convergence import convergence_lines
from stepsnet.config.lm import load_config as load_lm_config
from stepsnet.data.images import held_out_split
from stepsnet.reports import lm_sweep as sweep_report
from stepsnet.stats import PairedTest, SignFlipTest, format_p
from stepsnet.utils import docblocks, dryrun

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
    """``+0.93 (−0.51 to +2.37)``: the mean paired difference and its 95% interval."""
    if t.mean is None:
        return 'not run'
    if t.ci_low is None:
        return f'{_signed(t.mean, digits)} (n={t.n})'
    return f'{_signed(t.mean, digits)} ({_signed(t.ci_low, digits)} to {_signed(t.ci_high, digits)})'


def _mean_sd(t: PairedTest, digits: int) -> str:
    """``+0.188 ± 0.022``: the mean paired difference and the standard deviation of the per-seed differences."""
    if t.mean is None:
        return 'not run'
    return _signed(t.mean, digits) + ('' if t.std is None else f' ± {t.std:.{digits}f}')


def _ci(t: PairedTest, digits: int) -> str:
    return '-' if t.ci_low is None else f'{_signed(t.ci_low, digits)} to {_signed(t.ci_high, digits)}'


def _p_cells(t: PairedTest, s: SignFlipTest) -> List[str]:
    """The t-test's p and adjusted p, then the sign-flip test's."""
    return [format_p(t.p), format_p(t.p_adj), format_p(s.p), format_p(s.p_adj)]


def _verdict_cell(code: str, n: int) -> str:
    """An outcome code (:func:`stepsnet.stats.outcome`) for a table: a verdict in bold, else what stopped it."""
    if code in ('ahead', 'behind', 'above', 'below'):
        return f'**{code}**'
    if code == 'not distinguishable':
        return f'not distinguishable ({n} seeds)'
    return code


def _decide(t: PairedTest, s: SignFlipTest, higher_is_better: Optional[bool]) -> str:
    """The outcome of an exploratory difference: both tests' adjusted p must be below 0.05 (rule ``both``)."""
    return stats.outcome(t, higher_is_better, p=stats.deciding_p(t, s, 'both'))


def _floor_note(flips: Sequence[SignFlipTest], alpha: float = stats.ALPHA, unit: str = 'seeds') -> str:
    """What the seeds (or models) allow: where no sign-flip p can reach ``alpha`` even before adjustment, say so."""
    floors = [s.min_p for s in flips if s.min_p is not None]
    if not floors or min(floors) < alpha:
        return ''
    n = max(s.n - s.ties for s in flips if s.min_p is not None)
    if any(s.ties for s in flips if s.min_p is not None and s.n - s.ties == n):
        unit = f'untied {unit}'  # a tie (|d| within the tolerance) takes no sign
    return (f' With {n} {unit} the sign-flip p cannot go below {min(floors):.2g} even before adjustment, so no '
            'difference here can get a verdict.')


# ------------------------------------------------------------------------------------------------ comparisons

def _comparison_differences(r: Mapping[str, Any]) -> List[Mapping[str, Any]]:
    return [d for p in r['points'] for d in p['diffs'].values()] + list((r.get('trend') or {}).values())


def judged(path: pathlib.Path) -> Dict[str, Any]:
    """A comparison's results with the statistics of :func:`stepsnet.compare.judge`: as stored, where every
    difference carries its ``sign_flip`` (the file was written by judge), else judged again on a copy from the
    stored per-seed values (a file written before the sign-flip test; the file itself is left as it is)."""
    r = json.loads(path.read_text(encoding='utf-8'))
    if all('sign_flip' in d for d in _comparison_differences(r)):
        return r
    from stepsnet.compare import judge  # loads torch: only for a file written before the sign-flip test
    return judge(copy.deepcopy(r))


def _tests(d: Mapping[str, Any]) -> Tuple[PairedTest, SignFlipTest]:
    """The two tests of a judged difference (its t-test fields at the top level, the sign-flip test under
    ``sign_flip``)."""
    return PairedTest.from_dict(d), SignFlipTest.from_dict(d['sign_flip'])


def _arm_values(arm: Mapping[str, Any]) -> List[float]:
    return list(arm['per_seed'].values())


def _seeds_text(r: Mapping[str, Any]) -> str:
    seeds = r['seeds']
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[0] + len(seeds))):
        return f'seeds {seeds[0]}-{seeds[-1]}'
    return 'seeds ' + ', '.join(str(s) for s in seeds)


def _comparison_note(r: Mapping[str, Any]) -> str:
    """How a judged comparison was tested, from its own ``statistics``."""
    st = r['statistics']
    families = st['families']
    where = (f'across the {families["report"]} comparisons of the report' if list(families) == ['report'] else
             'within each family: ' + ', '.join(f'{k} ({v} differences)' for k, v in families.items()))
    flips = [SignFlipTest.from_dict(d['sign_flip']) for d in _comparison_differences(r)]
    return (f'Differences are paired by seed ({_seeds_text(r)}); in brackets the 95% interval of the mean difference '
            '(t distribution). Adjusted p: the paired t-test and the exact sign-flip test, each Holm-adjusted '
            f'{where}. A verdict in bold needs {st["decided_by"]} at adjusted p < {st["alpha"]:g}; every other '
            'difference is not distinguishable from zero with these seeds.' + _floor_note(flips, float(st['alpha'])))


def render_comparison(path: pathlib.Path) -> str:
    """One row per depth: the residual trunk, each Steps arm, the paired differences with interval, both adjusted p
    and the verdict of the comparison's own results."""
    r = judged(path)
    roles = [role for role in r['points'][0]['arms'] if role != 'baseline']
    names = {'steps': 'Steps, equal params/FLOPs', 'steps_compute': 'Steps, equal params/FLOPs',
             'steps_blocks': 'Steps, equal blocks'}
    head = '| residual blocks (layers) | residual |'
    rule = '|---|---|'
    for role in roles:
        head += (f' {names.get(role, role)} (blocks) | {MINUS} residual (95% CI) | t-test adjusted p | sign-flip '
                 'adjusted p | verdict |')
        rule += '---|---|---|---|---|'
    lines = [head, rule]
    for p in r['points']:
        base = p['arms']['baseline']
        row = f'| {base["blocks"]} ({base["layers"]}) | {_ms(_arm_values(base))} |'
        for role in roles:
            a, d = p['arms'][role], p['diffs'][role]
            t, s = _tests(d)
            row += (f' {_ms(_arm_values(a))} ({a["blocks"]}) | {_diff_cell(t)} | {format_p(t.p_adj)} | '
                    f'{format_p(s.p_adj)} | {_verdict_cell(d["outcome"], t.n)} |')
        lines.append(row)
    train = [(p, role) for p in r['points'] for role in roles if role + '_train' in p['diffs']]
    if train:
        lines += ['', f'On the training images (no augmentation), {MINUS} residual:', '',
                  '| residual blocks | arm | residual | Steps | difference (95% CI) | t-test adjusted p | sign-flip '
                  'adjusted p | verdict |', '|---|---|---|---|---|---|---|---|']
        for p, role in train:
            d = p['diffs'][role + '_train']
            t, s = _tests(d)
            base, arm = p['arms']['baseline'], p['arms'][role]
            lines.append(f'| {base["blocks"]} | {names.get(role, role)} | {_ms(base["train_stats"]["values"])} | '
                         f'{_ms(arm["train_stats"]["values"])} | {_diff_cell(t)} | {format_p(t.p_adj)} | '
                         f'{format_p(s.p_adj)} | {_verdict_cell(d["outcome"], t.n)} |')
    trend = list((r.get('trend') or {}).items())
    if trend:
        lines.append('')
        for role, d in trend:
            t, s = _tests(d)
            lines.append(f'Change of the gap with depth ({names.get(role, role)}: the difference at {d["deep"]} '
                         f'minus the difference at {d["shallow"]}, per seed): {_diff_cell(t)}, adjusted p '
                         f'{format_p(t.p_adj)} (t-test) / {format_p(s.p_adj)} (sign-flip), '
                         f'{_verdict_cell(d["outcome"], t.n)}.')
    if r.get('convergence'):  # the report's own section: each arm against the same arm trained twice as long
        lines += ['', *convergence_lines(r['convergence'], 2, 'training top-1 (no augmentation)')]
    lines += ['', _comparison_note(r)]
    return '\n'.join(lines) + '\n'


# ----------------------------------------------------------------------------------------------- Tables 6 and 7

MASK_PAPER = {'slow': (81.0, 77.3, 68.3, 49.0, 20.4, 4.4), 'fast': (81.0, 80.9, 80.9, 80.8, 80.7, 80.3)}
DROP_PAPER = {'none': '81.0', '1': '77.0', '2': '78.1', '3': '80.5'}


def _by_model(rows: Sequence[Mapping[str, str]], key: str) -> Dict[str, Dict[str, Mapping[str, str]]]:
    out: Dict[str, Dict[str, Mapping[str, str]]] = defaultdict(dict)
    for row in rows:
        out[row[key]][row['model']] = row
    return out


def _short_test(t: PairedTest, s: SignFlipTest, digits: int = 1) -> str:
    """One cell of an analysis table: the difference with its interval, both adjusted p and the verdict."""
    return (f'{_diff_cell(t, digits)}, p {format_p(t.p_adj)} / {format_p(s.p_adj)}: '
            f'{_verdict_cell(_decide(t, s, None), t.n)}')


def render_mask(path: pathlib.Path = ANALYSES / 'mask_steps_deit_digits_3seeds.csv') -> str:
    """Table 6 at CPU scale: top-1 and loss with the first / last n channels zeroed, and slow − fast per model."""
    by_n = _by_model(_read_csv(path), 'n')
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
        lines.append(f'| {label} | ' + ' | '.join(_ms(col(n, key), digits) for n in ns) + ' |')
    cells = ['-'] + [_short_test(t, s) for t, s in tests]
    lines.append(f'| slow {MINUS} fast, top-1 (95% CI), adjusted p (t-test / sign-flip) | ' + ' | '.join(cells) + ' |')
    for path_name in ('slow', 'fast'):
        lines.append(f'| paper, {path_name} path (n of 384) | ' + ' | '.join(f'{v:.1f}' for v in
                                                                             MASK_PAPER[path_name]) + ' |')
    lines += ['', f'Mean ± std over {len(models)} models. slow {MINUS} fast is paired by model (the same model with '
              'the first or the last n channels zeroed); "above" / "below" zero: the slow path keeps more / less '
              f'accuracy. Adjusted p: the paired t-test / the exact sign-flip test, each Holm-adjusted across the '
              f'{len(tests)} mask sizes; a verdict needs both below 0.05.'
              + _floor_note([s for _, s in tests], unit='models')]
    return '\n'.join(lines) + '\n'


def render_drop_step(paths: Sequence[pathlib.Path] = (ANALYSES / 'drop_step_steps_deit_digits_3seeds.csv',
                                                      ANALYSES / 'drop_step2_steps_deit_digits_3seeds.csv')) -> str:
    """Table 7 at CPU scale: the cost of dropping equal compute from each step, and the steps against each other."""
    lines = ['| dropping position | blocks dropped x windows | dropped MACs (share of trunk) | top-1 | loss | '
             f'top-1 {MINUS} none (95% CI), adjusted p (t-test / sign-flip) | top-1 over windows, min-max (first '
             'model) | paper |', '|---|---|---|---|---|---|---|---|']
    pair_rows: List[Tuple[str, List[float]]] = []
    cost_rows: List[Tuple[int, List[float]]] = []
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
            lines.append(f'| none | - | - | {_ms([float(rows[m]["top1"]) for m in models], 1)} | '
                         f'{_ms([float(rows[m]["loss"]) for m in models], 3)} | - | - | {DROP_PAPER["none"]} |')
            continue
        t, s = by_row[idx]
        macs = float(first['macs'])
        lines.append(f'| {name} | {first["dropped"]} x {first["windows"]} | {macs / 1e6:.2f}M '
                     f'({float(first["share"]) * 100:.1f}%) | {_ms([float(rows[m]["top1"]) for m in models], 1)} | '
                     f'{_ms([float(rows[m]["loss"]) for m in models], 3)} | {_diff_cell(t, 1)}, p '
                     f'{format_p(t.p_adj)} / {format_p(s.p_adj)} | '
                     f'{float(first["top1_min"]):.1f}-{float(first["top1_max"]):.1f} | '
                     f'{DROP_PAPER[step] if budget == 1 else ""} |')
    lines += ['', '| steps against each other (top-1, paired by model) | difference (95% CI) | t-test adjusted p | '
              'sign-flip adjusted p | verdict |', '|---|---|---|---|---|']
    for (label, _), (t, s) in zip(pair_rows, tests[len(cost_rows):]):
        lines.append(f'| {label} | {_diff_cell(t, 1)} | {format_p(t.p_adj)} | {format_p(s.p_adj)} | '
                     f'{_verdict_cell(_decide(t, s, None), t.n)} |')
    lines += ['', f'Mean ± std over {len(models)} models; every difference is paired by model. Adjusted p: the paired '
              f't-test / the exact sign-flip test, each Holm-adjusted across the {len(tests)} differences of the two '
              'tables; a verdict needs both below 0.05. A step whose dropping costs accuracy is "below" zero; "F1 − '
              'F2 below zero" means dropping from F1 costs more than from F2.'
              + _floor_note([s for _, s in tests], unit='models')]
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
    tests = stats.test_family([[_gamma_at(rows, a, d) - _gamma_at(rows, b, d) for rows in seeds]
                               for a, b in pairs for d in depths])
    for i, (a, b) in enumerate(pairs):
        cells = [_short_test(t, s, 2) for t, s in tests[i * len(depths):(i + 1) * len(depths)]]
        lines.append(f'| {a.split(" (")[0]} {MINUS} {b.split(" (")[0]} (95% CI), adjusted p (t-test / sign-flip) | '
                     + ' | '.join(cells) + ' |')
    lines += ['', 'Mean ± std over the pilot models of seeds 0-2 (`figures/analyses/shortcut_trained_pilot_seed{0,1,2}'
              '.csv`); in brackets the mean over the processed channels only, where it differs. The differences are '
              'paired by seed. Adjusted p: the paired t-test / the exact sign-flip test, each Holm-adjusted across the '
              f'{len(tests)} differences of the table; a verdict needs both below 0.05.'
              + _floor_note([s for _, s in tests])]
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
ROLES = {'baseline': 'residual', 'steps': 'Steps', 'control': 'control'}  # the docs call the baseline "residual"


def sweep_tests(results: pathlib.Path = SWEEP, protocol_path: pathlib.Path = SWEEP_PROTOCOL,
                rule: Optional[str] = None) -> sweep_report.Sweep:
    """An LM sweep's cells, differences and tests (:func:`stepsnet.reports.lm_sweep.analyse`, as in the sweep's own
    report), from its CSV (one row per finished run; a missing file is a sweep that has not run) and its protocol
    (``benchmarks/lm_sweep.yaml`` or another file of that format)."""
    protocol = yaml.safe_load(protocol_path.read_text(encoding='utf-8'))
    config_lr = float(load_lm_config(str(ROOT / protocol['config'])).lr)
    return sweep_report.analyse(protocol, sweep_report.read_losses(str(results)), config_lr, rule)


def _what(d: sweep_report.Difference) -> str:
    return f'{ROLES.get(d.first, d.first)} {MINUS} {ROLES.get(d.second, d.second)}'


def _sweep_verdict(d: sweep_report.Difference) -> str:
    if d.family == sweep_report.SANITY:
        return d.verdict
    return _verdict_cell(d.outcome, d.test.n)


def _sweep_row(d: sweep_report.Difference, digits: int) -> List[str]:
    """mean ± sd, 95% CI, the t-test's p and adjusted p, the sign-flip test's, the verdict."""
    return [_mean_sd(d.test, digits), _ci(d.test, digits), *_p_cells(d.test, d.sign_flip), _sweep_verdict(d)]


def render_lm_sweep() -> str:
    """The LM sweep: each cell's losses, then every paired difference with both tests and its verdict."""
    sw = sweep_tests()
    lines = ['| cell | steps | lr | residual | Steps | control |', '|---|---|---|---|---|---|']
    for c in sw.cells:
        name = 'sanity (`num_steps: 1`)' if c.sanity else c.name
        losses = [_ms(list(c.losses[role].values()), 4) if role in c.roles else '' for role in ROLES]
        lines.append(f'| {name} | {c.max_iters} | {c.lr:g} | ' + ' | '.join(losses) + ' |')
    for b in sw.best_rates:
        lines.append(f'| {b.label} | {b.max_iters} | residual {b.rates["baseline"]:g}, Steps {b.rates["steps"]:g} | '
                     f'{_ms(list(b.losses["baseline"].values()), 4)} | {_ms(list(b.losses["steps"].values()), 4)} | |')
    lines += ['', '| cell | lr | difference | mean ± sd | 95% CI | t-test p | adjusted | sign-flip p | adjusted | '
              'verdict |', '|---|---|---|---|---|---|---|---|---|---|']
    for place, owner, d in sw.shown():
        if isinstance(owner, sweep_report.BestRate):
            cell, lr = owner.cell, 'each its own best'
            what = f'{_what(d)} (exploratory)'
        else:
            cell, lr, what = ('sanity' if owner.sanity else owner.name), f'{owner.lr:g}', _what(d)
            others = [p for p in sw.places[d.key] if p != place]
            if others:
                what += f' (one test with {"; ".join(others)})'
        lines.append(f'| {cell} | {lr} | {what} | ' + ' | '.join(_sweep_row(d, 6 if d.family == 'sanity' else 3))
                     + ' |')
    lines += ['', 'Validation loss in nats per byte, mean ± std over seeds; differences paired by seed, positive = the '
              'first model has the higher (worse) loss, so "behind" means a higher loss than the second model. '
              + sweep_report.method_note(sw)]
    return '\n'.join(lines) + '\n'


LLAMA_RUNS = FIG / 'lm' / 'llama' / 'runs.csv'
LLAMA_PROTOCOL = ROOT / 'benchmarks' / 'llama_compare.yaml'
# the test the Llama protocol named before any of its runs ("a two-sided paired t-test, Holm-corrected over the cells
# that ran"): its verdicts keep it; the sign-flip test is shown beside it
LLAMA_RULE = 't'


def _seed_values(values: Mapping[int, float]) -> str:
    return ', '.join(f'{values[s]:.4f}' for s in sorted(values))


def render_llama_compare() -> str:
    """The Llama pair's cells (benchmarks/llama_compare.yaml), each beside the GPT sweep's cell of the same name."""
    gpt_sweep = sweep_tests()
    gpt = {(c.name, c.max_iters): c for c in gpt_sweep.cells}
    llama = sweep_tests(LLAMA_RUNS, LLAMA_PROTOCOL, LLAMA_RULE)
    lines = ['| cell | steps | pair | residual loss per seed | Steps loss per seed | Steps − residual, mean ± sd | '
             '95% CI | t-test p | adjusted | sign-flip p | adjusted | verdict |', '|---' * 12 + '|']
    not_run = 0
    for c in llama.cells:
        for pair, cell in (('Llama', c), ('GPT-2-style', gpt.get((c.name, c.max_iters)))):
            if cell is None:
                continue
            d = cell.differences[('steps', 'baseline')]
            if not d.values:
                not_run += pair == 'Llama'
                lines.append(f'| {c.name} | {c.max_iters} | {pair} | not run yet | not run yet | | | | | | | planned |')
                continue
            lines.append(f'| {c.name} | {c.max_iters} | {pair} | {_seed_values(cell.losses["baseline"])} | '
                         f'{_seed_values(cell.losses["steps"])} | ' + ' | '.join(_sweep_row(d, 3)) + ' |')
    provisional = (f' The Llama protocol plans {not_run} more {"cell" if not_run == 1 else "cells"}, not run yet: Holm '
                   'counts only the cells that ran, so the adjusted p above are provisional until every planned cell '
                   'has run.' if not_run else '')
    lines += ['', 'Validation loss in nats per byte per seed (seeds 0, 1, 2 in order); differences paired by seed, '
              'positive = the Steps model has the higher (worse) loss. The Llama rows are one family. '
              + sweep_report.method_note(llama) + provisional + ' The GPT-2-style rows are the LM sweep\'s, tested in '
              f'that sweep\'s family of {gpt_sweep.tested} differences (docs/language-modelling.md).']
    return '\n'.join(lines) + '\n'


# ------------------------------------------------------------------------------------------------- dry runs

DRY_RUNS = FIG / 'dry_run'


def _recipe_floor(r: Mapping[str, Any], flops_per_item: float) -> dryrun.A100Floor:
    """The A100-hour floor of the recipe of a recorded dry run (:func:`stepsnet.utils.dryrun.a100_floor`, which
    the dry run's report prints too), from the recipe as written."""
    from stepsnet.utils.config import recipe_task
    from stepsnet.utils.tasks import TASKS, resolve
    path = str(ROOT / r['command'].split(' -c ', 1)[1].split()[0])
    task = recipe_task(path)
    cfg = resolve(TASKS[task].load_config)(path)
    return dryrun.a100_floor(task, cfg, flops_per_item, r['items_per_step'], r['total_steps'])


def _si(flops: float) -> str:
    for unit, scale in (('E', 1e18), ('P', 1e15), ('T', 1e12), ('G', 1e9), ('M', 1e6)):
        if flops >= scale:
            return f'{flops / scale:.3g} {unit}'
    return f'{flops:.3g}'


def render_dry_runs() -> str:
    """The recorded dry runs (scripts/record_dry_runs.py): what each measured on this CPU, and the recipe's training
    MACs and its A100 floor from them (:func:`stepsnet.utils.dryrun.a100_floor`); then each printout as it
    appeared."""
    paths = sorted(DRY_RUNS.glob('*.json')) if DRY_RUNS.is_dir() else []
    if not paths:
        return 'Not recorded yet: `python scripts/record_dry_runs.py`.\n'
    lines = ['| dry run | parameters | training MACs per item (multiply-accumulates; the paper\'s \'FLOPs\') | '
             'batch per step | first step | later steps | peak memory | the recipe trains on | on this CPU | '
             'recipe MACs (multiply-accumulates) | A100-hours at 40% of peak (a floor) |',
             '|---|---|---|---|---|---|---|---|---|---|---|']
    texts = []
    for path in paths:
        r = json.loads(path.read_text(encoding='utf-8'))
        # recorded as the counter's FLOPs (2 per multiply-accumulate); a report since also records the MACs
        flops_per_item = r['train_flops_per_step'] / (r['items_per_micro_batch'] * r['accumulation'])
        macs_per_item = r.get('train_macs_per_step', r['train_flops_per_step'] / 2) / (
            r['items_per_micro_batch'] * r['accumulation'])
        floor = _recipe_floor(r, flops_per_item)
        cpu_h = (floor.items / r['items_per_s'] + r['projected_eval_s']) / 3600
        later = f'{r["step_s"]:.2f} s' if r['step_s'] is not None else 'one step only'
        lines.append(
            f'| {r["name"]} | {r["params"] / 1e6:.1f}M | {_si(macs_per_item)} | {r["items_per_step"]:,} '
            f'{r["item_name"]} | {r["first_step_s"]:.2f} s | {later} | {r["peak_memory_bytes"] / 2 ** 30:.1f} GiB | '
            f'{floor.counted} | {cpu_h:,.0f} h | {_si(floor.macs)} | {floor.hours:,.1f} |')
        txt = path.with_suffix('.txt')
        if txt.is_file():
            texts.append(f'`{r["name"]}` ({r["machine"].get("cpu", "CPU")}, {r["threads"]} threads):\n\n```text\n'
                         f'{txt.read_text(encoding="utf-8").rstrip()}\n```')
    note = ('Measured on one CPU, float32, the batch cut as each printout says. *The recipe trains on*: the images or '
            'tokens of the whole recipe at its own batch and process count (8 processes for the image recipes, one '
            'for the language models, as their headers say; the `_data_dir` run reads a folder of 8 images, so its '
            'recipe is 300 epochs of those). *On this CPU*: those items at the measured throughput plus the '
            'evaluations, one process (time taken as linear in the batch). *MACs* are multiply-accumulates, the '
            'paper\'s (and timm\'s, fvcore\'s) "FLOPs": half the FLOPs `torch.utils.flop_counter` counts (2 per '
            'multiply-accumulate). *Recipe MACs*: the training MACs per item, counted on the first step, times '
            'those items. *A100-hours*: those MACs as FLOPs (2 each) at '
            f'{dryrun.ASSUMED_UTILISATION:.0%} of the A100\'s dense bfloat16 peak '
            f'({dryrun.A100_BF16_PEAK / 1e12:.0f} TFLOP/s), an assumption, not a measurement, and a floor rather than '
            'a forecast: evaluation, data loading and communication are left out, and vision training rarely keeps '
            '40% of a GPU\'s peak (`stepsnet.utils.dryrun.a100_floor`; a dry run prints the same floor). The paper '
            'does not state its hardware. The printouts below were recorded before the report printed MACs: their '
            '"FLOPs" line is the counter\'s FLOPs, twice the MACs.')
    lines += ['', note, '']
    return '\n'.join(lines + texts) + '\n'



# ---------------------------------------------------------------------------------------------------- MNIST-1D

MNIST1D = FIG / 'mnist1d'
# Test accuracy (%) on the standard split, from Greydanus & Kobak (arXiv:2011.14439, Table 1 and the README of
# github.com/greydanus/mnist1d); their models, not ours
MNIST1D_PUBLISHED = (('logistic regression', 32), ('MLP', 68), ('CNN', 94), ('GRU', 91), ('human expert', 96))
MNIST1D_PAIRS = (('resnet', '1-D ResNet'), ('vit', 'DeiT-like over 1-D patches'))


def render_mnist1d() -> str:
    """Our residual models and their Steps twins on the standard MNIST-1D split (one comparison result per pair,
    ``figures/mnist1d/<pair>/results.json``) beside the authors' published baselines, then each pair's paired
    difference with both tests."""
    rows = ['| model | by | test top-1 (%) | training top-1 (%) | parameters |', '|---|---|---|---|---|']
    rows += [f'| {name} | Greydanus & Kobak | {acc} | | |' for name, acc in MNIST1D_PUBLISHED]
    diffs, found = [], []
    for key, what in MNIST1D_PAIRS:
        path = MNIST1D / key / 'results.json'
        if not path.is_file():
            continue
        r = judged(path)
        found.append(r)
        point = r['points'][0]
        for role in ('baseline', 'steps'):
            arm = point['arms'][role]
            train = arm['train_stats']
            train_cell = _ms(train['values']) if train.get('values') else ''
            rows.append(f'| `{arm["overrides"]["model"]}` ({what}{", Steps twin" if role == "steps" else ""}) | '
                        f'this project, {len(arm["per_seed"])} seeds | {_ms(_arm_values(arm))} | {train_cell} | '
                        f'{arm["params"]:,} |')
        for role in ('steps', 'steps_train'):
            d = point['diffs'].get(role)
            if d is not None:
                t, s = _tests(d)
                diffs.append(f'| {what} | {"training" if role.endswith("_train") else "test"} top-1 | '
                             f'{_diff_cell(t)} | {format_p(t.p_adj)} | {format_p(s.p_adj)} | '
                             f'{_verdict_cell(d["outcome"], t.n)} |')
    if not found:
        return '\n'.join(rows) + '\n\nNo result of ours has been recorded yet.\n'
    lines = rows + ['', '| pair | endpoint | Steps ' + MINUS + ' residual (95% CI) | t-test adjusted p | sign-flip '
                    'adjusted p | verdict |', '|---|---|---|---|---|---|'] + diffs
    lines += ['', 'Ours: mean ± sd over seeds on the 1,000 test signals (the standard split; training top-1 on the '
              '4,000 training signals with the final weights). ' + ' '.join(_comparison_note(r) for r in found[:1])
              + ' Each pair is its own report, Holm-adjusted within it.']
    return '\n'.join(lines) + '\n'


# ------------------------------------------------------------------------------------------ docs/results.md summary

# (folder under docs/figures, what the summary calls it)
SUMMARY_COMPARISONS = (('analyses/replication', 'Depth (Fig. 1), pre-registered replication'),
                       ('analyses/pilot_8seeds', 'Depth (Fig. 1), 8-seed pilot'),
                       ('analyses/pilot', 'Depth (Fig. 1), 3-seed pilot'),
                       ('analyses/main_job', 'Main job (`make run`): 1-D ResNets on MNIST-1D, 8 epochs'),
                       ('mnist1d/resnet', 'MNIST-1D, 1-D ResNet-18 layout, 100 epochs'),
                       ('mnist1d/vit', 'MNIST-1D, DeiT-like over 1-D patches, 100 epochs'),
                       ('analyses/depth_quick', 'Depth (Fig. 1), `stepsnet compare depth` (10 epochs)'))


def _evidence(r: Mapping[str, Any]) -> str:
    """Confirmatory where the results carry the protocol they were registered under, else exploratory."""
    protocol = r.get('protocol')
    return f'confirmatory (pre-registered at {protocol["commit"][:12]})' if protocol else 'exploratory'


def _summary_rows_of(folder: str, r: Mapping[str, Any]) -> List[Tuple[str, Mapping[str, Any]]]:
    """The differences of a comparison the summary shows, ``(role, difference)``: a pre-registered one's primary
    differences; of the pilots and the main job the validation differences (the 8-seed pilot's training ones too,
    the 3-seed pilot's equal-blocks arm only)."""
    out = []
    for p in r['points']:
        for role, d in p['diffs'].items():
            if r.get('protocol'):
                keep = d.get('family') == 'primary'
            else:
                keep = not ((role.endswith('_train') and folder != 'analyses/pilot_8seeds') or
                            (folder == 'analyses/pilot' and role != 'steps_blocks'))
            if keep:
                out.append((p['name'], role, d))
    return out


def render_summary() -> str:
    """docs/results.md's table: each headline comparison with its interval, both tests, the verdict, whether it was
    pre-registered, and where it is."""
    rows = []  # (name, evidence, test, sign-flip, outcome, digits, files)
    for folder, what in SUMMARY_COMPARISONS:
        path = FIG / folder / 'results.json'
        if not path.is_file():
            continue
        r = judged(path)
        for point, role, d in _summary_rows_of(folder, r):
            where = '' if len(r['points']) == 1 else f' at {point}'
            arm = {'steps_blocks': 'Steps, equal blocks', 'steps_compute': 'Steps, equal params/FLOPs'}.get(
                role.replace('_train', ''), 'Steps, equal params/FLOPs')
            cfg = r.get('config') or {}
            held_out = held_out_split(cfg.get('dataset'), cfg.get('val_split', 'val'))[0]
            metric = 'training top-1' if role.endswith('_train') else f'{held_out} top-1'
            t, s = _tests(d)
            rows.append((f'{what}: {arm} {MINUS} residual{where}, {metric} (points)', _evidence(r), t, s,
                         d['outcome'], 2, f'figures/{folder}/'))
    for c in sweep_tests().cells:
        d = c.differences.get(('steps', 'baseline'))
        if c.name.startswith(('depth', 'budget')) and not c.sanity and d is not None:
            rows.append((f'LM sweep, {c.name} ({c.max_iters} steps): Steps {MINUS} residual, val loss (nats/byte)',
                         'exploratory', d.test, d.sign_flip, d.outcome, 3, 'figures/lm/'))
    llama = sweep_tests(LLAMA_RUNS, LLAMA_PROTOCOL, LLAMA_RULE).cells
    not_run = sum(1 for c in llama if not c.differences.get(('steps', 'baseline')) or
                  not c.differences[('steps', 'baseline')].values)
    # committed before its runs; provisional while a planned cell has not run; its runs' commits, as docs/llama.md
    commits = len({row['commit'] for row in _read_csv(LLAMA_RUNS) if row.get('commit')})
    llama_evidence = ('pre-registered (`benchmarks/llama_compare.yaml`)'
                      + (f', provisional: {not_run} of {len(llama)} planned cells not run' if not_run else '')
                      + (f'; its runs trained at {commits} commits' if commits > 1 else ''))
    for c in llama:
        d = c.differences.get(('steps', 'baseline'))
        if d is not None and d.values:
            rows.append((f'Llama pair, {c.name} ({c.max_iters} steps): Steps {MINUS} LlamaForCausalLM, val loss '
                         '(nats/byte)', llama_evidence, d.test, d.sign_flip, d.outcome, 3, 'figures/lm/llama/'))
    lines = ['| comparison | evidence | seeds | mean ± sd | 95% CI | t-test p | adjusted | sign-flip p | adjusted | '
             'verdict | files |', '|---' * 11 + '|']
    for name, evidence, t, s, code, digits, where in rows:
        lines.append(f'| {name} | {evidence} | {t.n} | {_mean_sd(t, digits)} | {_ci(t, digits)} | '
                     + ' | '.join(_p_cells(t, s)) + f' | {_verdict_cell(code, t.n)} | [{where}]({where}) |')
    floors: Dict[int, Tuple[float, bool]] = {}  # untied seeds -> (the sign-flip floor, whether a row had a tie)
    for *_, s, _, _, _ in rows:
        if s.min_p is not None and s.min_p >= 0.05:
            n = s.n - s.ties
            floors[n] = (s.min_p, bool(s.ties) or floors.get(n, (0, False))[1])
    floor = ''.join(f' With {n} {"untied " if tied else ""}seeds the sign-flip p cannot go below {p:.2g}, so no '
                    f'exploratory row with {n} {"untied " if tied else ""}seeds can get a verdict.'
                    for n, (p, tied) in sorted(floors.items()))
    lines += ['', 'Each p is Holm-adjusted across the comparisons of its own report, for the t-test and the sign-flip '
              'test separately (the LM sweep: its distinct differences, a difference two cells share counted once, '
              'the exploratory best-rate comparison included). An exploratory row is "ahead" / "behind" only where '
              'both adjusted p are below 0.05; a pre-registered one is decided by the test its protocol names.'
              + floor + ' For the LM a lower loss is better, so "behind" means a higher loss than the residual model.']
    return '\n'.join(lines) + '\n'


# ---------------------------------------------------------------------------------------------------- registry

BLOCKS: Dict[str, Tuple[str, Callable[[], str]]] = {
    'summary': ('docs/results.md', render_summary),
    'pilot-8seeds': ('docs/analyses.md', lambda: render_comparison(ANALYSES / 'pilot_8seeds' / 'results.json')),
    'pilot': ('docs/analyses.md', lambda: render_comparison(ANALYSES / 'pilot' / 'results.json')),
    'main-job': ('docs/mnist1d.md', lambda: render_comparison(ANALYSES / 'main_job' / 'results.json')),
    'depth-quick': ('docs/analyses.md', lambda: render_comparison(ANALYSES / 'depth_quick' / 'results.json')),
    'shortcut-init': ('docs/analyses.md', render_shortcut_init),
    'mask': ('docs/analyses.md', render_mask),
    'drop-step': ('docs/analyses.md', render_drop_step),
    'shortcut-trained': ('docs/analyses.md', render_shortcut_trained),
    'depth-benchmark': ('docs/analyses.md', render_depth_benchmark),
    'lm-sweep': ('docs/language-modelling.md', render_lm_sweep),
    'llama-compare': ('docs/llama.md', render_llama_compare),
    'dry-runs': ('docs/full-scale.md', render_dry_runs),
    'mnist1d': ('docs/mnist1d.md', render_mnist1d),
    'replication': ('docs/analyses.md', lambda: render_comparison(ANALYSES / 'replication' / 'results.json')),
}


def markers(name: str) -> Tuple[str, str]:
    return docblocks.markers(f'results:{name}')


def render_text(text: str, name: str, table: str) -> str:
    """``text`` with the block ``name`` replaced by ``table``."""
    return docblocks.replace_block(text, table, *markers(name))


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
        docblocks.write_block(ROOT / doc, render(), *markers(name))


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
