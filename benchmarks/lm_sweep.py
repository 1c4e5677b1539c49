"""The language-model sweep: residual LM against its Steps twin, cell by cell, seeds paired, resumable.

The cells, models and protocol are in ``benchmarks/lm_sweep.yaml``. The runs go through the comparison harness of
:mod:`stepsnet.compare` (its ``lm`` task, :func:`stepsnet.compare.train_runs`) into
``OUT/runs/<model>-i<iters>-lr<lr>/seed<n>``; a finished run leaves its ``results.json`` there and is never trained
again, an interrupted one resumes from its last checkpoint (every ``eval_interval`` steps). Runs that two cells
share (e.g. the depth-4 pair at 300 steps) train once. The paired differences and their tests come from
:mod:`stepsnet.reports.lm_sweep`, which the result tables of the docs (``scripts/render_results.py``) use as well:
both tests per difference, Holm across one family, a difference two cells share counted once.

Usage::

    python benchmarks/lm_sweep.py --jobs 2                  # run what is missing, then write the report
    python benchmarks/lm_sweep.py --report-only             # report what has finished so far
    python benchmarks/lm_sweep.py --list                    # the planned runs, in the order they would run
    python benchmarks/lm_sweep.py --from-csv docs/figures/lm/sweep.csv --out DIR   # the report again from a CSV

The report is ``OUT/sweep.csv`` (one row per run), ``OUT/sweep.md`` (per cell: each model's loss, mean +- std
over seeds, the paired differences to the baseline, then every difference's tests and verdict), ``OUT/sweep.json``
(the same differences with both tests) and ``OUT/sweep.png``.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import yaml

from stepsnet import stats
from stepsnet.compare import RunSpec, read_result, spread, train_runs
from stepsnet.reports import lm_sweep as report
from stepsnet.utils.checkpoint import atomic_write_text

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


@dataclass(frozen=True)
class Run:
    """One training run: a model of the sweep at a step count, learning rate and seed."""
    model_key: str
    max_iters: int
    lr: float
    seed: int

    @property
    def name(self) -> str:
        return os.path.join(f'{self.model_key}-i{self.max_iters}-lr{self.lr:g}', f'seed{self.seed}')


def load_sweep(path: str) -> Dict[str, Any]:
    """Read and check the sweep file; every cell gets ``seeds``, ``lrs`` and ``optional`` filled in, the sweep
    ``config_lr`` (the rate of its config).

    A cell without ``lr`` trains at the config's rate, so a run it shares with a learning-rate cell trains once.
    """
    from stepsnet.tasks.lm import load_config

    with open(path, encoding='utf-8') as f:
        sweep = yaml.safe_load(f)
    for key in ('config', 'seeds', 'models', 'cells'):
        if key not in sweep:
            raise ValueError(f'sweep file {path!r} lacks {key!r}')
    if not os.path.isabs(sweep['config']):
        sweep['config'] = os.path.join(ROOT, sweep['config'])
    config_lr = sweep['config_lr'] = float(load_config(sweep['config']).lr)
    for cell in sweep['cells']:
        for role, model_key in cell['roles'].items():
            if model_key not in sweep['models']:
                raise ValueError(f'cell {cell["name"]!r}: role {role!r} names unknown model {model_key!r}')
        if 'baseline' not in cell['roles']:
            raise ValueError(f'cell {cell["name"]!r} has no baseline role')
        cell.setdefault('seeds', sweep['seeds'])
        cell['lrs'] = report.cell_rates(cell, config_lr)
        cell['lr_varies'] = isinstance(cell.get('lr'), list)
        cell.setdefault('optional', False)
    return sweep


def planned_runs(sweep: Dict[str, Any], include_optional: bool = True) -> List[Run]:
    """Every run the cells need, once, in the order they run: the first seeds of the main cells come first."""
    first = int(sweep.get('first_seeds', len(sweep['seeds'])))
    keyed: Dict[Run, Tuple[int, int, int]] = {}
    for order, cell in enumerate(sweep['cells']):
        if cell['optional'] and not include_optional:
            continue
        for si, seed in enumerate(cell['seeds']):
            for lr in cell['lrs']:
                for model_key in cell['roles'].values():
                    run = Run(model_key, int(cell['max_iters']), lr, int(seed))
                    rank = (int(cell['optional']), int(si >= first), order)
                    keyed[run] = min(keyed.get(run, rank), rank)
    return sorted(keyed, key=lambda r: (keyed[r], r.seed))


def run_spec(run: Run, sweep: Dict[str, Any], out: str, config_path: str, data_dir: Optional[str],
             overrides: Dict[str, Any]) -> RunSpec:
    """The harness's description of one run: the sweep's model at the run's step count, rate and seed."""
    from stepsnet.tasks.lm import load_config

    spec = sweep['models'][run.model_key]
    fields: Dict[str, Any] = dict(
        model=spec['model'], model_kwargs=dict(spec.get('model_kwargs') or {}), max_iters=run.max_iters,
        seed=run.seed, out_dir=os.path.join(out, 'runs', run.name), resume='auto', progress=False,
        tensorboard=False, device='cpu', lr=run.lr)
    if data_dir:
        fields['data_dir'] = data_dir
    fields.update(overrides)
    return RunSpec(run.name, fields['out_dir'], load_config(config_path, **fields))


