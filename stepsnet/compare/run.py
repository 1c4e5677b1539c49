"""Running a comparison: train its runs (or reuse the finished ones), collect them per point and arm, judge the
differences and write the report (:func:`run_comparison`); or dry-run each arm once (:func:`dry_run_comparison`)."""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence

import torch

from stepsnet.compare.convergence import convergence, load_reference, mismatch, skeleton
from stepsnet.compare.harness import (
    ADAPTERS,
    REPO,
    Comparison,
    Point,
    RunSpec,
    _run_dir,
    read_result,
    spread,
    train_runs,
)
from stepsnet.compare.report import judge, write_report
from stepsnet.utils.names import plural


def run_comparison(comp: Comparison, progress: bool = True, train: bool = True,
                   report_dir: Optional[str] = None, protocol: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """Train every (point, arm, seed) that has no result yet, then write ``results.json``, ``report.md`` and plots.

    With ``train=False`` nothing trains: the report covers the runs finished so far. The report goes to
    ``report_dir`` (default ``comp.out``, beside the runs). With ``comp.reference`` (the same comparison trained
    twice as long) the results gain ``convergence`` and the report says whether each arm has converged.
    ``protocol`` (what :func:`run_protocol` passes: the protocol's fields and its registration) makes the report a
    pre-registered one: its primary family and test, and the deviations from it.

    Returns:
        The content of ``results.json``.
    """
    ref = load_reference(comp.reference) if comp.reference else None  # a missing reference fails before training
    why = mismatch(skeleton(comp), ref) if ref is not None else None
    if why:
        print(f'warning: the convergence reference {comp.reference} is not this comparison trained twice as long '
              f'({why}); the report will make no convergence statement', flush=True)
    specs = []
    for seed in comp.seeds:
        for point in comp.points:
            for arm in point.arms:
                run_dir = _run_dir(comp, point, arm, seed)
                fields = dict(arm.overrides, seed=int(seed), out_dir=run_dir, resume='auto', tensorboard=False,
                              progress=progress and comp.jobs == 1)
                specs.append(RunSpec(f'{point.name} / {arm.label} / seed {seed}', run_dir,
                                     dataclasses.replace(comp.config, **fields)))
    done = train_runs(comp.task, specs, comp.jobs, comp.threads, f'{comp.title} -> {comp.out}', train=train)
    if done['failed']:
        raise RuntimeError(f'{plural(len(done["failed"]), "run")} failed ({", ".join(done["failed"])}); the others '
                           'are kept: run the same command again to retry them')
    results = _collect(comp, done, protocol)
    if ref is not None:
        results['convergence'] = convergence(results, ref, _shown(comp.reference))
    write_report(results, report_dir or comp.out)
    return results


def _shown(path: str) -> str:
    """A path as a report shows it: relative to the repository when inside it."""
    full = os.path.abspath(path)
    return os.path.relpath(full, REPO) if full.startswith(REPO + os.sep) else path


def dry_run_comparison(comp: Comparison, steps: int = 2, synthetic_data: bool = False) -> List[Dict[str, Any]]:
    """The dry run of every arm of every point at the first seed (:mod:`stepsnet.utils.dryrun`): each prints what it
    measured and the projected time of its run; nothing is written. Returns the reports."""
    train = ADAPTERS[comp.task].train
    reports = []
    for point in comp.points:
        for arm in point.arms:
            fields = dict(arm.overrides, seed=int(comp.seeds[0]), out_dir=_run_dir(comp, point, arm, comp.seeds[0]),
                          tensorboard=False, dry_run=steps, synthetic_data=synthetic_data)
            print(f'{comp.title}: {point.name} / {arm.label}', flush=True)
            summary = train(dataclasses.replace(comp.config, **fields))
            reports.append(summary['results']['dry_run'])
    runs = len(comp.seeds) * sum(len(p.arms) for p in comp.points)
    hours = sum(r['projected_s'] for r in reports) * len(comp.seeds) / 3600
    print(f'{comp.title}: {plural(runs, "run")} ({plural(len(comp.seeds), "seed")}) would take about {hours:.2f} h '
          'here, one at a time', flush=True)
    return reports


def _collect(comp: Comparison, done: Mapping[str, Any], protocol: Optional[Mapping[str, Any]] = None
             ) -> Dict[str, Any]:
    adapter = ADAPTERS[comp.task]
    deviations: List[str] = []
    out: Dict[str, Any] = dict(
        title=comp.title, task=comp.task, metric=adapter.metric, higher_is_better=adapter.higher_is_better,
        seeds=[int(s) for s in comp.seeds], context=comp.context, config=dataclasses.asdict(comp.config), points=[],
        wall_time_s=round(done['wall_time_s'], 1), torch=torch.__version__,
        threads=comp.threads or torch.get_num_threads(), jobs=comp.jobs, trained=len(done['trained']),
        reused=len(done['reused']))
    machines: Dict[str, Any] = {}
    unrecorded, train_time = 0, 0.0
    for point in comp.points:
        runs = {arm.role: {int(s): r for s in comp.seeds if (r := read_result(_run_dir(comp, point, arm, s)))}
                for arm in point.arms}
        if protocol:
            deviations += _deviations(point, runs, comp.seeds, protocol['commit'])
        entry: Dict[str, Any] = dict(name=point.name, x=point.x, arms={}, diffs={})
        base = runs.get('baseline', {})
        for arm in point.arms:
            rs = runs[arm.role]
            for r in rs.values():
                train_time += r.get('train_time') or 0.0
                if r.get('machine'):
                    machines[json.dumps(r['machine'], sort_keys=True)] = r['machine']
                else:
                    unrecorded += 1
            any_run = next(iter(rs.values()), {})
            entry['arms'][arm.role] = dict(
                label=arm.label, overrides=arm.overrides,
                **{k: any_run.get(k) for k in ('params', 'macs', 'blocks', 'layers', 'plan')},
                per_seed={s: r['metric'] for s, r in rs.items()},
                stats=spread([r['metric'] for r in rs.values()]),
                train_stats=spread([r.get('train_metric') for r in rs.values()]),
                train_per_seed={s: r.get('train_metric') for s, r in rs.items()},
                seen=any_run.get('seen'), train_time=spread([r['train_time'] for r in rs.values()])['mean'],
                capped=[s for s, r in rs.items() if r.get('stopped_by_time')],
                train_times={s: r['train_time'] for s, r in rs.items()},
                curves={s: r.get('curve') for s, r in rs.items()})
            if arm.role != 'baseline':
                entry['diffs'][arm.role] = dict(per_seed={s: rs[s]['metric'] - base[s]['metric']
                                                          for s in rs if s in base})
                if all(rs[s].get('train_metric') is not None for s in rs):
                    entry['diffs'][arm.role + '_train'] = dict(per_seed={
                        s: rs[s]['train_metric'] - base[s]['train_metric'] for s in rs if s in base})
        out['points'].append(entry)
    deep = [p for p in out['points'] if p['x'] is not None]
    if len(deep) > 1:  # does the difference grow with depth? the deepest point's gap minus the shallowest's, per seed
        first, last = min(deep, key=lambda p: p['x']), max(deep, key=lambda p: p['x'])
        out['trend'] = {}
        for role, d in last['diffs'].items():
            if role.endswith('_train') or role not in first['diffs']:
                continue
            a, b = first['diffs'][role]['per_seed'], d['per_seed']
            out['trend'][role] = dict(per_seed={s: b[s] - a[s] for s in b if s in a}, shallow=first['name'],
                                      deep=last['name'])
    out['train_time_s'] = round(train_time, 1)
    out['machines'] = list(machines.values())
    out['runs_without_machine'] = unrecorded
    if protocol:
        out['protocol'] = dict(protocol)
        out['deviations'] = deviations
    return judge(out)


def _deviations(point: Point, runs: Mapping[str, Mapping[int, Mapping[str, Any]]], seeds: Sequence[int],
                commit: str) -> List[str]:
    """What departs from a protocol at one point: planned runs not finished, runs trained at another commit than
    the protocol's, the arms of one seed trained on different machines, runs stopped by a time limit."""
    out = []
    for arm in point.arms:
        rs = runs[arm.role]
        missing = [int(s) for s in seeds if int(s) not in rs]
        if missing:
            out.append(f'{point.name} / {arm.label}: seeds {missing} not finished')
        other = sorted({str(r.get('commit'))[:12] for r in rs.values() if r.get('commit') != commit})
        if other:
            seeds_other = [s for s, r in rs.items() if r.get('commit') != commit]
            out.append(f'{point.name} / {arm.label}: seeds {seeds_other} trained at commits {other}, not at the '
                       f'protocol\'s {commit[:12]}')
        capped = [s for s, r in rs.items() if r.get('stopped_by_time')]
        if capped:
            out.append(f'{point.name} / {arm.label}: seeds {capped} stopped at a time limit')
    base = runs.get('baseline', {})
    split = [s for s in base for role, rs in runs.items() if role != 'baseline' and s in rs
             and rs[s].get('machine') != base[s].get('machine')]
    if split:
        out.append(f'{point.name}: the arms of seeds {sorted(set(split))} trained on different machines')
    return out
