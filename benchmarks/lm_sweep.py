"""The language-model sweep: residual LM against its Steps twin, cell by cell, seeds paired, resumable.

The cells, models and protocol are in ``benchmarks/lm_sweep.yaml``. The runs go through the comparison harness of
:mod:`stepsnet.compare` (its ``lm`` task, :func:`stepsnet.compare.train_runs`) into
``OUT/runs/<model>-i<iters>-lr<lr>/seed<n>``; a finished run leaves its ``results.json`` there and is never trained
again, an interrupted one resumes from its last checkpoint (every ``eval_interval`` steps). Runs that two cells
share (e.g. the depth-4 pair at 300 steps) train once. Paired differences are tested with the project's paired
t-test and Holm's correction across the whole report (:mod:`stepsnet.stats`).

Usage::

    python benchmarks/lm_sweep.py --jobs 2                  # run what is missing, then write the report
    python benchmarks/lm_sweep.py --report-only             # report what has finished so far
    python benchmarks/lm_sweep.py --list                    # the planned runs, in the order they would run
    python benchmarks/lm_sweep.py --from-csv docs/figures/lm/sweep.csv --out DIR   # the report again from a CSV

The report is ``OUT/sweep.csv`` (one row per run), ``OUT/sweep.md`` (per cell: each model's loss, mean +- std
over seeds, the paired differences to the baseline, then every difference's test and verdict) and
``OUT/sweep.png``.
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

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, ROOT)

from stepsnet import stats  # noqa: E402
from stepsnet.compare import RunSpec, read_result, spread, train_runs  # noqa: E402
from stepsnet.utils.checkpoint import atomic_write_text  # noqa: E402


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
    """Read and check the sweep file; every cell gets ``seeds``, ``lrs`` and ``optional`` filled in.

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
    config_lr = float(load_config(sweep['config']).lr)
    for cell in sweep['cells']:
        for role, model_key in cell['roles'].items():
            if model_key not in sweep['models']:
                raise ValueError(f'cell {cell["name"]!r}: role {role!r} names unknown model {model_key!r}')
        if 'baseline' not in cell['roles']:
            raise ValueError(f'cell {cell["name"]!r} has no baseline role')
        cell.setdefault('seeds', sweep['seeds'])
        lr = cell.get('lr')
        cell['lrs'] = [config_lr] if lr is None else ([float(v) for v in lr] if isinstance(lr, list) else [float(lr)])
        cell['lr_varies'] = isinstance(lr, list)
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


def _fmt(mean: float, std: float, n: int, digits: int = 4, sign: bool = False) -> str:
    if math.isnan(mean):
        return 'pending'
    s = f'{mean:+.{digits}f}' if sign else f'{mean:.{digits}f}'
    return s + (f' ± {std:.{digits}f}' if n > 1 else '') + f' (n={n})'


def _paired(a: Dict[int, Optional[Dict[str, Any]]], b: Dict[int, Optional[Dict[str, Any]]]) -> List[float]:
    """Per seed finished in both: loss of ``a`` − loss of ``b``."""
    return [a[s]['val_loss'] - b[s]['val_loss'] for s in a if a[s] is not None and b.get(s) is not None]