def _row(run: Run, sweep: Dict[str, Any], r: Dict[str, Any]) -> Dict[str, Any]:
    """One CSV row of a run from its result (:func:`stepsnet.compare.read_result`; rows written before are kept)."""
    if 'val_loss' in r:
        return r
    machine = r.get('machine') or {}
    return {'run': run.name, 'model_key': run.model_key, 'model': sweep['models'][run.model_key]['model'],
            'seed': run.seed, 'max_iters': run.max_iters, 'lr': run.lr, 'params': r['params'], 'plan': r['plan'],
            'blocks': r['blocks'], 'iters': r['steps'], 'tokens_seen': r['seen'], 'val_loss': r['metric'],
            'val_bpb': r.get('bpb'), 'train_time_s': r['train_time'], 'threads': machine.get('torch_threads'),
            'torch': machine.get('torch'), 'commit': r.get('commit', 'unknown'), 'machine': r.get('machine')}


def read_results(out: str, runs: Sequence[Run], sweep: Dict[str, Any]) -> Dict[Run, Dict[str, Any]]:
    found = {}
    for run in runs:
        r = read_result(os.path.join(out, 'runs', run.name))
        if r is not None:
            found[run] = _row(run, sweep, r)
    return found


CSV_KEYS = ['run', 'model_key', 'model', 'seed', 'max_iters', 'lr', 'params', 'plan', 'blocks', 'iters',
            'tokens_seen', 'val_loss', 'val_bpb', 'train_time_s', 'threads', 'torch', 'commit']
_NUMERIC = {'seed': int, 'max_iters': int, 'lr': float, 'params': int, 'blocks': int, 'iters': int,
            'tokens_seen': int, 'val_loss': float, 'val_bpb': float, 'train_time_s': float, 'threads': int}


def read_csv(path: str, runs: Sequence[Run]) -> Dict[Run, Dict[str, Any]]:
    """The per-run rows of an earlier report's ``sweep.csv``, for the planned runs it has."""
    by_name = {run.name: run for run in runs}
    found = {}
    with open(path, newline='', encoding='utf-8') as f:
        for row in csv.DictReader(f):
            row = {k: (_NUMERIC[k](v) if k in _NUMERIC and v != '' else v) for k, v in row.items()}
            name = row['run'].replace('/', os.sep)
            if name in by_name:
                found[by_name[name]] = row
    # the CSV has no machine column; the sweep.json written beside it has the machine when every run had one
    side = os.path.join(os.path.dirname(path), 'sweep.json')
    if os.path.isfile(side):
        with open(side, encoding='utf-8') as f:
            saved = json.load(f)
        if len(saved.get('machines') or []) == 1 and not saved.get('runs_without_machine'):
            for row in found.values():
                row['machine'] = saved['machines'][0]
    return found


def _mean_std(values: Sequence[float]) -> Tuple[float, float]:
    s = spread(values)
    return (float('nan') if s['mean'] is None else s['mean'], float('nan') if s['std'] is None else s['std'])


def _fmt(mean: Optional[float], std: Optional[float], n: int, digits: int = 4, sign: bool = False) -> str:
    if mean is None or math.isnan(mean):
        return 'pending'
    s = f'{mean:+.{digits}f}' if sign else f'{mean:.{digits}f}'
    return s + (f' ± {std:.{digits}f}' if n > 1 and std is not None else '') + f' (n={n})'


def analyse(sweep: Dict[str, Any], results: Dict[Run, Dict[str, Any]]) -> report.Sweep:
    """The sweep's cells, differences and tests (:func:`stepsnet.reports.lm_sweep.analyse`) from the finished runs."""
    losses: Dict[Tuple[str, int, float], Dict[int, float]] = {}
    for run, r in results.items():
        losses.setdefault((run.model_key, run.max_iters, run.lr), {})[run.seed] = float(r['val_loss'])
    return report.analyse(sweep, losses, sweep['config_lr'], sweep.get('rule'))


def _loss_cell(cell: report.Cell, role: str) -> str:
    if role not in cell.roles:
        return '—'
    losses = list(cell.losses[role].values())
    return _fmt(*_mean_std(losses), len(losses))


