"""Residual against Steps, for every task: seeds x arms (x points), paired statistics, one report.

A comparison is a list of *points* (one setting, e.g. a depth), each with *arms* (``baseline``, ``steps``,
sometimes a ``control``), trained with the same recipe, data and seeds; only the model differs. Every run goes
into ``OUT/<point>/<arm>/seed<k>`` as an ordinary training run of its task, with ``resume='auto'``: a comparison
that is stopped and started again continues its unfinished runs and skips the finished ones. A run's results are
its run folder's ``results.json``: the engine's (:meth:`stepsnet.engine.RunFolder.results`), to which the harness
adds what the engine does not measure under ``comparison`` (:func:`read_result` reads the two as one). Results,
in ``OUT``:

* ``results.json``: per point and arm the model, its parameters, FLOPs, blocks and layers, the metric per seed
  (``per_seed``), its mean and standard deviation, the training time per seed and the validation curves; per point
  the paired differences to the baseline (same seed: same initialisation seed, same batches), each with its
  paired t-test (:class:`stepsnet.stats.PairedTest` fields: ``mean``, ``std``, ``ci_low`` / ``ci_high``, ``n``,
  ``t``, ``p``, ``p_adj`` (Holm across every difference of the report), ``same_sign``), its ``outcome`` and
  ``verdict`` and what the seeds can settle (``detectable``); ``trend``: the change of each gap with depth, tested
  the same way; ``statistics``: how; ``machines`` (every distinct machine the runs recorded) and
  ``runs_without_machine``; ``train_time_s`` (the runs' measured training time, summed), ``wall_time_s`` (this
  invocation), ``trained`` / ``reused`` (runs trained now / finished before);
* ``report.md``: the table, every paired test and its verdict, what the seeds can settle, and the machine;
* ``curves.png`` (validation metric against data seen, every run) and, for comparisons over depth,
  ``depth.png`` (the paper's Fig. 1 axes: metric against layers, markers sized by FLOPs).

Each task enters through a :class:`TaskAdapter` (runner, metric and direction, curve axis, recipe, config loader,
model check) in :data:`ADAPTERS`; :func:`train_runs` (resumable runs, side by side, with logs) also runs the LM
sweep of ``benchmarks/lm_sweep.py``. :func:`render_report` writes a report again from its ``results.json`` alone.

Three comparisons are built in (``stepsnet compare TASK``): :func:`depth_comparison` (the paper's Fig. 1 in
miniature on the embedded digits: DeiT-like trunks, residual against the Steps twin of equal parameters and
FLOPs at a shallow and a deep setting), :func:`lm_comparison` and :func:`cls_comparison`.
"""
from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import io
import json
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

import numpy as np
import torch

from stepsnet import stats
from stepsnet.analysis.complexity import count_blocks, count_flops, count_layers
from stepsnet.engine import RESULTS
from stepsnet.models.factory import CLS_KIND, LM_KIND, create_classifier, create_lm, deit_trunk_config, lm_config
from stepsnet.tasks import classification as cls_task
from stepsnet.tasks import lm as lm_task
from stepsnet.utils.checkpoint import atomic_write_text
from stepsnet.utils.figures import save_figure
from stepsnet.utils.names import plural
from stepsnet.utils.provenance import machine_info

__all__ = ['Arm', 'Point', 'Comparison', 'TaskAdapter', 'ADAPTERS', 'RunSpec', 'train_runs', 'run_comparison',
           'judge', 'write_report', 'render_report', 'report_markdown', 'depth_comparison', 'lm_comparison',
           'cls_comparison', 'COMPARISONS', 'default_config_path', 'spread', 'read_result', 'add_to_results']

# the key of a run's results.json under which the harness keeps what it adds to the engine's results
SECTION = 'comparison'
# a run's results in a run folder of an earlier release (the harness's keys alone), still read
EARLIER_RESULT = 'result.json'
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass
class Arm:
    """One model of a comparison.

    Attributes:
        role: ``baseline``, ``steps`` or ``control``; differences are taken against ``baseline``.
        label: How tables name it.
        overrides: Fields of the task's config that make this model (``model``, ``model_kwargs``, ...).
    """
    role: str
    label: str
    overrides: Dict[str, Any]


@dataclass
class Point:
    """One setting of a comparison, e.g. a depth; ``x`` places it on the depth plot (None: no depth plot)."""
    name: str
    arms: List[Arm]
    x: Optional[float] = None


@dataclass
class Comparison:
    """What to compare and how.

    Attributes:
        task: A key of :data:`ADAPTERS` (``cls``, ``lm``): whose training function runs each arm.
        config: The task's config (:class:`~stepsnet.tasks.lm.LMConfig` /
            :class:`~stepsnet.tasks.classification.ClassificationConfig`): the recipe every arm shares.
        points: The settings, each with its arms.
        seeds: Seeds; every arm of every point trains once per seed.
        out: Output folder.
        title: Report title.
        context: A paragraph for the report: what the experiment is and where the paper's numbers are.
        jobs: Runs trained side by side, each in its own process (with ``threads`` torch threads).
        threads: torch threads per run (None: torch's choice).
    """
    task: str
    config: Any
    points: List[Point]
    seeds: Sequence[int] = (0,)
    out: str = os.path.join('runs', 'compare')
    title: str = 'Residual against Steps'
    context: str = ''
    jobs: int = 1
    threads: Optional[int] = None

    def __post_init__(self):
        if self.task not in ADAPTERS:
            raise ValueError(f'task must be one of {sorted(ADAPTERS)}, got {self.task!r}')
        if not self.seeds:
            raise ValueError('seeds must name at least one seed')
        if self.jobs < 1:
            raise ValueError(f'jobs must be >= 1, got {self.jobs}')
        for p in self.points:
            if not any(a.role == 'baseline' for a in p.arms):
                raise ValueError(f'point {p.name!r} has no baseline arm')


# ----------------------------------------------------------------------------------------------------------------
# The tasks: what the harness needs to know of each


def _describe_classifier(cfg: cls_task.ClassificationConfig, num_classes: int = 10) -> Dict[str, Any]:
    img = cls_task.data_config(cfg)['input_size']
    net = create_classifier(cfg.model, num_classes, img[-1], **cfg.model_kwargs)
    plan = [str(m.plan) for m in net.modules() if hasattr(m, 'plan') and hasattr(m, 'truncate')]
    return dict(macs=count_flops(net, img), blocks=count_blocks(net), layers=count_layers(net),
                plan='; '.join(plan))


def _run_cls(cfg: cls_task.ClassificationConfig) -> Dict[str, Any]:
    s = cls_task.train_classification(cfg)
    curve = [(h['images_seen'], h['val_top1']) for h in s['history']]
    # the final weights on the training images, without augmentation (the paper's Fig. 1 shows both)
    train = cls_task.validate_classification(
        os.path.join(cfg.out_dir, 'last.pth'), dataset=cfg.dataset, data_dir=cfg.data_dir, split=cfg.train_split,
        batch_size=256, workers=0, device=cfg.device, progress=False)
    return dict(train_metric=train['top1'], train_loss=s['final_train_loss'], curve=curve,
                **_describe_classifier(cfg))


