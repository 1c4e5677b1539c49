"""The tables of the comparisons (``stepsnet compare``): one comparison's ``results.json`` as a table, and the
MNIST-1D pairs beside the published baselines.

A comparison's tests are those of :func:`stepsnet.compare.judge`: read from its ``results.json``, or computed by it
from the stored per-seed values where the file was written before the sign-flip test.
"""
from __future__ import annotations

import copy
import pathlib
from typing import Any, Dict, List, Mapping, Tuple, Union

from stepsnet.compare.convergence import convergence_lines
from stepsnet.compare.report import judge
from stepsnet.compare.results_docs.cells import (
    MINUS,
    diff_cell,
    figures_dir,
    floor_note,
    mean_std,
    read_json,
    verdict_cell,
)
from stepsnet.stats import PairedTest, SignFlipTest, format_p

__all__ = ['judged', 'tests_of', 'arm_values', 'comparison_note', 'render_comparison', 'MNIST1D_PUBLISHED',
           'MNIST1D_PAIRS', 'render_mnist1d']

PathLike = Union[str, pathlib.Path]
# what the tables call each arm of a comparison
ARM_NAMES = {'steps': 'Steps, equal params/FLOPs', 'steps_compute': 'Steps, equal params/FLOPs',
             'steps_blocks': 'Steps, equal blocks'}


def _comparison_differences(r: Mapping[str, Any]) -> List[Mapping[str, Any]]:
    return [d for p in r['points'] for d in p['diffs'].values()] + list((r.get('trend') or {}).values())


def judged(path: PathLike) -> Dict[str, Any]:
    """A comparison's results with the statistics of :func:`stepsnet.compare.judge`: as stored, where every
    difference carries its ``sign_flip`` (the file was written by judge), else judged again on a copy from the
    stored per-seed values (a file written before the sign-flip test; the file itself is left as it is).

    Raises ``FileNotFoundError`` naming ``path`` where it is missing."""
    r = read_json(path)
    if all('sign_flip' in d for d in _comparison_differences(r)):
        return r
    return judge(copy.deepcopy(r))


def tests_of(d: Mapping[str, Any]) -> Tuple[PairedTest, SignFlipTest]:
    """The two tests of a judged difference (its t-test fields at the top level, the sign-flip test under
    ``sign_flip``)."""
    return PairedTest.from_dict(d), SignFlipTest.from_dict(d['sign_flip'])


def arm_values(arm: Mapping[str, Any]) -> List[float]:
    """An arm's metric, one value per seed."""
    return list(arm['per_seed'].values())


def _seeds_text(r: Mapping[str, Any]) -> str:
    seeds = r['seeds']
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[0] + len(seeds))):
        return f'seeds {seeds[0]}-{seeds[-1]}'
    return 'seeds ' + ', '.join(str(s) for s in seeds)


def comparison_note(r: Mapping[str, Any]) -> str:
    """How a judged comparison was tested, from its own ``statistics``."""
    st = r['statistics']
    families = st['families']
    where = (f'across the {families["report"]} comparisons of the report' if list(families) == ['report'] else
             'within each family: ' + ', '.join(f'{k} ({v} differences)' for k, v in families.items()))
    flips = [SignFlipTest.from_dict(d['sign_flip']) for d in _comparison_differences(r)]
    return (f'Differences are paired by seed ({_seeds_text(r)}); in brackets the 95% interval of the mean difference '
            '(t distribution). Adjusted p: the paired t-test and the exact sign-flip test, each Holm-adjusted '
            f'{where}. A verdict in bold needs {st["decided_by"]} at adjusted p < {st["alpha"]:g}; every other '
            'difference is not distinguishable from zero with these seeds.' + floor_note(flips, float(st['alpha'])))