def summarise(sweep: Dict[str, Any], results: Dict[Run, Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Per cell and learning rate: each role's losses and its paired differences to the baseline."""
    rows = []
    for cell in sweep['cells']:
        for lr in cell['lrs']:
            point: Dict[str, Any] = {'cell': cell['name'], 'lr': lr, 'lr_varies': cell['lr_varies'],
                                     'max_iters': cell['max_iters'], 'roles': {}}
            per_role = {role: {s: results.get(Run(key, int(cell['max_iters']), lr, int(s))) for s in cell['seeds']}
                        for role, key in cell['roles'].items()}
            for role, model_key in cell['roles'].items():
                done = {s: r for s, r in per_role[role].items() if r is not None}
                losses = [r['val_loss'] for r in done.values()]
                diffs = _paired(per_role[role], per_role['baseline'])
                any_run = next(iter(done.values()), None)
                point['roles'][role] = {
                    'model_key': model_key, 'seeds': sorted(done), 'losses': losses,
                    'mean_std': _mean_std(losses), 'diffs': diffs, 'diff_mean_std': _mean_std(diffs),
                    'params': any_run['params'] if any_run else None, 'plan': any_run['plan'] if any_run else None,
                    'blocks': any_run['blocks'] if any_run else None,
                }
            if 'steps' in per_role and 'control' in per_role:
                diffs = _paired(per_role['steps'], per_role['control'])
                point['steps_vs_control'] = {'diffs': diffs, 'diff_mean_std': _mean_std(diffs)}
            rows.append(point)
    return rows


def best_lr(points: List[Dict[str, Any]], role: str) -> Optional[Dict[str, Any]]:
    """The point at which ``role`` has its lowest mean loss (None when no point has finished runs)."""
    done = [p for p in points if p['roles'][role]['losses']]
    return min(done, key=lambda p: p['roles'][role]['mean_std'][0]) if done else None


def best_rate_differences(points: List[Dict[str, Any]]) -> List[float]:
    """Per seed of both: (Steps at its best rate) − (baseline at its best rate); empty when either has no run."""
    best = {role: best_lr(points, role) for role in ('baseline', 'steps')}
    if any(b is None for b in best.values()):
        return []
    loss = {role: dict(zip(b['roles'][role]['seeds'], b['roles'][role]['losses'])) for role, b in best.items()}
    return [loss['steps'][s] - loss['baseline'][s] for s in loss['steps'] if s in loss['baseline']]


def _lr_cells(summary: List[Dict[str, Any]]) -> Dict[str, List[Dict[str, Any]]]:
    cells: Dict[str, List[Dict[str, Any]]] = {}
    for p in summary:
        if p['lr_varies']:
            cells.setdefault(p['cell'], []).append(p)
    return cells


_LABELS = {'baseline': 'baseline', 'steps': 'Steps', 'control': 'control'}


def tests(summary: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Every paired difference of the report with its paired t-test; Holm across all of them.

    Rows ``{'cell', 'lr', 'what', 'first', 'second'}`` plus the fields of :class:`stepsnet.stats.PairedTest`,
    ``outcome`` (``ahead``: the first model has the lower loss) and ``verdict``.
    """
    items = []
    for p in summary:
        for role, r in p['roles'].items():
            if role != 'baseline' and r['diffs']:
                items.append((p['cell'], p['lr'], _LABELS.get(role, role), 'baseline', r['diffs']))
        if p.get('steps_vs_control', {}).get('diffs'):
            items.append((p['cell'], p['lr'], 'Steps', 'control', p['steps_vs_control']['diffs']))
    for name, points in _lr_cells(summary).items():
        diffs = best_rate_differences(points)
        if diffs:
            items.append((name, None, 'Steps at its best rate', 'baseline at its best rate', diffs))
    # a difference two cells share (the same runs, e.g. depth 8 and the learning-rate cell at the same rate) is one
    # test: counted once by Holm, shown in both cells
    keys = [(it[2], it[3], tuple(it[-1])) for it in items]
    unique = list(dict.fromkeys(keys))
    tested = dict(zip(unique, stats.adjust([stats.paired_test(k[-1]) for k in unique])))
    rows = []
    for (cell, lr, first, second, _), key in zip(items, keys):
        t = tested[key]
        code = stats.outcome(t, higher_is_better=False)
        words = {'ahead': f'{first}: lower loss than {second}', 'behind': f'{first}: higher loss than {second}'}.get(
            code, stats.verdict(t, False, interval=False))
        rows.append(dict(cell=cell, lr=lr, what=f'{first} − {second}', first=first, second=second, **t.to_dict(),
                         outcome=code, verdict=words))
    return rows


def _tested(rows: List[Dict[str, Any]]) -> int:
    return len({(r['what'], tuple(r['values'])) for r in rows if r['p'] is not None})


def _tests_markdown(rows: List[Dict[str, Any]], results: Dict[Run, Dict[str, Any]]) -> List[str]:
    lines = ['', f'**Tests.** Each difference above is tested with a two-sided paired t-test over its seeds; the p '
             f'values are adjusted with Holm\'s method across the {_tested(rows)} tested differences of this report '
             '(a difference two cells share counts once), and a verdict is given only where the adjusted p is below '
             '0.05.', '',
             f'| cell | lr | difference | {stats.TABLE_HEAD} | verdict |', '|---|---|---|---|---|---|---|---|---|---|']
    for r in rows:
        cells = stats.table_cells(stats.PairedTest.from_dict(r), 6 if r['cell'] == 'sanity' else 4)
        lr = 'best' if r['lr'] is None else f'{r["lr"]:g}'
        lines.append(f'| {r["cell"]} | {lr} | {r["what"]} | {" | ".join(cells)} | {r["verdict"]} |')
    machines = {json.dumps(r['machine'], sort_keys=True): r['machine'] for r in results.values() if r.get('machine')}
    missing = sum(1 for r in results.values() if not r.get('machine')) if machines else 0
    return lines + ['', stats.machine_sentence(list(machines.values()), missing)]


def _loss_cell(point: Dict[str, Any], role: str) -> str:
    r = point['roles'].get(role)
    if r is None:
        return '—'
    m, s = r['mean_std']
    return _fmt(m, s, len(r['losses']))


def _diff_cell(point: Dict[str, Any], role: str) -> str:
    """A paired difference: ``role`` − baseline, or with ``role='steps_vs_control'`` Steps − control."""
    r = point.get(role) if role == 'steps_vs_control' else point['roles'].get(role)
    if r is None:
        return '—'
    m, s = r['diff_mean_std']
    return _fmt(m, s, len(r['diffs']), digits=6 if point['cell'] == 'sanity' else 4, sign=True)


def report_markdown(sweep: Dict[str, Any], summary: List[Dict[str, Any]], planned: int, finished: int,
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
    for p in summary:
        lines.append(f'| {p["cell"]} | {p["lr"]:g} | {p["max_iters"]} | {_loss_cell(p, "baseline")} | '
                     f'{_loss_cell(p, "steps")} | {_loss_cell(p, "control")} | {_diff_cell(p, "steps")} | '
                     f'{_diff_cell(p, "control")} | {_diff_cell(p, "steps_vs_control")} |')
    for name, points in _lr_cells(summary).items():
        parts = []
        for role in points[0]['roles']:
            b = best_lr(points, role)
            if b is not None:
                m, s = b['roles'][role]['mean_std']
                parts.append(f'{role} best at lr {b["lr"]:g}: {_fmt(m, s, len(b["roles"][role]["losses"]))}')
        at_best = best_rate_differences(points)
        if at_best:
            m, s = _mean_std(at_best)
            parts.append(f'steps at its best − baseline at its best, paired by seed: '
                         f'{_fmt(m, s, len(at_best), sign=True)}')
        if parts:
            lines += ['', f'**{name}**, each model at its own best rate: ' + '; '.join(parts) + '.']
    lines += ['', '| model | plan | blocks | params |', '|---|---|---|---|']
    seen = set()
    for p in summary:
        for role in p['roles'].values():
            if role['model_key'] in seen or role['params'] is None:
                continue
            seen.add(role['model_key'])
            lines.append(f'| {role["model_key"]} | {role["plan"]} | {role["blocks"]} | {role["params"]:,} |')
    lines += _tests_markdown(tests(summary), results or {})
    return '\n'.join(lines) + '\n'


def write_csv(results: Dict[Run, Dict[str, Any]], path: str) -> None:
    tmp = path + '.tmp'
    with open(tmp, 'w', newline='', encoding='utf-8') as f:
        w = csv.DictWriter(f, fieldnames=CSV_KEYS, extrasaction='ignore')
        w.writeheader()
        for run in sorted(results, key=lambda r: r.name):
            w.writerow(results[run])
    os.replace(tmp, path)


def plot(summary: List[Dict[str, Any]], path: str) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    colours = {'steps': 'tab:red', 'control': 'tab:green'}
    points = [p for p in summary if any(r['diffs'] for k, r in p['roles'].items() if k != 'baseline')]
    fig, ax = plt.subplots(figsize=(max(9.0, 1.1 * len(points)), 4.8))
    labels = []
    for i, p in enumerate(points):
        name = p['cell'].replace(' (', '\n(')  # 'budget 3000 (depth 4)' on two lines
        labels.append(name + (f'\nlr {p["lr"]:g}' if p['lr_varies'] else ''))
        for j, (role, colour) in enumerate(colours.items()):
            r = p['roles'].get(role)
            if r is None or not r['diffs']:
                continue
            x = i + (j - 0.5) * 0.25
            m, s = r['diff_mean_std']
            ax.errorbar([x], [m], yerr=[0 if math.isnan(s) else s], fmt='o', color=colour, capsize=4, ms=7,
                        label=f'{role} − baseline' if i == 0 or role not in ax.get_legend_handles_labels()[1]
                        else None)
            ax.scatter([x] * len(r['diffs']), r['diffs'], color=colour, s=12, alpha=0.5, marker='x')
    handles, names = ax.get_legend_handles_labels()
    unique = dict(zip(names, handles))
    ax.legend(unique.values(), unique.keys())
    ax.axhline(0, color='k', lw=0.8)
    ax.set_xticks(range(len(points)))
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
    """Write ``sweep.csv``, ``sweep.md``, ``sweep.json`` (every paired difference with its test) and ``sweep.png``
    from the finished runs in ``out`` (or from ``results``, e.g. the rows of an earlier ``sweep.csv``)."""
    runs = planned_runs(sweep, include_optional)
    if results is None:
        results = read_results(out, runs, sweep)
    summary = summarise(sweep, results)
    os.makedirs(out, exist_ok=True)
    write_csv(results, os.path.join(out, 'sweep.csv'))
    text = report_markdown(sweep, summary, len(runs), len(results), results)
    atomic_write_text(os.path.join(out, 'sweep.md'), text)
    machines = {json.dumps(r['machine'], sort_keys=True): r['machine'] for r in results.values() if r.get('machine')}
    atomic_write_text(os.path.join(out, 'sweep.json'), json.dumps(dict(
        planned=len(runs), finished=len(results), metric='val loss (nats/byte)', higher_is_better=False,
        statistics=dict(test='two-sided paired t-test over seeds; 95% confidence interval from the t distribution',
                        correction='Holm, across the tested differences of this report', alpha=stats.ALPHA),
        differences=tests(summary), machines=list(machines.values()),
        runs_without_machine=sum(1 for r in results.values() if not r.get('machine'))), indent=2))
    if results:
        plot(summary, os.path.join(out, 'sweep.png'))
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
