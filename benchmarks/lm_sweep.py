"""The language-model sweep: residual LM against its Steps twin, cell by cell, seeds paired, resumable.

The cells, models and protocol are in ``benchmarks/lm_sweep.yaml``. Every run trains with
:func:`stepsnet.tasks.lm.train_lm` into ``OUT/runs/<model>-i<iters>-lr<lr>/seed<n>``; a finished run leaves a
``result.json`` there and is never trained again, an interrupted one resumes from its last checkpoint (every
``eval_interval`` steps). Runs that two cells share (e.g. the depth-4 pair at 300 steps) train once.

Usage::

    python benchmarks/lm_sweep.py --jobs 2                  # run what is missing, then write the report
    python benchmarks/lm_sweep.py --report-only             # report what has finished so far
    python benchmarks/lm_sweep.py --list                    # the planned runs, in the order they would run

The report is ``OUT/sweep.csv`` (one row per run), ``OUT/sweep.md`` (per cell: each model's loss, mean +- std
over seeds, and the paired differences to the baseline) and ``OUT/sweep.png``.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import csv
import json
import math
import multiprocessing as mp
import os
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULT = 'result.json'


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


def _git_commit() -> str:
    try:
        return subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return 'unknown'


def _init_worker(threads: int) -> None:
    import torch
    torch.set_num_threads(threads)


def train_one(run: Run, sweep: Dict[str, Any], out: str, config_path: str, data_dir: Optional[str],
              threads: int, overrides: Dict[str, Any]) -> Dict[str, Any]:
    """Train (or resume) one run and write its ``result.json``; returns the result."""
    import torch

    from stepsnet.tasks.lm import load_config, train_lm

    torch.set_num_threads(threads)
    spec = sweep['models'][run.model_key]
    run_dir = os.path.join(out, 'runs', run.name)
    fields: Dict[str, Any] = dict(
        model=spec['model'], model_kwargs=dict(spec.get('model_kwargs') or {}), max_iters=run.max_iters,
        seed=run.seed, out_dir=run_dir, resume='auto', progress=False, tensorboard=False, device='cpu')
    fields['lr'] = run.lr
    if data_dir:
        fields['data_dir'] = data_dir
    fields.update(overrides)
    cfg = load_config(config_path, **fields)
    t0 = time.time()
    summary = train_lm(cfg)
    result = {
        'run': run.name, 'model_key': run.model_key, 'model': spec['model'], 'model_kwargs': cfg.model_kwargs,
        'seed': run.seed, 'max_iters': run.max_iters, 'lr': cfg.lr, 'params': summary['params'],
        'plan': summary['plan'], 'blocks': summary['blocks'], 'iters': summary['iters'],
        'tokens_seen': summary['tokens_seen'], 'val_loss': summary['final'].get('loss'),
        'val_bpb': summary['final'].get('bpb'), 'train_time_s': summary['train_time_s'],
        'wall_time_s': time.time() - t0, 'threads': threads, 'torch': torch.__version__, 'commit': _git_commit(),
    }
    tmp = os.path.join(run_dir, RESULT + '.tmp')
    with open(tmp, 'w', encoding='utf-8') as f:
        json.dump(result, f, indent=2)
    os.replace(tmp, os.path.join(run_dir, RESULT))
    return result


def read_results(out: str, runs: Sequence[Run]) -> Dict[Run, Dict[str, Any]]:
    found = {}
    for run in runs:
        path = os.path.join(out, 'runs', run.name, RESULT)
        if os.path.isfile(path):
            with open(path, encoding='utf-8') as f:
                found[run] = json.load(f)
    return found


def _mean_std(values: Sequence[float]) -> Tuple[float, float]:
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return float('nan'), float('nan')
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else float('nan')


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


def best_rate_difference(points: List[Dict[str, Any]]) -> Optional[Tuple[float, float, int]]:
    """Mean, std and count over the seeds of both of (Steps at its best rate) − (baseline at its best rate)."""
    best = {role: best_lr(points, role) for role in ('baseline', 'steps')}
    if any(b is None for b in best.values()):
        return None
    loss = {role: dict(zip(b['roles'][role]['seeds'], b['roles'][role]['losses'])) for role, b in best.items()}
    diffs = [loss['steps'][s] - loss['baseline'][s] for s in loss['steps'] if s in loss['baseline']]
    return (*_mean_std(diffs), len(diffs)) if diffs else None


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


def report_markdown(sweep: Dict[str, Any], summary: List[Dict[str, Any]], planned: int, finished: int) -> str:
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
    lr_cells = {}
    for p in summary:
        if p['lr_varies']:
            lr_cells.setdefault(p['cell'], []).append(p)
    for name, points in lr_cells.items():
        parts = []
        for role in points[0]['roles']:
            b = best_lr(points, role)
            if b is not None:
                m, s = b['roles'][role]['mean_std']
                parts.append(f'{role} best at lr {b["lr"]:g}: {_fmt(m, s, len(b["roles"][role]["losses"]))}')
        at_best = best_rate_difference(points)
        if at_best is not None:
            m, s, n = at_best
            parts.append(f'steps at its best − baseline at its best, paired by seed: {_fmt(m, s, n, sign=True)}')
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
    return '\n'.join(lines) + '\n'


def write_csv(results: Dict[Run, Dict[str, Any]], path: str) -> None:
    keys = ['run', 'model_key', 'model', 'seed', 'max_iters', 'lr', 'params', 'plan', 'blocks', 'iters',
            'tokens_seen', 'val_loss', 'val_bpb', 'train_time_s', 'threads', 'torch', 'commit']
    tmp = path + '.tmp'
    with open(tmp, 'w', newline='', encoding='utf-8') as f:
        w = csv.DictWriter(f, fieldnames=keys, extrasaction='ignore')
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


def write_report(sweep: Dict[str, Any], out: str, include_optional: bool = True) -> str:
    runs = planned_runs(sweep, include_optional)
    results = read_results(out, runs)
    summary = summarise(sweep, results)
    os.makedirs(out, exist_ok=True)
    write_csv(results, os.path.join(out, 'sweep.csv'))
    text = report_markdown(sweep, summary, len(runs), len(results))
    tmp = os.path.join(out, 'sweep.md.tmp')
    with open(tmp, 'w', encoding='utf-8') as f:
        f.write(text)
    os.replace(tmp, os.path.join(out, 'sweep.md'))
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
    done = read_results(args.out, runs)
    if args.list:
        for run in runs:
            print(f'{"done   " if run in done else "pending"} {run.name}')
        return 0
    todo = [r for r in runs if r not in done]
    if not args.report_only and todo:
        if args.data_dir is None:
            from stepsnet.tasks.lm import ensure_data, load_config
            ensure_data(load_config(config_path).data_dir)
        print(f'{len(todo)} of {len(runs)} runs to train, {args.jobs} at a time, {args.threads} thread(s) each',
              flush=True)
        failed = 0

        def report(run: Run, compute) -> None:
            nonlocal failed
            try:
                r = compute()
                print(f'done {run.name}: val loss {r["val_loss"]:.4f} ({r["wall_time_s"]:.0f} s)', flush=True)
            except Exception:  # one failed run must not stop the others; it is reported and retried next time
                failed += 1
                print(f'FAILED {run.name}:\n{traceback.format_exc()}', file=sys.stderr, flush=True)
            write_report(sweep, args.out, not args.skip_optional)

        if args.jobs == 1:
            for run in todo:
                report(run, lambda run=run: train_one(run, sweep, args.out, config_path, args.data_dir, args.threads,
                                                      overrides))
        else:
            with cf.ProcessPoolExecutor(args.jobs, mp_context=mp.get_context('spawn'), initializer=_init_worker,
                                        initargs=(args.threads,)) as pool:
                futures = {pool.submit(train_one, run, sweep, args.out, config_path, args.data_dir, args.threads,
                                       overrides): run for run in todo}
                for fut in cf.as_completed(futures):
                    report(futures[fut], fut.result)
        if failed:
            print(f'{failed} run(s) failed; run the command again to retry them', file=sys.stderr)
    print(write_report(sweep, args.out, not args.skip_optional))
    return 0


if __name__ == '__main__':
    sys.exit(main())