def render_comparison(path: PathLike) -> str:
    """One row per depth: the residual trunk, each Steps arm, the paired differences with interval, both adjusted p
    and the verdict of the comparison's own results (``path``: its ``results.json``)."""
    r = judged(path)
    roles = [role for role in r['points'][0]['arms'] if role != 'baseline']
    head = '| residual blocks (layers) | residual |'
    rule = '|---|---|'
    for role in roles:
        head += (f' {ARM_NAMES.get(role, role)} (blocks) | {MINUS} residual (95% CI) | t-test adjusted p | '
                 'sign-flip adjusted p | verdict |')
        rule += '---|---|---|---|---|'
    lines = [head, rule]
    for p in r['points']:
        base = p['arms']['baseline']
        row = f'| {base["blocks"]} ({base["layers"]}) | {mean_std(arm_values(base))} |'
        for role in roles:
            a, d = p['arms'][role], p['diffs'][role]
            t, s = tests_of(d)
            row += (f' {mean_std(arm_values(a))} ({a["blocks"]}) | {diff_cell(t)} | {format_p(t.p_adj)} | '
                    f'{format_p(s.p_adj)} | {verdict_cell(d["outcome"], t.n)} |')
        lines.append(row)
    train = [(p, role) for p in r['points'] for role in roles if role + '_train' in p['diffs']]
    if train:
        lines += ['', f'On the training images (no augmentation), {MINUS} residual:', '',
                  '| residual blocks | arm | residual | Steps | difference (95% CI) | t-test adjusted p | sign-flip '
                  'adjusted p | verdict |', '|---|---|---|---|---|---|---|---|']
        for p, role in train:
            d = p['diffs'][role + '_train']
            t, s = tests_of(d)
            base, arm = p['arms']['baseline'], p['arms'][role]
            lines.append(f'| {base["blocks"]} | {ARM_NAMES.get(role, role)} | '
                         f'{mean_std(base["train_stats"]["values"])} | '
                         f'{mean_std(arm["train_stats"]["values"])} | {diff_cell(t)} | {format_p(t.p_adj)} | '
                         f'{format_p(s.p_adj)} | {verdict_cell(d["outcome"], t.n)} |')
    trend = list((r.get('trend') or {}).items())
    if trend:
        lines.append('')
        for role, d in trend:
            t, s = tests_of(d)
            lines.append(f'Change of the gap with depth ({ARM_NAMES.get(role, role)}: the difference at '
                         f'{d["deep"]} minus the difference at {d["shallow"]}, per seed): {diff_cell(t)}, adjusted p '
                         f'{format_p(t.p_adj)} (t-test) / {format_p(s.p_adj)} (sign-flip), '
                         f'{verdict_cell(d["outcome"], t.n)}.')
    if r.get('convergence'):  # the report's own section: each arm against the same arm trained twice as long
        lines += ['', *convergence_lines(r['convergence'], 2, 'training top-1 (no augmentation)')]
    lines += ['', comparison_note(r)]
    return '\n'.join(lines) + '\n'


# ---------------------------------------------------------------------------------------------------- MNIST-1D

# Test accuracy (%) on the standard split, from Greydanus & Kobak (arXiv:2011.14439, Table 1 and the README of
# github.com/greydanus/mnist1d); their models, not ours
MNIST1D_PUBLISHED = (('logistic regression', 32), ('MLP', 68), ('CNN', 94), ('GRU', 91), ('human expert', 96))
# (folder under docs/figures/mnist1d, what the table calls the pair)
MNIST1D_PAIRS = (('resnet', '1-D ResNet'), ('vit', 'DeiT-like over 1-D patches'))


def render_mnist1d(root: PathLike) -> str:
    """Our residual models and their Steps twins on the standard MNIST-1D split (one comparison result per pair,
    ``docs/figures/mnist1d/<pair>/results.json`` of the repository at ``root``; a pair not recorded yet is left out)
    beside the authors' published baselines, then each pair's paired difference with both tests."""
    rows = ['| model | by | test top-1 (%) | training top-1 (%) | parameters |', '|---|---|---|---|---|']
    rows += [f'| {name} | Greydanus & Kobak | {acc} | | |' for name, acc in MNIST1D_PUBLISHED]
    diffs, found = [], []
    for key, what in MNIST1D_PAIRS:
        path = figures_dir(root) / 'mnist1d' / key / 'results.json'
        if not path.is_file():
            continue
        r = judged(path)
        found.append(r)
        point = r['points'][0]
        for role in ('baseline', 'steps'):
            arm = point['arms'][role]
            train = arm['train_stats']
            train_cell = mean_std(train['values']) if train.get('values') else ''
            rows.append(f'| `{arm["overrides"]["model"]}` ({what}{", Steps twin" if role == "steps" else ""}) | '
                        f'this project, {len(arm["per_seed"])} seeds | {mean_std(arm_values(arm))} | {train_cell} | '
                        f'{arm["params"]:,} |')
        for role in ('steps', 'steps_train'):
            d = point['diffs'].get(role)
            if d is not None:
                t, s = tests_of(d)
                diffs.append(f'| {what} | {"training" if role.endswith("_train") else "test"} top-1 | '
                             f'{diff_cell(t)} | {format_p(t.p_adj)} | {format_p(s.p_adj)} | '
                             f'{verdict_cell(d["outcome"], t.n)} |')
    if not found:
        return '\n'.join(rows) + '\n\nNo result of ours has been recorded yet.\n'
    lines = rows + ['', '| pair | endpoint | Steps ' + MINUS + ' residual (95% CI) | t-test adjusted p | sign-flip '
                    'adjusted p | verdict |', '|---|---|---|---|---|---|'] + diffs
    lines += ['', 'Ours: mean ± sd over seeds on the 1,000 test signals (the standard split; training top-1 on the '
              '4,000 training signals with the final weights). ' + ' '.join(comparison_note(r) for r in found[:1])
              + ' Each pair is its own report, Holm-adjusted within it.']
    return '\n'.join(lines) + '\n'
