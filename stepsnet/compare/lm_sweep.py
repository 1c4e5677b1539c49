"""The language-model sweep: residual LM against its Steps twin, cell by cell, seeds paired, resumable.

A sweep file (``benchmarks/lm_sweep.yaml``; the Llama pair's ``benchmarks/llama_compare.yaml`` has the same format)
names a training ``config``, the ``seeds``, the ``models`` and the *cells*: a step count, a learning rate or a grid of
them, and the models of the cell in their roles (``baseline``, ``steps``, sometimes ``control``). :func:`load_sweep`
reads and checks it; :func:`planned_runs` lists every run the cells need, once (runs that two cells share, e.g. the
depth-4 pair at 300 steps, train once); :func:`run_spec` describes a run to the comparison harness, whose ``lm``
task trains it (:func:`stepsnet.compare.train_runs`) into ``OUT/runs/<model>-i<iters>-lr<lr>/seed<n>``. A finished
run leaves its ``results.json`` there and is never trained again; an interrupted one resumes from its last
checkpoint (every ``eval_interval`` steps).

:func:`write_report` reads the finished runs back (:func:`read_results`) and writes the report with
:mod:`stepsnet.reports.lm_sweep_report`: ``OUT/sweep.csv`` (one row per run), ``OUT/sweep.md`` (per cell: each
model's loss, mean ± std over seeds, the paired differences to the baseline, then every difference's tests and
verdict), ``OUT/sweep.json`` (the same differences with both tests) and ``OUT/sweep.png``. The paired differences
and their tests come from :mod:`stepsnet.reports.lm_sweep`, which the result tables of the docs use as well: both
tests per difference, Holm across one family, a difference two cells share counted once.

:func:`run_sweep` is the whole of ``benchmarks/lm_sweep.py`` after its argument parsing: train what is missing,
list the planned runs, or write the report of the finished runs or of an earlier ``sweep.csv``.

Example::

    sweep = load_sweep('benchmarks/lm_sweep.yaml')
    runs = planned_runs(sweep)
    print(write_report(sweep, 'runs/lm-sweep', results=read_csv('docs/figures/lm/sweep.csv', runs)))
"""
from __future__ import annotations

import os
import sys
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import yaml

from stepsnet.compare.harness import REPO, RunSpec, read_result, train_runs
from stepsnet.reports import lm_sweep as tests
from stepsnet.reports.lm_sweep_report import Run, read_csv, write_files

__all__ = ['Run', 'load_sweep', 'planned_runs', 'run_spec', 'read_results', 'read_csv', 'write_report',
           'parse_overrides', 'run_sweep']


def load_sweep(path: str, root: Optional[str] = None) -> Dict[str, Any]:
    """Read and check the sweep file; every cell gets ``seeds``, ``lrs``, ``lr_varies`` and ``optional`` filled in,
    the sweep ``config_lr`` (the rate of its config). A relative ``config`` is relative to ``root``, the repository
    the sweep belongs to (default: the checkout this package runs from, as an editable install has it).

    A cell without ``lr`` trains at the config's rate, so a run it shares with a learning-rate cell trains once.
    """
    from stepsnet.tasks.lm import load_config

    with open(path, encoding='utf-8') as f:
        sweep = yaml.safe_load(f)
    if not isinstance(sweep, dict):
        raise ValueError(f'sweep file {path!r} is not a mapping of config, seeds, models and cells')
    for key in ('config', 'seeds', 'models', 'cells'):
        if key not in sweep:
            raise ValueError(f'sweep file {path!r} lacks {key!r}')
    if not os.path.isabs(sweep['config']):
        sweep['config'] = os.path.join(root or REPO, sweep['config'])
    config_lr = sweep['config_lr'] = float(load_config(sweep['config']).lr)
    for cell in sweep['cells']:
        for role, model_key in cell['roles'].items():
            if model_key not in sweep['models']:
                raise ValueError(f'cell {cell["name"]!r}: role {role!r} names unknown model {model_key!r}')
        if 'baseline' not in cell['roles']:
            raise ValueError(f'cell {cell["name"]!r} has no baseline role')
        cell.setdefault('seeds', sweep['seeds'])
        cell['lrs'] = tests.cell_rates(cell, config_lr)
        cell['lr_varies'] = isinstance(cell.get('lr'), list)
        cell.setdefault('optional', False)
    return sweep


def planned_runs(sweep: Mapping[str, Any], include_optional: bool = True) -> List[Run]:
    """Every run the cells need, once, in the order they run: the main cells before the optional ones, and within
    them the first ``first_seeds`` seeds (default: all) of every cell before the others."""
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


def run_spec(run: Run, sweep: Mapping[str, Any], out: str, config_path: str, data_dir: Optional[str],
             overrides: Mapping[str, Any]) -> RunSpec:
    """The harness's description of one run: the sweep's model at the run's step count, rate and seed, in
    ``out/runs/<run name>``, on the CPU, resumed where it stopped; ``overrides`` (training fields) apply last."""
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


