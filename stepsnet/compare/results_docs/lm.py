"""The language-model tables: the LM sweep (docs/language-modelling.md) and the Llama pair (docs/llama.md).

Their tests are those of :mod:`stepsnet.reports.lm_sweep` (which the sweep's own report uses too), computed from a
sweep's CSV (one row per finished run) and its protocol (``benchmarks/lm_sweep.yaml`` or another file of that
format), so that the docs and the report cannot drift apart.
"""
from __future__ import annotations

import pathlib
from typing import List, Mapping, Optional, Union

import yaml

from stepsnet.compare.results_docs.cells import (
    MINUS,
    ci_cell,
    diff_mean_sd,
    existing,
    mean_std,
    p_cells,
    read_text,
    verdict_cell,
)
from stepsnet.config.lm import load_config as load_lm_config
from stepsnet.reports import lm_sweep as sweep_report

__all__ = ['SWEEP_CSV', 'SWEEP_PROTOCOL', 'LLAMA_RUNS', 'LLAMA_PROTOCOL', 'LLAMA_RULE', 'ROLES', 'sweep_tests',
           'llama_tests', 'sweep_row', 'render_lm_sweep', 'render_llama_compare']

PathLike = Union[str, pathlib.Path]

# relative to the repository root
SWEEP_CSV = 'docs/figures/lm/sweep.csv'
SWEEP_PROTOCOL = 'benchmarks/lm_sweep.yaml'
LLAMA_RUNS = 'docs/figures/lm/llama/runs.csv'
LLAMA_PROTOCOL = 'benchmarks/llama_compare.yaml'
# the test the Llama protocol named before any of its runs ("a two-sided paired t-test, Holm-corrected over the cells
# that ran"): its verdicts keep it; the sign-flip test is shown beside it
LLAMA_RULE = 't'
ROLES = {'baseline': 'residual', 'steps': 'Steps', 'control': 'control'}  # the docs call the baseline "residual"


def sweep_tests(root: PathLike, results: PathLike = SWEEP_CSV, protocol: PathLike = SWEEP_PROTOCOL,
                rule: Optional[str] = None) -> sweep_report.Sweep:
    """An LM sweep's cells, differences and tests (:func:`stepsnet.reports.lm_sweep.analyse`, as in the sweep's own
    report), from its CSV ``results`` (one row per finished run; a missing file is a sweep that has not run) and its
    ``protocol``, both relative to the repository ``root`` unless absolute. The protocol's ``config`` (the recipe
    that sets the default learning rate) is read from ``root`` too.

    Raises ``FileNotFoundError`` naming the protocol or its config where one is missing."""
    root = pathlib.Path(root)
    spec = yaml.safe_load(read_text(root / protocol))
    config_lr = float(load_lm_config(str(existing(root / spec['config']))).lr)
    return sweep_report.analyse(spec, sweep_report.read_losses(str(root / results)), config_lr, rule)


def llama_tests(root: PathLike) -> sweep_report.Sweep:
    """The Llama pair's cells and tests (``benchmarks/llama_compare.yaml``, decided by :data:`LLAMA_RULE`)."""
    return sweep_tests(root, LLAMA_RUNS, LLAMA_PROTOCOL, LLAMA_RULE)


def _what(d: sweep_report.Difference) -> str:
    return f'{ROLES.get(d.first, d.first)} {MINUS} {ROLES.get(d.second, d.second)}'


def _sweep_verdict(d: sweep_report.Difference) -> str:
    if d.family == sweep_report.SANITY:
        return d.verdict
    return verdict_cell(d.outcome, d.test.n)


def sweep_row(d: sweep_report.Difference, digits: int) -> List[str]:
    """mean ± sd, 95% CI, the t-test's p and adjusted p, the sign-flip test's, the verdict."""
    return [diff_mean_sd(d.test, digits), ci_cell(d.test, digits), *p_cells(d.test, d.sign_flip), _sweep_verdict(d)]


def render_lm_sweep(root: PathLike) -> str:
    """The LM sweep: each cell's losses, then every paired difference with both tests and its verdict."""
    sw = sweep_tests(root)
    lines = ['| cell | steps | lr | residual | Steps | control |', '|---|---|---|---|---|---|']
    for c in sw.cells:
        name = 'sanity (`num_steps: 1`)' if c.sanity else c.name
        losses = [mean_std(list(c.losses[role].values()), 4) if role in c.roles else '' for role in ROLES]
        lines.append(f'| {name} | {c.max_iters} | {c.lr:g} | ' + ' | '.join(losses) + ' |')
    for b in sw.best_rates:
        lines.append(f'| {b.label} | {b.max_iters} | residual {b.rates["baseline"]:g}, Steps {b.rates["steps"]:g} | '
                     f'{mean_std(list(b.losses["baseline"].values()), 4)} | '
                     f'{mean_std(list(b.losses["steps"].values()), 4)} | |')
    lines += ['', '| cell | lr | difference | mean ± sd | 95% CI | t-test p | adjusted | sign-flip p | adjusted | '
              'verdict |', '|---|---|---|---|---|---|---|---|---|---|']
    for place, owner, d in sw.shown():
        if isinstance(owner, sweep_report.BestRate):
            cell, lr = owner.cell, 'each its own best'
            what = f'{_what(d)} (exploratory)'
        else:
            cell, lr, what = ('sanity' if owner.sanity else owner.name), f'{owner.lr:g}', _what(d)
            others = sw.also_in(place, d)
            if others:
                what += f' (one test with {"; ".join(others)})'
        lines.append(f'| {cell} | {lr} | {what} | ' + ' | '.join(sweep_row(d, 6 if d.family == 'sanity' else 3))
                     + ' |')
    lines += ['', 'Validation loss in nats per byte, mean ± std over seeds; differences paired by seed, positive = the '
              'first model has the higher (worse) loss, so "behind" means a higher loss than the second model. '
              + sweep_report.method_note(sw)]
    return '\n'.join(lines) + '\n'


def _seed_values(values: Mapping[int, float]) -> str:
    return ', '.join(f'{values[s]:.4f}' for s in sorted(values))


def render_llama_compare(root: PathLike) -> str:
    """The Llama pair's cells (benchmarks/llama_compare.yaml), each beside the GPT sweep's cell of the same name."""
    gpt_sweep = sweep_tests(root)
    gpt = {(c.name, c.max_iters): c for c in gpt_sweep.cells}
    llama = llama_tests(root)
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
                         f'{_seed_values(cell.losses["steps"])} | ' + ' | '.join(sweep_row(d, 3)) + ' |')
    provisional = (f' The Llama protocol plans {not_run} more {"cell" if not_run == 1 else "cells"}, not run yet: Holm '
                   'counts only the cells that ran, so the adjusted p above are provisional until every planned cell '
                   'has run.' if not_run else '')
    lines += ['', 'Validation loss in nats per byte per seed (seeds 0, 1, 2 in order); differences paired by seed, '
              'positive = the Steps model has the higher (worse) loss. The Llama rows are one family. '
              + sweep_report.method_note(llama) + provisional + ' The GPT-2-style rows are the LM sweep\'s, tested in '
              f'that sweep\'s family of {gpt_sweep.tested} differences (docs/language-modelling.md).']
    return '\n'.join(lines) + '\n'