def _check_cls(cfg: cls_task.ClassificationConfig) -> None:
    create_classifier(cfg.model, 10, cls_task.data_config(cfg)['input_size'][-1], **cfg.model_kwargs)


def _run_lm(cfg: lm_task.LMConfig) -> Dict[str, Any]:
    s = lm_task.train_lm(cfg)
    curve = [(h['tokens_seen'], h['val_loss']) for h in s['history'] if 'val_loss' in h]
    return dict(tokens_per_s=s['tokens_per_s'], curve=curve, macs=s['flops_per_token'], blocks=s['blocks'],
                layers=5 * s['blocks'], plan=s['plan'])


def _check_lm(cfg: lm_task.LMConfig) -> None:
    model = lm_config(cfg.model, **cfg.model_kwargs)
    model.plan()
    if cfg.block_size and cfg.block_size > model.block_size:
        raise ValueError(f'training context block_size={cfg.block_size} is longer than the model '
                         f'{cfg.model!r} context {model.block_size}; expected at most {model.block_size}')


@dataclass(frozen=True)
class TaskAdapter:
    """One task as the harness sees it.

    Attributes:
        metric: The compared metric, as tables name it.
        higher_is_better: Its direction.
        seen: What the curves' x axis counts.
        digits: Decimals of the tables.
        recipe: The default recipe, relative to ``configs/``.
        load_config: The task's config loader (path, **overrides).
        run: Trains one run from its config; returns what the harness adds to the engine's results: at least
            ``curve``, ``macs``, ``blocks``, ``layers`` and ``plan``.
        check: Builds the run's model on the meta device: raises on a bad setting before anything trains.
        train: The task's own training function (what ``run`` calls; a dry run calls it alone).
        kind: The checkpoint kind of the task's runs (the ``kind`` of their ``results.json``).
        final: The key of the compared metric in the final evaluation (``final`` of ``results.json``).
        train_metric: Name of the metric measured again on the training images (``train_metric`` in a run's
            result), or None.
    """
    metric: str
    higher_is_better: bool
    seen: str
    digits: int
    recipe: str
    load_config: Callable[..., Any]
    run: Callable[[Any], Dict[str, Any]]
    check: Callable[[Any], None]
    train: Callable[[Any], Dict[str, Any]]
    kind: str
    final: str
    train_metric: Optional[str] = None


ADAPTERS: Dict[str, TaskAdapter] = {
    'cls': TaskAdapter('val top-1 (%)', True, 'images seen', 2, os.path.join('cls', 'digits_cpu.yaml'),
                       cls_task.load_config, _run_cls, _check_cls, cls_task.train_classification, CLS_KIND, 'top1',
                       'train top-1 (no augmentation)'),
    'lm': TaskAdapter('val loss (nats/token)', False, 'tokens seen', 4, os.path.join('lm', 'cpu.yaml'),
                      lm_task.load_config, _run_lm, _check_lm, lm_task.train_lm, LM_KIND, 'loss'),
}


def _check_arm(task: str, cfg: Any) -> None:
    """Build the arm's model on the meta device (no memory, no compute): a bad setting fails before any training."""
    with torch.device('meta'):
        ADAPTERS[task].check(cfg)


# ----------------------------------------------------------------------------------------------------------------
# Training runs: resumable, side by side, with their own log prefix


class _Prefixed(io.TextIOBase):
    """A text stream that writes every line of a worker with a prefix naming its run (several runs share a console)."""

    def __init__(self, stream, prefix: str):
        self.stream, self.prefix, self.buf = stream, prefix, ''

    def write(self, text: str) -> int:
        self.buf += text.replace('\r', '\n')
        *lines, self.buf = self.buf.split('\n')
        for line in lines:
            if line.strip():
                self.stream.write(f'{self.prefix}{line}\n')
        self.stream.flush()
        return len(text)

    def flush(self) -> None:
        if self.buf.strip():
            self.stream.write(f'{self.prefix}{self.buf}\n')
        self.buf = ''
        self.stream.flush()


def _train_arm(task: str, cfg: Any, run_dir: str, threads: Optional[int], prefix: Optional[str] = None
               ) -> Dict[str, Any]:
    """Train (or finish) one run; write and return its result. With ``prefix`` every line it prints carries it."""
    streams = sys.stdout, sys.stderr
    if prefix:
        sys.stdout, sys.stderr = _Prefixed(streams[0], prefix), _Prefixed(streams[1], prefix)
    try:
        if threads:
            torch.set_num_threads(threads)
        t0 = time.time()
        added = ADAPTERS[task].run(cfg)
        added.update(wall_time_s=time.time() - t0, machine=machine_info(), commit=_git_commit())
        return add_to_results(run_dir, added)
    finally:
        if prefix:
            sys.stdout.flush()
            sys.stderr.flush()
            sys.stdout, sys.stderr = streams


def _git_commit() -> str:
    """The commit of the checkout that trained a run ('unknown' outside a git checkout)."""
    try:
        return subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return 'unknown'


@dataclass
class RunSpec:
    """One training run: ``label`` names it in logs; it trains ``config`` into ``run_dir``."""
    label: str
    run_dir: str
    config: Any


def _minutes(seconds: float) -> str:
    return f'{seconds / 60:.1f} min' if seconds >= 90 else f'{seconds:.0f} s'


def _read_json(path: str) -> Optional[Dict[str, Any]]:
    if not os.path.isfile(path):
        return None
    with open(path, encoding='utf-8') as f:
        return json.load(f)


def add_to_results(run_dir: str, added: Mapping[str, Any]) -> Dict[str, Any]:
    """Add what the harness measured of a run (``added``) to its ``results.json`` under ``comparison``, once the
    run has finished; return the run's result as :func:`read_result` reads it.

    Raises:
        FileNotFoundError: The run folder has no ``results.json`` (the run did not finish).
    """
    path = os.path.join(run_dir, RESULTS)
    results = _read_json(path)
    if results is None:
        raise FileNotFoundError(f'{path!r} does not exist; expected the results of a finished run')
    atomic_write_text(path, json.dumps({**results, SECTION: dict(added)}, indent=2, default=str))
    result = read_result(run_dir)
    assert result is not None
    return result


