"""The summary of docs/results.md: every headline comparison of the repository, one row per difference.

The rows come from the comparisons' ``results.json`` (tested by :func:`stepsnet.compare.judge`) and from the LM
sweep and the Llama pair (tested by :mod:`stepsnet.reports.lm_sweep`): this module only chooses and formats them.
"""
from __future__ import annotations

import pathlib
from typing import Any, Dict, List, Mapping, Tuple, Union

from stepsnet.compare.results_docs.cells import (
    MINUS,
    ci_cell,
    diff_mean_sd,
    figures_dir,
    p_cells,
    read_csv,
    verdict_cell,
)
from stepsnet.compare.results_docs.comparisons import ARM_NAMES, judged, tests_of
from stepsnet.compare.results_docs.lm import LLAMA_RUNS, llama_tests, sweep_tests
from stepsnet.data.images import held_out_split

__all__ = ['SUMMARY_COMPARISONS', 'render_summary']

PathLike = Union[str, pathlib.Path]

# (folder under docs/figures, what the summary calls it); a folder without a results.json is left out
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


def _summary_rows_of(folder: str, r: Mapping[str, Any]) -> List[Tuple[str, str, Mapping[str, Any]]]:
    """The differences of a comparison the summary shows, ``(point, role, difference)``: a pre-registered one's
    primary differences; of the pilots and the main job the validation differences (the 8-seed pilot's training ones
    too, the 3-seed pilot's equal-blocks arm only)."""
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


def render_summary(root: PathLike) -> str:
    """docs/results.md's table: each headline comparison with its interval, both tests, the verdict, whether it was
    pre-registered, and where it is (the comparisons of :data:`SUMMARY_COMPARISONS` under ``docs/figures`` of the
    repository at ``root``, the LM sweep and the Llama pair)."""
    rows = []  # (name, evidence, test, sign-flip, outcome, digits, files)
    for folder, what in SUMMARY_COMPARISONS:
        path = figures_dir(root) / folder / 'results.json'
        if not path.is_file():
            continue
        r = judged(path)
        for point, role, d in _summary_rows_of(folder, r):
            where = '' if len(r['points']) == 1 else f' at {point}'
            arm = ARM_NAMES.get(role.replace('_train', ''), ARM_NAMES['steps'])
            cfg = r.get('config') or {}
            held_out = held_out_split(cfg.get('dataset'), cfg.get('val_split', 'val'))[0]
            metric = 'training top-1' if role.endswith('_train') else f'{held_out} top-1'
            t, s = tests_of(d)
            rows.append((f'{what}: {arm} {MINUS} residual{where}, {metric} (points)', _evidence(r), t, s,
                         d['outcome'], 2, f'figures/{folder}/'))
    for c in sweep_tests(root).cells:
        d = c.differences.get(('steps', 'baseline'))
        if c.name.startswith(('depth', 'budget')) and not c.sanity and d is not None:
            rows.append((f'LM sweep, {c.name} ({c.max_iters} steps): Steps {MINUS} residual, val loss (nats/byte)',
                         'exploratory', d.test, d.sign_flip, d.outcome, 3, 'figures/lm/'))
    llama = llama_tests(root).cells
    not_run = sum(1 for c in llama if not c.differences.get(('steps', 'baseline')) or
                  not c.differences[('steps', 'baseline')].values)
    # committed before its runs; provisional while a planned cell has not run; its runs' commits, as docs/llama.md
    commits = len({row['commit'] for row in read_csv(pathlib.Path(root) / LLAMA_RUNS) if row.get('commit')})
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
        lines.append(f'| {name} | {evidence} | {t.n} | {diff_mean_sd(t, digits)} | {ci_cell(t, digits)} | '
                     + ' | '.join(p_cells(t, s)) + f' | {verdict_cell(code, t.n)} | [{where}]({where}) |')
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
              + floor + ' For the LM a lower loss is better, so "behind" means a higher loss than the residual '
              'model.']
    return '\n'.join(lines) + '\n'
