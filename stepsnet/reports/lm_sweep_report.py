"""The LM sweep's own report, from its per-run rows: ``sweep.md``, ``sweep.csv``, ``sweep.json`` and ``sweep.png``.

The sweep (``benchmarks/lm_sweep.yaml``, or the Llama pair's ``benchmarks/llama_compare.yaml``) is planned and
trained by :mod:`stepsnet.compare.lm_sweep`; every finished run gives one row (the columns of :data:`CSV_KEYS`, and
the machine it ran on), keyed by its :class:`Run`. This module turns those rows into the report, with every number
of its tests from :func:`stepsnet.reports.lm_sweep.analyse` (the same tests as the docs' tables):

* :func:`report_markdown`: per cell each model's loss, mean ± std over seeds, the paired differences to the
  baseline, the models, then every difference with both tests and its verdict, and the machine;
* :func:`write_csv` / :func:`read_csv`: one row per run, so that the report can be written again from the CSV
  alone (``benchmarks/lm_sweep.py --from-csv``);
* :func:`summary`: the differences with both tests as plain JSON;
* :func:`plot`: each cell's paired differences to the baseline, through :mod:`stepsnet.utils.figures`;
* :func:`write_files`: all four into a folder.

Like every module of :mod:`stepsnet.reports` it computes from stored numbers and imports no torch; writing the files
goes through the atomic writers of :mod:`stepsnet.utils.checkpoint`.

Example::

    runs = planned_runs(sweep)                       # stepsnet.compare.lm_sweep
    rows = read_csv('docs/figures/lm/sweep.csv', runs)
    text = report_markdown(analyse_rows(sweep, rows), len(runs), rows)
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from stepsnet import stats
from stepsnet.reports import lm_sweep as tests
from stepsnet.utils.checkpoint import atomic_write_text

__all__ = ['Run', 'Rows', 'CSV_KEYS', 'TESTS_HEAD', 'read_csv', 'csv_text', 'write_csv', 'analyse_rows',
           'report_markdown', 'summary', 'plot', 'write_files']


@dataclass(frozen=True)
class Run:
    """One training run: a model of the sweep at a step count, learning rate and seed."""
    model_key: str
    max_iters: int
    lr: float
    seed: int

    @property
    def name(self) -> str:
        """The run's folder under ``OUT/runs`` and its ``run`` column: ``<model>-i<iters>-lr<lr>/seed<n>``."""
        return os.path.join(f'{self.model_key}-i{self.max_iters}-lr{self.lr:g}', f'seed{self.seed}')


# a finished run -> its row (the columns of CSV_KEYS, and ``machine`` where the run recorded it)
Rows = Mapping[Run, Mapping[str, Any]]

CSV_KEYS = ['run', 'model_key', 'model', 'seed', 'max_iters', 'lr', 'params', 'plan', 'blocks', 'iters',
            'tokens_seen', 'val_loss', 'val_bpb', 'train_time_s', 'threads', 'torch', 'commit']
_NUMERIC = {'seed': int, 'max_iters': int, 'lr': float, 'params': int, 'blocks': int, 'iters': int,
            'tokens_seen': int, 'val_loss': float, 'val_bpb': float, 'train_time_s': float, 'threads': int}
TESTS_HEAD = ('| cell | lr | difference | mean ± sd | 95% CI | n | t-test p | adjusted | sign-flip p | adjusted | '
              'same sign | verdict |')


# ----------------------------------------------------------------------------------------------------------------
# The per-run rows: CSV in and out


def _typed(row: Mapping[str, str], path: str) -> Dict[str, Any]:
    """A CSV row with its numeric columns as numbers (an empty cell stays empty)."""
    out = {}
    for k, v in row.items():
        if k in _NUMERIC and v not in ('', None):
            try:
                v = _NUMERIC[k](v)
            except ValueError:
                raise ValueError(f'{path}: run {row.get("run")!r} has {k}={v!r}, not a number') from None
        out[k] = v
    return out