def read_result(run_dir: str) -> Optional[Dict[str, Any]]:
    """A finished run's result as the harness reads it, or None when it has none yet.

    The run folder's ``results.json`` read as one mapping: ``metric`` (the compared metric of its final
    evaluation), every other value of the final evaluation by name (``loss``, ``bpb``, ...), ``seen`` (items
    trained on), ``train_time`` (seconds), ``steps``, ``stopped_by_time``, ``params``, and what the harness added
    (``train_metric``, ``curve``, ``macs``, ``blocks``, ``layers``, ``plan``, ``wall_time_s``, ``machine``,
    ``commit``, ...). A ``results.json`` without the harness's part is a run the harness has not finished. A run
    folder of an earlier release holds the harness's keys alone, in ``result.json``.
    """
    results = _read_json(os.path.join(run_dir, RESULTS))
    if results is None or SECTION not in results:
        return _read_json(os.path.join(run_dir, EARLIER_RESULT))
    adapter = next((a for a in ADAPTERS.values() if a.kind == results.get('kind')), None)
    if adapter is None:
        raise ValueError(f'{os.path.join(run_dir, RESULTS)!r} holds a run of kind {results.get("kind")!r}; the '
                         f'harness compares {sorted(a.kind for a in ADAPTERS.values())}')
    final = dict(results.get('final') or {})
    return {**{k: v for k, v in final.items() if k != adapter.final}, 'metric': final.get(adapter.final),
            'seen': results['items_seen'], 'train_time': results['train_time_s'], 'steps': results['steps'],
            'stopped_by_time': results['stopped_early'], 'params': results.get('params'), **results[SECTION]}


def train_runs(task: str, specs: Sequence[RunSpec], jobs: int = 1, threads: Optional[int] = None, title: str = '',
               on_done: Optional[Callable[[RunSpec, Dict[str, Any]], None]] = None, train: bool = True
               ) -> Dict[str, Any]:
    """Train every run of ``specs`` that has no result yet, ``jobs`` at a time (each in its own process).

    A run that fails is reported and left for the next call; the others go on. Before training it says how many runs
    are done (reused) and how many to train; after each run, its metric, how many are left and about how long they
    will take (the mean time of the runs finished so far, ``jobs`` at a time). With ``train=False`` it only counts.

    Returns:
        ``trained`` / ``reused`` / ``failed`` (lists of labels) and ``wall_time_s`` of this call.
    """
    t0 = time.time()
    adapter = ADAPTERS[task]
    todo = [s for s in specs if read_result(s.run_dir) is None]
    reused = [s.label for s in specs if s not in todo]
    where = f'{title}: ' if title else ''
    if not train:
        print(f'{where}report only: {len(reused)} of {len(specs)} runs finished, {len(todo)} not run (nothing '
              'trained)', flush=True)
        return dict(trained=[], reused=reused, failed=[], wall_time_s=time.time() - t0)
    for s in todo:
        _check_arm(task, s.config)
    if not todo:
        print(f'{where}all {len(specs)} runs done before (reused); nothing to train', flush=True)
        return dict(trained=[], reused=reused, failed=[], wall_time_s=time.time() - t0)
    print(f'{where}{len(specs)} runs: {len(reused)} done before (reused), {len(todo)} to train, {jobs} at a time',
          flush=True)
    trained, failed, times = [], [], []

    def finished(spec: RunSpec, get: Callable[[], Dict[str, Any]]) -> None:
        try:
            r = get()
        except Exception:  # one failed run must not stop the others; it is reported and retried next time
            failed.append(spec.label)
            print(f'FAILED {spec.label}:\n{traceback.format_exc()}', file=sys.stderr, flush=True)
            return
        trained.append(spec.label)
        times.append(r['wall_time_s'])
        left = len(todo) - len(trained) - len(failed)
        eta = f', about {_minutes(left * float(np.mean(times)) / jobs)} to go' if left else ''
        metric = f'{r["metric"]:.{adapter.digits}f}' if r.get('metric') is not None else 'none'
        print(f'  [{len(trained) + len(failed)}/{len(todo)}] {spec.label}: {adapter.metric} {metric} '
              f'({_minutes(r["wall_time_s"])}); {left} left{eta}', flush=True)
        if on_done is not None:
            on_done(spec, r)

    if jobs == 1:
        for spec in todo:
            finished(spec, lambda spec=spec: _train_arm(task, spec.config, spec.run_dir, threads))
    else:
        with cf.ProcessPoolExecutor(jobs, mp_context=mp.get_context('spawn')) as pool:
            futures = {pool.submit(_train_arm, task, s.config, s.run_dir, threads, f'[{s.label}] '): s for s in todo}
            for fut in cf.as_completed(futures):
                finished(futures[fut], fut.result)
    return dict(trained=trained, reused=reused, failed=failed, wall_time_s=time.time() - t0)


# ----------------------------------------------------------------------------------------------------------------
# The harness


def spread(values: Sequence[Optional[float]]) -> Dict[str, Any]:
    """Mean, sample standard deviation (ddof 1; None for one value) and the values of one arm's metric."""
    arr = np.asarray([v for v in values if v is not None], dtype=np.float64)
    return dict(mean=float(arr.mean()) if arr.size else None,
                std=float(arr.std(ddof=1)) if arr.size > 1 else None, n=int(arr.size), values=arr.tolist())


def _run_dir(comp: Comparison, point: Point, arm: Arm, seed: int) -> str:
    return os.path.join(comp.out, point.name.replace(' ', '_'), arm.role, f'seed{seed}')