def _row(run: Run, sweep: Mapping[str, Any], r: Dict[str, Any]) -> Dict[str, Any]:
    """One CSV row of a run from its result (:func:`stepsnet.compare.read_result`; rows written before are kept)."""
    if 'val_loss' in r:
        return r
    machine = r.get('machine') or {}
    return {'run': run.name, 'model_key': run.model_key, 'model': sweep['models'][run.model_key]['model'],
            'seed': run.seed, 'max_iters': run.max_iters, 'lr': run.lr, 'params': r['params'], 'plan': r['plan'],
            'blocks': r['blocks'], 'iters': r['steps'], 'tokens_seen': r['seen'], 'val_loss': r['metric'],
            'val_bpb': r.get('bpb'), 'train_time_s': r['train_time'], 'threads': machine.get('torch_threads'),
            'torch': machine.get('torch'), 'commit': r.get('commit', 'unknown'), 'machine': r.get('machine')}


def read_results(out: str, runs: Sequence[Run], sweep: Mapping[str, Any]) -> Dict[Run, Dict[str, Any]]:
    """The rows of the ``runs`` that have finished in ``out/runs`` (the others are left out)."""
    found = {}
    for run in runs:
        r = read_result(os.path.join(out, 'runs', run.name))
        if r is not None:
            found[run] = _row(run, sweep, r)
    return found


def write_report(sweep: Mapping[str, Any], out: str, include_optional: bool = True,
                 results: Optional[Mapping[Run, Mapping[str, Any]]] = None) -> str:
    """Write ``sweep.csv``, ``sweep.md``, ``sweep.json`` (every paired difference with both tests, as the report
    shows it) and ``sweep.png`` from the finished runs in ``out`` (or from ``results``, e.g. the rows of an earlier
    ``sweep.csv``: :func:`read_csv`); returns the markdown."""
    runs = planned_runs(sweep, include_optional)
    if results is None:
        results = read_results(out, runs, sweep)
    return write_files(sweep, out, len(runs), results)


def parse_overrides(items: Iterable[str]) -> Dict[str, Any]:
    """``FIELD=VALUE`` strings (``--set``) as training fields, each value read as YAML (``5``, ``2e-3``, ``true``)."""
    overrides = {}
    for item in items:
        if '=' not in item:
            raise ValueError(f'--set expects FIELD=VALUE, got {item!r}')
        k, v = item.split('=', 1)
        overrides[k.strip()] = yaml.safe_load(v)
    return overrides


def run_sweep(sweep_path: str, out: str, *, jobs: int = 1, threads: int = 1, data_dir: Optional[str] = None,
              skip_optional: bool = False, rule: Optional[str] = None, report_only: bool = False,
              from_csv: Optional[str] = None, list_runs: bool = False,
              overrides: Optional[Mapping[str, Any]] = None, root: Optional[str] = None) -> int:
    """The sweep of ``sweep_path`` into ``out``, as ``benchmarks/lm_sweep.py`` runs it; returns the exit status.

    By default, trains the planned runs that have not finished (``jobs`` side by side, ``threads`` torch threads
    each; the report is written again after every run), then prints the report. With ``from_csv``: trains nothing
    and writes the report from the rows of that earlier ``sweep.csv`` into ``out``; ``list_runs``: prints the planned
    runs and whether each has finished; ``report_only``: the report of what has finished. ``rule`` decides the
    verdicts (:data:`stepsnet.stats.RULES`; None: both tests), ``skip_optional`` leaves out the optional cells,
    ``data_dir`` replaces the config's prepared data and ``overrides`` sets training fields of every run; ``root`` is
    the repository a relative config path is read from (:func:`load_sweep`).
    """
    if jobs < 1 or threads < 1:
        raise ValueError(f'jobs and threads must be >= 1, got jobs={jobs}, threads={threads}')
    sweep = load_sweep(sweep_path, root)
    sweep['rule'] = rule
    include_optional = not skip_optional
    runs = planned_runs(sweep, include_optional)
    if from_csv:
        print(write_report(sweep, out, include_optional, read_csv(from_csv, runs)))
        return 0
    done = read_results(out, runs, sweep)
    if list_runs:
        for run in runs:
            print(f'{"done   " if run in done else "pending"} {run.name}')
        return 0
    if not report_only:
        if data_dir is None and len(done) < len(runs):
            from stepsnet.tasks.lm import ensure_data, load_config
            ensure_data(load_config(sweep['config']).data_dir)
        specs = [run_spec(run, sweep, out, sweep['config'], data_dir, overrides or {}) for run in runs]
        result = train_runs('lm', specs, jobs, threads, 'LM sweep',
                            on_done=lambda *_: write_report(sweep, out, include_optional))
        if result['failed']:
            print(f'{len(result["failed"])} run(s) failed; run the command again to retry them', file=sys.stderr)
    print(write_report(sweep, out, include_optional))
    return 0