def read_csv(path: str, runs: Sequence[Run]) -> Dict[Run, Dict[str, Any]]:
    """The per-run rows of an earlier report's ``sweep.csv``, for the planned ``runs`` it has (other rows are left
    out). The CSV has no machine column: where the ``sweep.json`` written beside it names one machine for every run,
    each row gets it."""
    by_name = {run.name: run for run in runs}
    found = {}
    with open(path, newline='', encoding='utf-8') as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or 'run' not in reader.fieldnames:
            raise ValueError(f'{path} is not a sweep CSV: it has no "run" column (expected {", ".join(CSV_KEYS)})')
        for row in reader:
            row = _typed(row, path)
            name = row['run'].replace('/', os.sep)
            if name in by_name:
                found[by_name[name]] = row
    side = os.path.join(os.path.dirname(path), 'sweep.json')
    if os.path.isfile(side):
        with open(side, encoding='utf-8') as f:
            saved = json.load(f)
        if len(saved.get('machines') or []) == 1 and not saved.get('runs_without_machine'):
            for row in found.values():
                row['machine'] = saved['machines'][0]
    return found


def csv_text(rows: Rows) -> str:
    """The rows as ``sweep.csv``: the columns of :data:`CSV_KEYS`, one row per run, in the order of the run names."""
    buf = io.StringIO(newline='')
    w = csv.DictWriter(buf, fieldnames=CSV_KEYS, extrasaction='ignore')
    w.writeheader()
    for run in sorted(rows, key=lambda r: r.name):
        w.writerow(rows[run])
    return buf.getvalue()


def write_csv(rows: Rows, path: str) -> None:
    """Write :func:`csv_text` to ``path`` (through a temporary file and a rename)."""
    atomic_write_text(path, csv_text(rows))


# ----------------------------------------------------------------------------------------------------------------
# The report


def analyse_rows(sweep: Mapping[str, Any], rows: Rows) -> tests.Sweep:
    """The sweep's cells, differences and tests (:func:`stepsnet.reports.lm_sweep.analyse`) from the rows of the
    finished runs; ``sweep`` is the sweep file as :func:`stepsnet.compare.lm_sweep.load_sweep` reads it (its
    ``config_lr``, and its ``rule`` where one is set)."""
    return tests.analyse(sweep, tests.losses_from_rows(rows.values()), sweep['config_lr'], sweep.get('rule'))


def _fmt(mean: Optional[float], std: Optional[float], n: int, digits: int = 4, sign: bool = False) -> str:
    if mean is None or math.isnan(mean):
        return 'pending'
    s = f'{mean:+.{digits}f}' if sign else f'{mean:.{digits}f}'
    return s + (f' ± {std:.{digits}f}' if n > 1 and std is not None else '') + f' (n={n})'


def _losses(losses: Mapping[int, float]) -> str:
    values = list(losses.values())
    return _fmt(*stats.mean_sd(values))


def _loss_cell(cell: tests.Cell, role: str) -> str:
    return _losses(cell.losses[role]) if role in cell.roles else '—'


def _diff_cell(cell: tests.Cell, pair: Tuple[str, str]) -> str:
    """A paired difference of the cell, mean ± std over seeds, or '—' where the cell lacks one of the two roles."""
    d = cell.differences.get(pair)
    if d is None:
        return '—'
    return _fmt(d.test.mean, d.test.std, d.test.n, digits=6 if cell.sanity else 4, sign=True)


def _machines(rows: Rows) -> List[Dict[str, Any]]:
    """Every distinct machine the runs recorded."""
    return list({json.dumps(r['machine'], sort_keys=True): r['machine'] for r in rows.values()
                 if r.get('machine')}.values())