def run_comparison(comp: Comparison, progress: bool = True, train: bool = True,
                   report_dir: Optional[str] = None, protocol: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """Train every (point, arm, seed) that has no result yet, then write ``results.json``, ``report.md`` and plots.

    With ``train=False`` nothing trains: the report covers the runs finished so far. The report goes to
    ``report_dir`` (default ``comp.out``, beside the runs). ``protocol`` (what :func:`run_protocol` passes: the
    protocol's fields and its registration) makes the report a pre-registered one: its primary family and test, and
    the deviations from it.

    Returns:
        The content of ``results.json``.
    """
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
    write_report(results, report_dir or comp.out)
    return results


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


# ----------------------------------------------------------------------------------------------------------------
# Statistics: every paired difference of a report, one Holm family


def _differences(r: Mapping[str, Any]) -> List[Dict[str, Any]]:
    """Every paired difference of a report, in report order: each point's diffs, then the changes with depth."""
    return [d for p in r['points'] for d in p['diffs'].values()] + list((r.get('trend') or {}).values())


def _families(r: Mapping[str, Any]) -> List[str]:
    """The Holm family of each difference of :func:`_differences`: under a protocol, ``primary`` (the validation
    differences of the arms it names, at every point) and ``secondary`` (everything else); without one, a single
    family ``report``."""
    protocol = r.get('protocol')
    if not protocol:
        return ['report'] * len(_differences(r))
    roles = set(protocol['primary']['differences'])
    return (['primary' if role in roles else 'secondary' for p in r['points'] for role in p['diffs']]
            + ['secondary'] * len(r.get('trend') or {}))


DECIDED_BY = stats.RULES


def judge(r: Dict[str, Any]) -> Dict[str, Any]:
    """Fill in the statistics of every paired difference of results ``r`` (in place; returned).

    Each difference's per-seed values (``per_seed``, or ``values`` in seed order) give a paired t-test
    (:class:`~stepsnet.stats.PairedTest`, its fields at the top level) and an exact sign-flip test
    (:class:`~stepsnet.stats.SignFlipTest`, under ``sign_flip``). Holm's correction runs within each family
    (:func:`_families`): one family for an exploratory report, primary and secondary under a protocol. The verdict
    (``outcome``, ``verdict``) is the protocol's primary test's, or, without a protocol, needs both tests;
    ``detectable`` is the difference found with 80% power (:class:`~stepsnet.stats.Detectable`); under a protocol,
    each primary difference also gets ``power``: the power the design had for the protocol's planned effect at the
    spread observed. ``r['statistics']`` says how.
    """
    diffs = _differences(r)
    families = _families(r)
    protocol = r.get('protocol')
    alpha = float(protocol['primary']['alpha']) if protocol else stats.ALPHA
    rule = protocol['primary']['test'] if protocol else 'both'
    n_trend = len(r.get('trend') or {})
    higher = [r['higher_is_better']] * (len(diffs) - n_trend) + [None] * n_trend
    values = [list(d['per_seed'].values()) if 'per_seed' in d else d['values'] for d in diffs]
    tests: List[Any] = [stats.paired_test(v) for v in values]
    flips: List[Any] = [stats.sign_flip_test(v) for v in values]
    dets: List[Any] = [None] * len(diffs)
    sizes = {}
    for fam in dict.fromkeys(families):
        idx = [i for i, f in enumerate(families) if f == fam]
        for i, t, s, det in zip(idx, stats.adjust([tests[i] for i in idx]), stats.adjust_p([flips[i] for i in idx]),
                                stats.detectable([tests[i] for i in idx], alpha)):
            tests[i], flips[i], dets[i] = t, s, det
        sizes[fam] = sum(tests[i].p is not None for i in idx)
    for d, t, s, det, h, fam in zip(diffs, tests, flips, dets, higher, families):
        p = stats.deciding_p(t, s, rule)
        d.update(t.to_dict(), sign_flip=s.to_dict(), family=fam, outcome=stats.outcome(t, h, alpha, p=p),
                 verdict=stats.verdict(t, h, alpha, digits=_digits(r), p=p, p_name=stats.p_name(rule)),
                 detectable=det.to_dict())
        d.pop('power', None)
        if protocol and fam == 'primary' and protocol['primary'].get('effect') and t.std is not None:
            effect, m = float(protocol['primary']['effect']), max(1, sizes['primary'])
            d['power'] = dict(effect=effect, divisor=m, t=stats.power_t(effect, t.std, t.n, alpha, m),
                              sign_flip=stats.sign_flip_power(effect, t.std, t.n, alpha, m))
    r['statistics'] = dict(
        test='two-sided paired t-test over seeds (95% confidence interval of the mean from the t distribution) and '
             'the exact two-sided paired sign-flip test (all 2^n sign patterns up to n = '
             f'{stats.EXACT_MAX}; ties |d| <= {stats.TIE_TOLERANCE:g} left out)',
        correction=('Holm within each family: ' + ', '.join(f'{k} ({v} differences)' for k, v in sizes.items())),
        decided_by=DECIDED_BY[rule], alpha=alpha, differences=sum(sizes.values()), families=sizes,
        detectable=f'the true difference found with {stats.POWER:.0%} power by the t-test, alone / at its Holm rank')
    return r


def _digits(r: Mapping[str, Any]) -> int:
    return ADAPTERS[r['task']].digits


# ----------------------------------------------------------------------------------------------------------------
# Report and plots


def write_report(r: Mapping[str, Any], out: str, curves: bool = True) -> str:
    """Write ``results.json``, ``report.md``, ``depth.png`` (a comparison over depth) and, where the results hold
    the runs' curves and ``curves`` is set, ``curves.png`` into ``out``; print and return the report."""
    os.makedirs(out, exist_ok=True)
    atomic_write_text(os.path.join(out, 'results.json'), json.dumps(r, indent=2))
    if curves and all('curves' in a for p in r['points'] for a in p['arms'].values()):
        _plot_curves(r, os.path.join(out, 'curves.png'))
    if any(p['x'] is not None for p in r['points']):
        _plot_depth(r, os.path.join(out, 'depth.png'))
    report = report_markdown(r)
    atomic_write_text(os.path.join(out, 'report.md'), report)
    print(report)
    return report


def render_report(path: str, out: Optional[str] = None) -> Dict[str, Any]:
    """Render a comparison's report again from its ``results.json`` alone (no training, no run folders).

    ``path`` is the results file or its folder; the report, ``results.json`` (with the statistics of
    :func:`judge`) and the plots go to ``out`` (default: the same folder). Results written before the statistics,
    the machine or the curves were recorded are completed from what they hold: statistics from the per-seed values,
    the summed training time from the per-arm means; their machine is "not recorded" and their ``curves.png`` is
    left as it is.
    """
    if os.path.isdir(path):
        path = os.path.join(path, 'results.json')
    if not os.path.isfile(path):
        raise FileNotFoundError(f'no results file {path!r}; expected the results.json of a comparison')
    with open(path, encoding='utf-8') as f:
        r = json.load(f)
    if 'machines' not in r:
        runs = sum(a['stats']['n'] for p in r['points'] for a in p['arms'].values())
        r.update(machines=[], runs_without_machine=runs)
    if 'train_time_s' not in r:
        r['train_time_s'] = round(sum((a.get('train_time') or 0.0) * a['stats']['n']
                                      for p in r['points'] for a in p['arms'].values()), 1)
    for p in r['points']:  # results before per-seed training differences were kept: their values are in seed order
        for role, d in p['diffs'].items():
            if 'per_seed' not in d and role.endswith('_train'):
                d['per_seed'] = dict(zip(p['arms'][role[:-6]]['per_seed'], d['values']))
    for t in (r.get('trend') or {}).values():
        if 'per_seed' not in t:
            t['per_seed'] = dict(zip(r['points'][0]['arms']['baseline']['per_seed'], t['values']))
    write_report(judge(r), out or os.path.dirname(os.path.abspath(path)))
    return r


def _fmt(stats_: Mapping[str, Any], digits: int, sign: bool = False) -> str:
    if stats_['mean'] is None:
        return 'not run'
    s = f'{stats_["mean"]:+.{digits}f}' if sign else f'{stats_["mean"]:.{digits}f}'
    return s + (f' ± {stats_["std"]:.{digits}f}' if stats_['std'] is not None else '')


def _num(v: Optional[float], digits: int, sign: bool = True) -> str:
    return '-' if v is None else (f'{v:+.{digits}f}' if sign else f'{v:.{digits}f}')


def _count(n: int, word: str) -> str:
    """``1 difference``, ``2 differences``."""
    return f'{n} {word}' + ('' if n == 1 else 's')


VERDICT_HEAD = ('| setting | difference | family | mean ± sd | 95% CI | n | t-test p | adjusted | sign-flip p '
                '| adjusted | same sign | detectable (80% power) | verdict |')


def _interval(d: Mapping[str, Any], digits: int, bounds: Optional[Sequence[float]]) -> str:
    """The 95% interval, as one number when it is a point, and marked where the metric's range cuts it."""
    lo, hi = d.get('ci_low'), d.get('ci_high')
    if lo is None:
        return '-'
    if d.get('n', 0) < 3:
        return f'- ({d.get("n")} seeds: too few for an interval)'
    if f'{lo:+.{digits}f}' == f'{hi:+.{digits}f}':
        return f'{lo:+.{digits}f} (every seed the same)'
    text = f'{lo:+.{digits}f} to {hi:+.{digits}f}'
    if bounds is not None and (lo < bounds[0] or hi > bounds[1]):
        text += f' (cut by the metric\'s range {bounds[0]:+g} to {bounds[1]:+g})'
    return text


def _bounds(r: Mapping[str, Any]) -> Optional[Sequence[float]]:
    """The range a difference of this report's metric can take (top-1 in percent: -100 to +100), or None."""
    return (-100.0, 100.0) if '%' in r['metric'] else None


def _verdict_rows(r: Mapping[str, Any], digits: int) -> List[str]:
    rows = [VERDICT_HEAD, '|' + '---|' * (VERDICT_HEAD.count('|') - 1)]
    bounds = _bounds(r)

    def row(setting: str, what: str, d: Mapping[str, Any]) -> str:
        det = d['detectable']
        detect = '-' if det['unadjusted'] is None else f'{det["unadjusted"]:.{digits}f} / {det["holm"]:.{digits}f}'
        t = stats.PairedTest.from_dict(d)
        flip = d.get('sign_flip') or {}
        mean = '-' if t.mean is None else f'{t.mean:+.{digits}f}' + ('' if t.std is None else f' ± {t.std:.{digits}f}')
        same = f'{t.same_sign}/{t.n}' + (f' ({t.ties} tied)' if t.ties else '')
        cells = [setting, what, d.get('family', 'report'), mean, _interval(d, digits, bounds), str(t.n),
                 stats.format_p(t.p), stats.format_p(t.p_adj), stats.format_p(flip.get('p')),
                 stats.format_p(flip.get('p_adj')), same, detect, _short(d)]
        return '| ' + ' | '.join(cells) + ' |'

    for p in r['points']:
        for role, d in p['diffs'].items():
            what = f'{role[:-6]} − baseline, training images' if role.endswith('_train') else f'{role} − baseline'
            rows.append(row(p['name'], what, d))
    for role, t in (r.get('trend') or {}).items():
        rows.append(row('change with depth', f'({role} − baseline at {t["deep"]}) − (at {t["shallow"]})', t))
    return rows


def _short(d: Mapping[str, Any]) -> str:
    """The verdict without its parenthesis (the table has the numbers)."""
    return d['verdict'].split(' (')[0]


def _settles(r: Mapping[str, Any], digits: int) -> str:
    """What the seeds of this report can and cannot settle: the differences found with 80% power, and under a
    protocol the power the design had for its planned effect."""
    dets = [d['detectable'] for d in _differences(r) if d['detectable']['holm'] is not None]
    if not dets:
        return 'One seed per arm: no difference can be tested; run more seeds.'
    n = max(d['n'] for d in dets)
    lo, hi = min(d['holm'] for d in dets), max(d['holm'] for d in dets)
    lo1, hi1 = min(d['unadjusted'] for d in dets), max(d['unadjusted'] for d in dets)

    def span(a: float, b: float) -> str:
        lo_, hi_ = f'{a:.{digits}f}', f'{b:.{digits}f}'
        return lo_ if lo_ == hi_ else f'between {lo_} and {hi_}'

    text = (f'What {n} seeds can settle: at the spread seen here, a true difference of {span(lo, hi)} is found '
            f'with 80% power, depending on the difference (at its Holm rank in its family; {span(lo1, hi1)} tested '
            'alone); a smaller one is found less often than four times in five.')
    if n < 6 and r['statistics'].get('decided_by') != stats.RULES['t']:
        text += (f' With {n} seeds the sign-flip test cannot go below p = {2 / 2 ** n:.3g}, so no difference can be '
                 'called here: a verdict needs the sign-flip test too, and it needs at least 6 seeds, all pointing '
                 'one way, to reach p < 0.05.')
    powered = [(p['name'], d['power']) for p in r['points'] for d in p['diffs'].values() if d.get('power')]
    if powered:
        e = powered[0][1]['effect']
        text += (f' The power this design had for the planned difference of {e:g} at the spread observed (level '
                 f'{r["statistics"]["alpha"]:g} / {powered[0][1]["divisor"]}, Holm\'s first step): ' +
                 '; '.join(f'{name} {w["t"]:.0%} (t-test), {w["sign_flip"]:.0%} (sign-flip, simulated)'
                           for name, w in powered) + '.')
    return text


def _registration_lines(r: Mapping[str, Any]) -> str:
    """The report's first line: pre-registered (commit, date, file) or exploratory."""
    p = r.get('protocol')
    if not p:
        return ('**Exploratory.** No protocol was committed before these runs: their seeds, settings and tests were '
                'not fixed in advance, and the verdicts below are descriptive.')
    return (f'**Pre-registered** at commit {p["commit"][:12]} ({p["date"][:10]}): protocol `{p["path"]}` (blob '
            f'{p["blob"][:12]}); primary endpoint: {p["primary"].get("endpoint") or "the primary differences"}, '
            f'decided by {DECIDED_BY[p["primary"]["test"]]} with Holm across the primary family at '
            f'{float(p["primary"]["alpha"]):g}.')


def _deviation_lines(r: Mapping[str, Any]) -> List[str]:
    devs = r.get('deviations') or []
    machines = len(r.get('machines') or [])
    head = (f'**Deviations from the protocol:** {"none" if not devs else _count(len(devs), "deviation")}. The runs '
            f'trained on {_count(machines, "machine")}; both arms of a seed at one setting trained on the same '
            'machine except where listed.')
    return [head] + [f'- {d}' for d in devs]


def _time_line(r: Mapping[str, Any]) -> str:
    runs = sum(a['stats']['n'] for p in r['points'] for a in p['arms'].values())
    line = (f'Training time {r["train_time_s"] / 60:.1f} min summed over {runs} runs, measured as each run trained '
            f'({plural(r["jobs"], "run")} at a time, {plural(r["threads"], "thread")} each), torch {r["torch"]}.')
    if 'trained' in r:
        line += (f' This invocation trained {plural(r["trained"], "run")} and reused {r["reused"]} finished before; '
                 f'it took {r["wall_time_s"] / 60:.1f} min.')
    elif r.get('wall_time_s'):
        line += f' Wall time {r["wall_time_s"] / 60:.1f} min.'
    return line


def report_markdown(r: Mapping[str, Any]) -> str:
    """The comparison as markdown: one row per point and arm, the paired tests and verdicts, the machine."""
    higher = r['higher_is_better']
    adapter = ADAPTERS[r['task']]
    digits = adapter.digits
    n = len(r['seeds'])
    lines = [f'# {r["title"]}', '', _registration_lines(r), '']
    if r.get('context'):
        lines += [r['context'], '']
    lines += [f'Metric: {r["metric"]} on the validation split, after the last step; '
              f'{"higher" if higher else "lower"} is better. Mean ± standard deviation over {plural(n, "seed")} '
              f'{r["seeds"]}; a difference is paired by seed (same initialisation seed and batches for every arm).',
              '']
    train = adapter.train_metric
    head = '| setting | arm | model | params | MFLOPs (MACs) | blocks | layers | metric | − baseline |'
    lines += [head + (f' {train} | − baseline |' if train else ''),
              '|---|---|---|---|---|---|---|---|---|' + ('---|---|' if train else '')]
    for p in r['points']:
        for role, a in p['arms'].items():
            diff = '' if role == 'baseline' else _fmt(p['diffs'][role], digits, sign=True)
            macs = f'{a["macs"] / 1e6:.2f}' if a.get('macs') else '-'
            params = f'{a["params"] / 1e6:.3f}M' if a.get('params') else '-'
            row = (f'| {p["name"]} | {role} | {a["label"]} | {params} | {macs} | {a.get("blocks") or "-"} | '
                   f'{a.get("layers") or "-"} | {_fmt(a["stats"], digits)} | {diff} |')
            if train:
                tdiff = '' if role == 'baseline' else _fmt(p['diffs'].get(role + '_train', {'mean': None}), digits,
                                                           sign=True)
                row += f' {_fmt(a["train_stats"], digits)} | {tdiff} |'
            lines.append(row)
    st = r['statistics']
    fams = st.get('families') or {'report': st['differences']}
    family_words = (f'across all {_count(st["differences"], "tested difference")} of this report' if 'report' in fams
                    else 'within the primary family (' + _count(fams.get('primary', 0), 'difference') + ', the '
                    'protocol\'s endpoint) and, apart, within the secondary family (' +
                    _count(fams.get('secondary', 0), 'difference') + ')')
    lines += ['', f'**What this run shows.** Each difference is paired by seed and tested twice, two-sided: with the '
              'paired t-test (which assumes normal differences) and with the exact sign-flip test (which does not: '
              'every sign pattern of the differences is enumerated; ties, |d| below '
              f'{stats.TIE_TOLERANCE:g}, carry no sign). The p values are adjusted with Holm\'s method {family_words}; '
              'a difference is called ahead or behind only where the adjusted p of '
              f'{st.get("decided_by", DECIDED_BY["t"])} is below {st["alpha"]:g}. "detectable (80% power)" is the '
              'true difference these seeds would find four times in five at the spread observed: tested alone / at '
              'its Holm rank in its family.', '']
    lines += _verdict_rows(r, digits)
    lines += ['', _settles(r, digits)]
    if r.get('protocol'):
        lines += ['', *_deviation_lines(r)]
    capped = [(p['name'], a['label'], a['capped']) for p in r['points'] for a in p['arms'].values() if a['capped']]
    if capped:
        lines.append('')
    for name, label, seeds in capped:
        lines.append(f'- {name} / {label} stopped at the time limit for seeds {seeds}: it saw fewer tokens than '
                     'planned (use a fixed step count for equal data).')
    lines += ['', '![curves](curves.png)', '']
    if any(p['x'] is not None for p in r['points']):
        lines += ['![depth](depth.png)', '']
    lines += [stats.machine_sentence(r.get('machines') or [], r.get('runs_without_machine', 0)), '', _time_line(r)]
    return '\n'.join(lines) + '\n'


def _role_colours(roles) -> Dict[str, str]:
    """One colour per arm role: the baseline grey, Steps arms warm, controls green, anything else from a cycle."""
    fixed = {'baseline': '#404040', 'control': 'tab:green'}
    warm = iter(['#e07040', '#3070c0', '#a040a0', '#c0a000'])
    return {role: fixed.get(role) or next(warm, 'k') for role in roles}


def _plot_curves(r: Mapping[str, Any], path: str) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from matplotlib.ticker import EngFormatter, MaxNLocator
    points = r['points']
    fig, axes = plt.subplots(1, len(points), figsize=(5 * len(points), 3.8), squeeze=False)
    colours = _role_colours(dict.fromkeys(role for p in points for role in p['arms']))
    for ax, point in zip(axes[0], points):
        for role, arm in point['arms'].items():
            for i, curve in enumerate(c for c in arm['curves'].values() if c):
                ax.plot(*zip(*curve), color=colours[role], marker='o', ms=2, lw=1, alpha=0.7,
                        label=arm['label'] if i == 0 else None)
        ax.set(title=point['name'], xlabel=ADAPTERS[r['task']].seen, ylabel=r['metric'])
        # few ticks in engineering notation (42k, 1.2M): raw counts overlap at this width
        ax.xaxis.set_major_locator(MaxNLocator(5))
        ax.xaxis.set_major_formatter(EngFormatter(sep=''))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)


