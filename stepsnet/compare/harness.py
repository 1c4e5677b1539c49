"""The comparison harness: what a comparison is (points, arms, seeds), how each task enters it (:class:`TaskAdapter`),
and its runs: trained side by side and resumably (:func:`train_runs`), read back (:func:`read_result`) and collected
into the per-point, per-arm results that :mod:`stepsnet.compare.report` judges and writes."""
from __future__ import annotations

import concurrent.futures as cf
import io
import json
import multiprocessing as mp
import os
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

import numpy as np
import torch

from stepsnet import stats
from stepsnet.compare.adapter import TaskAdapter
from stepsnet.engine import RESULTS
from stepsnet.utils.checkpoint import atomic_write_text
from stepsnet.utils.meta import on_meta
from stepsnet.utils.provenance import machine_info
from stepsnet.utils.tasks import TASKS, resolve

# the key of a run's results.json under which the harness keeps what it adds to the engine's results
SECTION = 'comparison'
# a run's results in a run folder of an earlier release (the harness's keys alone), still read
EARLIER_RESULT = 'result.json'
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


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
        reference: The ``results.json`` (or its folder) of this comparison trained with twice the epochs or steps:
            the report then says whether each arm has converged (:mod:`stepsnet.compare.convergence`).
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
    reference: Optional[str] = None

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
# The tasks: what the harness needs to know of each (its adapter, named by the task's row of the task table)

ADAPTERS: Dict[str, TaskAdapter] = {t.name: resolve(t.compare) for t in TASKS.values() if t.compare}


def _check_arm(task: str, cfg: Any) -> None:
    """Build the arm's model on the meta device (no memory, no compute): a bad setting fails before any training."""
    with on_meta():
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
    mean, std, n = stats.mean_sd(values)
    return dict(mean=mean, std=std, n=n, values=[float(v) for v in values if v is not None])


def _run_dir(comp: Comparison, point: Point, arm: Arm, seed: int) -> str:
    return os.path.join(comp.out, point.name.replace(' ', '_'), arm.role, f'seed{seed}')