def _tests_markdown(sw: tests.Sweep, rows: Rows) -> List[str]:
    """The table of every difference with both tests and its verdict, the sentence saying how, and the machine."""
    lines = ['', '**Tests.** ' + tests.method_note(sw), '', TESTS_HEAD, '|' + '---|' * (TESTS_HEAD.count('|') - 1)]
    for _, owner, d in sw.shown():
        digits = 6 if d.family == tests.SANITY else 4
        t, s = d.test, d.sign_flip
        mean = '-' if t.mean is None else f'{t.mean:+.{digits}f}' + ('' if t.std is None else f' ± {t.std:.{digits}f}')
        ci = '-' if t.ci_low is None else f'{t.ci_low:+.{digits}f} to {t.ci_high:+.{digits}f}'
        if isinstance(owner, tests.BestRate):
            cell, lr = owner.cell, f'own best: Steps {owner.rates["steps"]:g}, baseline {owner.rates["baseline"]:g}'
            what = f'{d.what}, each at its own best rate (exploratory)'
        else:
            cell, lr, what = owner.name, f'{owner.lr:g}', d.what
            others = sw.also_in(owner.label, d)
            if others:
                what += f' (one test with {"; ".join(others)})'
        cells = [cell, lr, what, mean, ci, str(t.n), stats.format_p(t.p), stats.format_p(t.p_adj),
                 stats.format_p(s.p), stats.format_p(s.p_adj), f'{t.same_sign}/{t.n}', d.verdict]
        lines.append('| ' + ' | '.join(cells) + ' |')
    machines = _machines(rows)
    missing = sum(1 for r in rows.values() if not r.get('machine')) if machines else 0
    return lines + ['', stats.machine_sentence(machines, missing)]


def report_markdown(sw: tests.Sweep, planned: int, rows: Optional[Rows] = None) -> str:
    """``sweep.md``: how many of the ``planned`` runs have finished (``rows``, one per finished run); per cell
    each model's loss and the paired differences; each model best at its own rate, where a cell has a grid; the
    models (plan, blocks, parameters, from ``rows``); then every difference with both tests
    (:func:`stepsnet.reports.lm_sweep.method_note`) and the machine."""
    rows = rows or {}
    lines = [
        '# LM sweep: residual LM against its Steps twin',
        '',
        f'Runs finished: {len(rows)} of {planned} planned. Validation loss in nats per byte (final evaluation, 512 '
        'fixed windows); mean ± std over seeds (n = seeds finished). Differences are paired by seed (same '
        'initialisation seed and batches): negative means lower loss than the baseline.',
        '',
        '| cell | lr | steps | baseline | Steps | control | Steps − baseline | control − baseline | Steps − control |',
        '|---|---|---|---|---|---|---|---|---|',
    ]
    for c in sw.cells:
        lines.append(f'| {c.name} | {c.lr:g} | {c.max_iters} | {_loss_cell(c, "baseline")} | '
                     f'{_loss_cell(c, "steps")} | {_loss_cell(c, "control")} | {_diff_cell(c, ("steps", "baseline"))} '
                     f'| {_diff_cell(c, ("control", "baseline"))} | {_diff_cell(c, ("steps", "control"))} |')
    for b in sw.best_rates:
        parts = [f'{role} best at lr {lr:g}: {_losses(b.losses[role])}' for role, lr in b.rates.items()]
        t = b.difference.test
        parts.append(f'steps at its best − baseline at its best, paired by seed: {_fmt(t.mean, t.std, t.n, sign=True)}')
        lines += ['', f'**{b.cell}**, each model at its own best rate (chosen after seeing the grid: exploratory): '
                  + '; '.join(parts) + '.']
    lines += ['', '| model | plan | blocks | params |', '|---|---|---|---|']
    seen = set()
    for c in sw.cells:
        for model_key in c.roles.values():
            row = next((r for run, r in rows.items() if run.model_key == model_key), None)
            if model_key in seen or row is None:
                continue
            seen.add(model_key)
            lines.append(f'| {model_key} | {row["plan"]} | {row["blocks"]} | {int(row["params"]):,} |')
    lines += _tests_markdown(sw, rows)
    return '\n'.join(lines) + '\n'