def _diff_cell(cell: report.Cell, pair: Tuple[str, str]) -> str:
    """A paired difference of the cell, mean ± std over seeds, or '—' where the cell lacks one of the two roles."""
    d = cell.differences.get(pair)
    if d is None:
        return '—'
    return _fmt(d.test.mean, d.test.std, d.test.n, digits=6 if cell.sanity else 4, sign=True)


TESTS_HEAD = ('| cell | lr | difference | mean ± sd | 95% CI | n | t-test p | adjusted | sign-flip p | adjusted | '
              'same sign | verdict |')


def _tests_markdown(sw: report.Sweep, results: Dict[Run, Dict[str, Any]]) -> List[str]:
    """The table of every difference with both tests and its verdict, the sentence saying how, and the machine."""
    lines = ['', '**Tests.** ' + report.method_note(sw), '', TESTS_HEAD, '|' + '---|' * (TESTS_HEAD.count('|') - 1)]
    for _, owner, d in sw.shown():
        digits = 6 if d.family == report.SANITY else 4
        t, s = d.test, d.sign_flip
        mean = '-' if t.mean is None else f'{t.mean:+.{digits}f}' + ('' if t.std is None else f' ± {t.std:.{digits}f}')
        ci = '-' if t.ci_low is None else f'{t.ci_low:+.{digits}f} to {t.ci_high:+.{digits}f}'
        if isinstance(owner, report.BestRate):
            cell, lr = owner.cell, f'own best: Steps {owner.rates["steps"]:g}, baseline {owner.rates["baseline"]:g}'
            what = f'{d.what}, each at its own best rate (exploratory)'
        else:
            cell, lr, what = owner.name, f'{owner.lr:g}', d.what
            others = [p for p in sw.places[d.key] if p != owner.label]
            if others:
                what += f' (one test with {"; ".join(others)})'
        cells = [cell, lr, what, mean, ci, str(t.n), stats.format_p(t.p), stats.format_p(t.p_adj),
                 stats.format_p(s.p), stats.format_p(s.p_adj), f'{t.same_sign}/{t.n}', d.verdict]
        lines.append('| ' + ' | '.join(cells) + ' |')
    machines = {json.dumps(r['machine'], sort_keys=True): r['machine'] for r in results.values() if r.get('machine')}
    missing = sum(1 for r in results.values() if not r.get('machine')) if machines else 0
    return lines + ['', stats.machine_sentence(list(machines.values()), missing)]


def report_markdown(sw: report.Sweep, planned: int, finished: int,
                    results: Optional[Dict[Run, Dict[str, Any]]] = None) -> str:
    lines = [
        '# LM sweep: residual LM against its Steps twin',
        '',
        f'Runs finished: {finished} of {planned} planned. Validation loss in nats per byte (final evaluation, 512 '
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
        parts = []
        for role, lr in b.rates.items():
            losses = list(b.losses[role].values())
            parts.append(f'{role} best at lr {lr:g}: {_fmt(*_mean_std(losses), len(losses))}')
        t = b.difference.test
        parts.append(f'steps at its best − baseline at its best, paired by seed: {_fmt(t.mean, t.std, t.n, sign=True)}')
        lines += ['', f'**{b.cell}**, each model at its own best rate (chosen after seeing the grid: exploratory): '
                  + '; '.join(parts) + '.']
    lines += ['', '| model | plan | blocks | params |', '|---|---|---|---|']
    seen = set()
    for c in sw.cells:
        for model_key in c.roles.values():
            row = next((r for run, r in (results or {}).items() if run.model_key == model_key), None)
            if model_key in seen or row is None:
                continue
            seen.add(model_key)
            lines.append(f'| {model_key} | {row["plan"]} | {row["blocks"]} | {int(row["params"]):,} |')
    lines += _tests_markdown(sw, results or {})
    return '\n'.join(lines) + '\n'


def write_csv(results: Dict[Run, Dict[str, Any]], path: str) -> None:
    tmp = path + '.tmp'
    with open(tmp, 'w', newline='', encoding='utf-8') as f:
        w = csv.DictWriter(f, fieldnames=CSV_KEYS, extrasaction='ignore')
        w.writeheader()
        for run in sorted(results, key=lambda r: r.name):
            w.writerow(results[run])
    os.replace(tmp, path)


def plot(sw: report.Sweep, path: str) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

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
                        label=f'{role} − baseline' if i == 0 or role not in ax.get_legend_handles_labels()[1]
                        else None)
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
    tmp = path + '.tmp.png'
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)