def _plot_depth(r: Mapping[str, Any], path: str) -> None:
    """Fig. 1 axes: metric against layers, one line per arm, markers sized by FLOPs, error bars = std."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4.2))
    roles = dict.fromkeys(role for p in r['points'] for role in p['arms'])
    colours = _role_colours(roles)
    styles = ['-', '--', ':', '-.']
    macs = [a['macs'] for p in r['points'] for a in p['arms'].values() if a.get('macs')]
    scale = 400 / max(macs) if macs else 1.0
    for role in roles:
        pts = [(p['arms'][role]['layers'], p['arms'][role]['stats'], p['arms'][role].get('macs') or 0,
                p['arms'][role]['label']) for p in r['points'] if role in p['arms'] and p['arms'][role]['layers']]
        pts = [t for t in pts if t[1]['mean'] is not None]
        if not pts:
            continue
        xs, ys = [t[0] for t in pts], [t[1]['mean'] for t in pts]
        errs = [t[1]['std'] or 0.0 for t in pts]
        ax.errorbar(xs, ys, yerr=errs, color=colours[role], lw=1.5, capsize=3,
                    ls=styles[list(roles).index(role) % len(styles)], label='Steps' if role == 'steps' else role)
        ax.scatter(xs, ys, s=[max(20.0, t[2] * scale) for t in pts], color=colours[role], alpha=0.5,
                   edgecolor='k', zorder=3)
    ax.set(xlabel='#layers', ylabel=r['metric'], title='accuracy against depth (marker area: FLOPs)')
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


# ----------------------------------------------------------------------------------------------------------------
# The built-in comparisons


DEPTH_RECIPE = os.path.join('cls', 'depth_digits.yaml')


def default_config_path(recipe: str) -> Optional[str]:
    """The recipe a comparison starts from: a task's (:attr:`TaskAdapter.recipe`, e.g. ``configs/lm/cpu.yaml``)
    or a path under ``configs/`` (the depth comparison's ``cls/depth_digits.yaml``); None when not installed."""
    path = os.path.join(REPO, 'configs', ADAPTERS[recipe].recipe if recipe in ADAPTERS else recipe)
    return path if os.path.isfile(path) else None


def _config(task: str, path: Optional[str], overrides: Mapping[str, Any], recipe: Optional[str] = None):
    path = path or default_config_path(recipe or task)
    if path is None:
        raise FileNotFoundError(f'no recipe for {task!r}: pass --config (the package was installed without configs/)')
    return ADAPTERS[task].load_config(path, **{k: v for k, v in overrides.items() if v is not None})


def depth_comparison(
        blocks: Sequence[int] = (4, 12),
        width: int = 80,
        heads: int = 4,
        seeds: Sequence[int] = (0, 1, 2),
        config: Optional[str] = None,
        overrides: Optional[Mapping[str, Any]] = None,
        pairings: Sequence[str] = ('compute',),
        out: str = os.path.join('runs', 'compare'),
        jobs: int = 2,
        threads: Optional[int] = 1,
) -> Comparison:
    """The paper's Fig. 1 in miniature: residual DeiT-like trunks against Steps trunks, shallow and deep.

    Each point is a residual trunk of ``L`` blocks at ``width``; its Steps arm is paired by ``pairings``
    (``compute``: the Table 1 twin, equal parameters and FLOPs and twice the blocks; ``blocks``: the same number
    of blocks, half the FLOPs). Every arm trains with the same recipe (``configs/cls/depth_digits.yaml``: the
    embedded digits at 32x32, patch 8, 10 epochs), data order and seeds.

    The defaults are the main job (``make run``): 4 and 12 blocks, 3 seeds, the recipe's 10 epochs (12 runs, 2 at
    a time); its report says what 3 seeds can and cannot settle.
    """
    cfg = _config('cls', config, dict(overrides or {}), DEPTH_RECIPE)
    img = cfg.img_size or 32
    points = []
    for depth in blocks:
        arms = []
        for role, kind, pairing in [('baseline', 'residual', 'compute')] + [('steps', 'steps', p) for p in pairings]:
            name, kw = deit_trunk_config(depth, kind, width, heads, img, cfg.model_kwargs.get('patch_size', 8),
                                         pairing)
            kw = {k: v for k, v in kw.items() if k != 'img_size'}
            n = depth if kind == 'residual' else (2 * depth if pairing == 'compute' else depth)
            label = f'{"DeiT-like" if kind == "residual" else "Steps-DeiT-like"} {n} blocks'
            role_name = role if len(pairings) == 1 or kind == 'residual' else f'steps_{pairing}'
            arms.append(Arm(role_name, label, dict(model=name, model_kwargs={**cfg.model_kwargs, **kw})))
        points.append(Point(f'{depth} residual blocks', arms, x=depth))
    context = (f'The paper\'s Fig. 1 in miniature: DeiT-like trunks of width {width} ({heads} heads) on the embedded '
               f'digits (32x32, patch 8), residual against Steps ({", ".join(pairings)} pairing; the Table 1 '
               'pairing `compute` gives the Steps twin the residual trunk\'s parameters and FLOPs and twice its '
               f'blocks), {cfg.epochs} epochs each. The paper (ImageNet, 120-480 layers) finds DeiT saturating '
               'near 75.7% while Steps-DeiT keeps improving to 80.0%. What these numbers mean at this scale, and the '
               f'larger pilot with both pairings, are in docs/analyses.md of the repository.')
    return Comparison('cls', cfg, points, seeds, out, 'Depth: residual against Steps (Fig. 1 in miniature)',
                      context, jobs, threads)


def lm_comparison(
        baseline: str = 'gpt_cpu',
        steps: str = 'steps_gpt_cpu',
        seeds: Sequence[int] = (0,),
        config: Optional[str] = None,
        overrides: Optional[Mapping[str, Any]] = None,
        minutes: Optional[float] = None,
        out: str = os.path.join('runs', 'compare-lm'),
        jobs: int = 1,
        threads: Optional[int] = None,
) -> Comparison:
    """The residual LM against its Steps twin on the same tokens (``configs/lm/cpu.yaml`` by default).

    With ``minutes`` the step count is what the slower model does in that time (measured on a few steps of each,
    through the same training loop), and a time limit 5% above it guards the budget; without it the recipe's
    ``max_iters`` is the budget.
    """
    cfg = _config('lm', config, dict(overrides or {}))
    lm_task.ensure_data(cfg.data_dir)
    if minutes is not None:
        if minutes <= 0:
            raise ValueError(f'minutes must be > 0, got {minutes}')
        per_step = max(_step_seconds(dataclasses.replace(cfg, model=m)) for m in (baseline, steps))
        # the slower model sets the shared step count; 8% of the time is kept for step-time noise
        cfg = dataclasses.replace(cfg, max_iters=max(1, int(minutes * 60 * 0.92 / per_step)),
                                  time_limit=minutes * 60 * 1.05)
    cfg = dataclasses.replace(cfg, warmup_iters=min(cfg.warmup_iters, max(1, cfg.max_iters // 10)),
                              eval_interval=max(1, min(cfg.eval_interval, cfg.max_iters // 6)))
    arms = [Arm('baseline', baseline, dict(model=baseline)), Arm('steps', steps, dict(model=steps))]
    data = lm_task.TokenData.open(cfg.data_dir)
    p = {a.role: create_lm(a.overrides['model'], vocab_size=data.vocab_size, **cfg.model_kwargs).num_params()
         for a in arms}
    if abs(p['steps'] - p['baseline']) > 0.02 * p['baseline']:
        print(f'warning: {baseline} has {p["baseline"]:,} parameters and {steps} {p["steps"]:,}; a fair comparison '
              'needs equal counts', flush=True)
    context = (f'Both models train {cfg.max_iters} steps of {cfg.batch_size * cfg.grad_accum} x '
               f'{cfg.block_size or "context"} tokens on the same batches of `{cfg.data_dir}`. At this scale the '
               'comparison measures early training more than depth; the sweep over depth, budget, learning rate and '
               'width in the repository\'s docs/language-modelling.md says which factors move the gap.')
    return Comparison('lm', cfg, [Point('lm', arms)], seeds, out, f'Language model: {steps} against {baseline}',
                      context, jobs, threads)


def _step_seconds(cfg: lm_task.LMConfig, steps: int = 4) -> float:
    """Seconds per training step of ``cfg``'s model: a few steps of the real loop in a throw-away folder."""
    with tempfile.TemporaryDirectory() as tmp:
        s = lm_task.train_lm(dataclasses.replace(
            cfg, out_dir=tmp, max_iters=steps, eval_interval=steps, eval_iters=1, final_eval_windows=0,
            log_interval=steps, checkpoint_interval=steps, resume=None, progress=False, tensorboard=False,
            time_limit=None))
    return s['train_time_s'] / steps


# the plain twin of the tiny Steps-ResNet (one step per stage): the default baseline of `compare cls`
PLAIN_TWIN_KWARGS = dict(num_steps=(1, 1, 1, 1), steps_move=(0, 0, 0, 0))


def cls_comparison(
        baseline: str = 'test_steps_resnet',
        steps: str = 'test_steps_resnet',
        baseline_kwargs: Optional[Mapping[str, Any]] = None,
        steps_kwargs: Optional[Mapping[str, Any]] = None,
        seeds: Sequence[int] = (0,),
        config: Optional[str] = None,
        overrides: Optional[Mapping[str, Any]] = None,
        out: str = os.path.join('runs', 'compare-cls'),
        jobs: int = 1,
        threads: Optional[int] = None,
) -> Comparison:
    """A classifier against its Steps version on the same images (``configs/cls/digits_cpu.yaml`` by default).

    Without ``baseline_kwargs``, the default pair is the tiny Steps-ResNet against its plain twin (one step per
    stage: a ResNet of the same widths and depths).
    """
    cfg = _config('cls', config, dict(overrides or {}))
    plain_twin = baseline_kwargs is None and baseline == steps == 'test_steps_resnet'
    if plain_twin:
        baseline_kwargs = PLAIN_TWIN_KWARGS
    # the arms' names say what differs when both are one registered model with other arguments
    base_label = (f'{baseline} as a plain residual network (one step per stage)' if plain_twin else
                  baseline + (f' {dict(baseline_kwargs)}' if baseline_kwargs else ''))
    steps_label = steps + (f' {dict(steps_kwargs)}' if steps_kwargs else '')
    if base_label == steps_label:
        raise ValueError(f'the baseline and the Steps arm are the same model ({steps_label}); give --baseline or '
                         '--baseline-kwargs / --steps-kwargs that differ')
    arms = [Arm('baseline', base_label,
                dict(model=baseline, model_kwargs={**cfg.model_kwargs, **dict(baseline_kwargs or {})})),
            Arm('steps', steps_label, dict(model=steps, model_kwargs={**cfg.model_kwargs, **dict(steps_kwargs or {})}))]
    context = (f'Both models train {cfg.epochs} epochs of `{cfg.dataset}` with the same recipe and images. '
               'Parameter and FLOP counts are in the table; see the repository\'s docs/classification.md.')
    return Comparison('cls', cfg, [Point(cfg.dataset, arms)], seeds, out,
                      f'Classification: {steps_label} against {base_label}', context, jobs, threads)


# the comparisons of `stepsnet compare TASK`
COMPARISONS: Dict[str, Callable[..., Comparison]] = {'depth': depth_comparison, 'lm': lm_comparison,
                                                    'cls': cls_comparison}


# ----------------------------------------------------------------------------------------------------------------
# Pre-registered comparisons and power plans


def protocol_comparison(protocol: Any) -> Comparison:
    """The comparison a protocol (:class:`stepsnet.config.protocol.Protocol`) fixes: its built-in comparison with
    its arguments, recipe, settings, seeds and output folder, nothing else."""
    config = os.path.join(REPO, 'configs', protocol.recipe) if protocol.recipe else None
    try:
        return COMPARISONS[protocol.comparison](**protocol.arguments, seeds=protocol.seeds, config=config,
                                                overrides=protocol.settings, out=protocol.out)
    except TypeError as e:
        raise ValueError(f'protocol {protocol.path!r}: its arguments do not fit the {protocol.comparison!r} '
                         f'comparison ({e})') from None


def run_protocol(path: str, progress: bool = True, train: bool = True) -> Dict[str, Any]:
    """Run a pre-registered comparison exactly as its committed protocol file says, and report it as such.

    Training refuses a protocol file that is not committed, differs from its committed version or was changed by a
    later commit, and a checkout that is not at the protocol's commit or has uncommitted code (train from a
    ``git worktree`` at that commit, so that other work can go on meanwhile). ``train=False`` reports the runs
    finished so far from any checkout, with the deviations (runs not finished yet among them).

    Raises:
        ProtocolError: As above (a ``ValueError``: the CLI prints it in one line).
    """
    from stepsnet.config.protocol import ProtocolError, check_code_committed, load_protocol, registration
    protocol = load_protocol(path)
    reg = registration(path)
    if train:
        if reg['head'] != reg['commit']:
            raise ProtocolError(f'protocol {reg["path"]!r} was registered at {reg["commit"][:12]} but the checkout is '
                                f'at {reg["head"][:12]}; every run trains at the protocol\'s commit: git worktree add '
                                f'DIR {reg["commit"][:12]}, then run it from DIR')
        check_code_committed(REPO)
    comp = protocol_comparison(protocol)
    comp.title = f'{comp.title}: pre-registered replication `{protocol.name}`'
    return run_comparison(comp, progress=progress, train=train, protocol={**protocol.summary(), **reg})


def power_plan(path: str, effect: float, power: float = stats.POWER, alpha: float = stats.ALPHA,
               family: Optional[int] = None) -> List[Dict[str, Any]]:
    """The seeds a new comparison needs to find a true difference ``effect`` with ``power``, from the per-seed
    spread of an earlier report (``path``: its ``results.json`` or folder).

    For every difference of the report: its observed standard deviation and seeds, the seeds needed by the paired
    t-test alone and at ``alpha / family`` (Holm's first step in a family of ``family`` tests, default: the number
    of validation differences of the report), and the simulated power of the sign-flip test at that many seeds.
    """
    if os.path.isdir(path):
        path = os.path.join(path, 'results.json')
    r = _read_json(path)
    if r is None:
        raise FileNotFoundError(f'no results file {path!r}; expected the results.json of a comparison')
    if effect <= 0:
        raise ValueError(f'effect must be > 0 (in the metric\'s units), got {effect}')
    if not 0 < power < 1:
        raise ValueError(f'power must be between 0 and 1, got {power}')
    rows = []
    m = family or sum(1 for p in r['points'] for role in p['diffs'] if not role.endswith('_train'))
    for p in r['points']:
        for role, d in p['diffs'].items():
            t = stats.paired_test(list(d['per_seed'].values()) if 'per_seed' in d else d['values'])
            if t.std is None:
                continue
            alone = stats.seeds_for_power(effect, t.std, alpha, 1, power)
            holm = stats.seeds_for_power(effect, t.std, alpha, m, power)
            rows.append(dict(setting=p['name'], difference=role, n=t.n, std=t.std, seeds_alone=alone,
                             seeds_family=holm, family=m,
                             sign_flip_power=stats.sign_flip_power(effect, t.std, holm, alpha, m)))
    return rows


def plan_markdown(rows: Sequence[Mapping[str, Any]], effect: float, power: float, alpha: float, path: str) -> str:
    """:func:`power_plan` as a markdown table with a sentence on how it was computed."""
    if not rows:
        return f'{path}: no difference with two or more seeds; nothing to plan from.'
    m = rows[0]['family']
    lines = [f'Seeds for {power:.0%} power to find a true difference of {effect:g}, from the spread of {path} '
             f'(paired t-test, non-central t; level {alpha:g} alone and {alpha:g} / {m}, Holm\'s first step in a '
             f'family of {m}; the sign-flip test\'s power at the family\'s count simulated with normal differences):',
             '', '| setting | difference | seeds seen | sd | seeds, alone | seeds, in the family | sign-flip power |',
             '|---|---|---|---|---|---|---|']
    for row in rows:
        lines.append(f'| {row["setting"]} | {row["difference"]} | {row["n"]} | {row["std"]:.3f} | '
                     f'{row["seeds_alone"]} | {row["seeds_family"]} | {row["sign_flip_power"]:.0%} |')
    return '\n'.join(lines)