def summary(sw: tests.Sweep, planned: int, rows: Rows) -> Dict[str, Any]:
    """``sweep.json``: every paired difference with both tests, as the report shows it
    (:meth:`stepsnet.reports.lm_sweep.Sweep.rows`), how they were tested, and the machines of the runs."""
    return dict(
        planned=planned, finished=len(rows), metric='val loss (nats/byte)', higher_is_better=False,
        statistics=dict(
            test='two-sided paired t-test over seeds (95% confidence interval of the mean from the t distribution) and '
                 f'the exact two-sided paired sign-flip test (ties |d| <= {stats.TIE_TOLERANCE:g} left out)',
            correction=f'Holm within the family, for each test: {sw.tested} distinct differences (a difference two '
                       'cells share counted once; the comparison at each model\'s own best rate included, '
                       'exploratory; the sanity cell outside)',
            decided_by=stats.RULES[tests.RULE], alpha=stats.ALPHA, differences=sw.tested),
        differences=sw.rows(), machines=_machines(rows),
        runs_without_machine=sum(1 for r in rows.values() if not r.get('machine')))


def plot(sw: tests.Sweep, path: str) -> None:
    """``sweep.png``: per cell the paired differences to the baseline (Steps, control), mean ± std over seeds and
    each seed's value, written through :func:`stepsnet.utils.figures.save_figure`."""
    from stepsnet.utils.figures import pyplot, save_figure

    plt = pyplot()
    colours = {'steps': 'tab:red', 'control': 'tab:green'}
    cells = [c for c in sw.cells if any(d.values for (_, second), d in c.differences.items() if second == 'baseline')]
    fig, ax = plt.subplots(figsize=(max(9.0, 1.1 * len(cells)), 4.8))
    labels = []
    for i, c in enumerate(cells):
        name = c.name.replace(' (', '\n(')  # 'budget 3000 (depth 4)' on two lines
        labels.append(name + (f'\nlr {c.lr:g}' if c.lr_varies else ''))
        for j, (role, colour) in enumerate(colours.items()):
            d = c.differences.get((role, 'baseline'))
            if d is None or not d.values:
                continue
            x = i + (j - 0.5) * 0.25
            ax.errorbar([x], [d.test.mean], yerr=[d.test.std or 0], fmt='o', color=colour, capsize=4, ms=7,
                        label=f'{role} − baseline')
            ax.scatter([x] * len(d.values), d.values, color=colour, s=12, alpha=0.5, marker='x')
    handles, names = ax.get_legend_handles_labels()
    unique = dict(zip(names, handles))
    ax.legend(unique.values(), unique.keys())
    ax.axhline(0, color='k', lw=0.8)
    ax.set_xticks(range(len(cells)))
    ax.set_xticklabels(labels, fontsize=8)
    ax.set_ylabel('validation loss difference (nats/byte)')
    ax.set_title('paired difference to the residual baseline: mean ± std over seeds (x: each seed)')
    ax.grid(alpha=0.3, axis='y')
    fig.tight_layout()
    save_figure(fig, path)


def write_files(sweep: Mapping[str, Any], out: str, planned: int, rows: Rows) -> str:
    """Write ``sweep.csv``, ``sweep.md``, ``sweep.json`` and (with at least one finished run) ``sweep.png`` into
    ``out`` from the rows of the finished runs, ``planned`` being the number of runs the sweep plans; returns the
    markdown."""
    sw = analyse_rows(sweep, rows)
    os.makedirs(out, exist_ok=True)
    write_csv(rows, os.path.join(out, 'sweep.csv'))
    text = report_markdown(sw, planned, rows)
    atomic_write_text(os.path.join(out, 'sweep.md'), text)
    atomic_write_text(os.path.join(out, 'sweep.json'), json.dumps(summary(sw, planned, rows), indent=2))
    if rows:
        plot(sw, os.path.join(out, 'sweep.png'))
    return text