def write_report(sweep: Dict[str, Any], out: str, include_optional: bool = True,
                 results: Optional[Dict[Run, Dict[str, Any]]] = None) -> str:
    """Write ``sweep.csv``, ``sweep.md``, ``sweep.json`` (every paired difference with both tests, as the report
    shows it) and ``sweep.png`` from the finished runs in ``out`` (or from ``results``, e.g. the rows of an earlier
    ``sweep.csv``)."""
    runs = planned_runs(sweep, include_optional)
    if results is None:
        results = read_results(out, runs, sweep)
    sw = analyse(sweep, results)
    os.makedirs(out, exist_ok=True)
    write_csv(results, os.path.join(out, 'sweep.csv'))
    text = report_markdown(sw, len(runs), len(results), results)
    atomic_write_text(os.path.join(out, 'sweep.md'), text)
    machines = {json.dumps(r['machine'], sort_keys=True): r['machine'] for r in results.values() if r.get('machine')}
    atomic_write_text(os.path.join(out, 'sweep.json'), json.dumps(dict(
        planned=len(runs), finished=len(results), metric='val loss (nats/byte)', higher_is_better=False,
        statistics=dict(
            test='two-sided paired t-test over seeds (95% confidence interval of the mean from the t distribution) and '
                 f'the exact two-sided paired sign-flip test (ties |d| <= {stats.TIE_TOLERANCE:g} left out)',
            correction=f'Holm within the family, for each test: {sw.tested} distinct differences (a difference two '
                       'cells share counted once; the comparison at each model\'s own best rate included, '
                       'exploratory; the sanity cell outside)',
            decided_by=stats.RULES[report.RULE], alpha=stats.ALPHA, differences=sw.tested),
        differences=sw.rows(), machines=list(machines.values()),
        runs_without_machine=sum(1 for r in results.values() if not r.get('machine'))), indent=2))
    if results:
        plot(sw, os.path.join(out, 'sweep.png'))
    return text


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--sweep', default=os.path.join(HERE, 'lm_sweep.yaml'), help='sweep file')
    p.add_argument('--out', default=os.path.join('runs', 'lm-sweep'), help='output folder (default runs/lm-sweep)')
    p.add_argument('--jobs', type=int, default=1, help='runs side by side, each in its own process (default 1)')
    p.add_argument('--threads', type=int, default=1, help='torch threads per run (default 1)')
    p.add_argument('--data-dir', default=None, help="prepared data (default: the config's data_dir)")
    p.add_argument('--skip-optional', action='store_true', help='leave out the cells marked optional')
    p.add_argument('--rule', choices=('both', 't', 'sign-flip'), default=None,
                   help='what decides a verdict: both tests (default, an exploratory sweep) or the test a protocol '
                        'named before its runs (the Llama pair\'s: t)')
    p.add_argument('--report-only', action='store_true', help='write the report of finished runs; train nothing')
    p.add_argument('--from-csv', metavar='CSV', help='train nothing: write the report again from the per-run rows of '
                   'an earlier sweep.csv (e.g. docs/figures/lm/sweep.csv) into --out')
    p.add_argument('--list', action='store_true', help='print the planned runs and whether each has finished')
    p.add_argument('--set', action='append', default=[], metavar='FIELD=VALUE',
                   help='override a training field of every run (e.g. for a quick check: --set max_iters=5)')
    args = p.parse_args(argv)
    if args.jobs < 1 or args.threads < 1:
        p.error('--jobs and --threads must be >= 1')
    sweep = load_sweep(args.sweep)
    sweep['rule'] = args.rule
    config_path = sweep['config']
    overrides = {}
    for item in args.set:
        if '=' not in item:
            p.error(f'--set expects FIELD=VALUE, got {item!r}')
        k, v = item.split('=', 1)
        overrides[k.strip()] = yaml.safe_load(v)
    runs = planned_runs(sweep, not args.skip_optional)
    if args.from_csv:
        print(write_report(sweep, args.out, not args.skip_optional, read_csv(args.from_csv, runs)))
        return 0
    done = read_results(args.out, runs, sweep)
    if args.list:
        for run in runs:
            print(f'{"done   " if run in done else "pending"} {run.name}')
        return 0
    if not args.report_only:
        if args.data_dir is None and len(done) < len(runs):
            from stepsnet.tasks.lm import ensure_data, load_config
            ensure_data(load_config(config_path).data_dir)
        specs = [run_spec(run, sweep, args.out, config_path, args.data_dir, overrides) for run in runs]
        result = train_runs('lm', specs, args.jobs, args.threads, 'LM sweep',
                            on_done=lambda *_: write_report(sweep, args.out, not args.skip_optional))
        if result['failed']:
            print(f'{len(result["failed"])} run(s) failed; run the command again to retry them', file=sys.stderr)
    print(write_report(sweep, args.out, not args.skip_optional))
    return 0


if __name__ == '__main__':
    sys.exit(main())
