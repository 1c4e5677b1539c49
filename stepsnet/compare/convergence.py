"""Has a comparison's training converged? Each arm's final training metric against the same arm trained twice as long.

A model that still learns at the end of its run says little about the architecture: two arms can differ because one
learns faster, not because it ends better. The check is the plain one: train the same comparison (same recipe, arms
and seeds) with twice the epochs (or steps), once, keep its ``results.json`` as the *reference*, and compare every
arm's final training metric (measured again on the training data with the final weights, no augmentation) with the
reference's, seed by seed. An arm has converged when it ends within ``tolerance`` (1 point of top-1 by default) of
what twice the training reaches, on the mean over seeds; the worst seed is reported beside it.

:func:`convergence` checks that the reference is that comparison (same task, points, arms, seeds, and a recipe that
differs only in its length, doubled) and returns the per-arm table that :func:`stepsnet.compare.report` writes
(``results.json``'s ``convergence``). A reference that does not match is not used: the section says why.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Dict, List, Mapping, Optional

from stepsnet.utils.tasks import TASKS

# what sets a run's length, per task: the field doubled in the reference
LENGTH_FIELD = {t.name: t.length_field for t in TASKS.values()}
# recipe fields that do not change what a run learns (where it writes, how it reports), and the recipe's seed (a
# comparison sets each run's seed; its seeds are compared apart): not compared
IGNORED_FIELDS = frozenset({'seed', 'out_dir', 'resume', 'progress', 'tensorboard', 'log_interval',
                            'checkpoint_interval', 'data_dir', 'workers', 'threads', 'dry_run', 'synthetic_data',
                            'device', 'time_limit', 'eval_interval', 'checkpoint_hist'})
TOLERANCE = 1.0


def load_reference(path: str) -> Dict[str, Any]:
    """The reference's results (``path``: its ``results.json`` or the folder holding it).

    Raises:
        FileNotFoundError: Nothing there, with what to run to make it.
    """
    file = os.path.join(path, 'results.json') if os.path.isdir(path) else path
    if not os.path.isfile(file):
        raise FileNotFoundError(f'no convergence reference at {path!r}: train the same comparison with twice the '
                                'epochs (e.g. --set epochs=2N --out DIR) and pass DIR')
    with open(file) as f:
        return json.load(f)


def skeleton(comp: Any) -> Dict[str, Any]:
    """What a comparison's results will hold of its design (task, recipe, seeds, points and arms), before any run:
    enough for :func:`mismatch` to check a reference ahead of training."""
    return dict(task=comp.task, config=dataclasses.asdict(comp.config), seeds=[int(s) for s in comp.seeds],
                points=[dict(name=p.name, arms={a.role: dict(label=a.label, overrides=a.overrides) for a in p.arms})
                        for p in comp.points])


def mismatch(r: Mapping[str, Any], ref: Mapping[str, Any]) -> Optional[str]:
    """Why ``ref`` is not comparison ``r`` (its results or :func:`skeleton`) trained twice as long, or None."""
    r = json.loads(json.dumps(r))  # as results.json holds it: tuples as lists, seed keys as strings
    if ref.get('task') != r.get('task'):
        return f'it is a {ref.get("task")!r} comparison, this one {r.get("task")!r}'
    length = LENGTH_FIELD.get(r['task'])
    if length is None:
        return f'no length field is known for task {r["task"]!r}'
    mine, theirs = r['config'].get(length), ref['config'].get(length)
    if not mine or theirs != 2 * mine:
        return f'its {length} is {theirs}, not twice this run\'s {mine}'
    for key in sorted(set(r['config']) | set(ref['config'])):
        if key in IGNORED_FIELDS or key == length:
            continue
        if r['config'].get(key) != ref['config'].get(key):
            return f'its recipe differs in {key!r} ({ref["config"].get(key)!r}, here {r["config"].get(key)!r})'
    theirs_points = {p['name']: p for p in ref['points']}
    for p in r['points']:
        q = theirs_points.get(p['name'])
        if q is None:
            return f'it has no point {p["name"]!r}'
        for role, arm in p['arms'].items():
            other = q['arms'].get(role)
            if other is None or other.get('overrides') != arm.get('overrides'):
                return f'its {p["name"]} / {role} arm is another model'
    if not set(map(str, r['seeds'])) <= set(map(str, ref['seeds'])):
        return f'it lacks seeds of this run (it has {ref["seeds"]}, this run {r["seeds"]})'
    return None


def convergence(r: Mapping[str, Any], ref: Mapping[str, Any], source: str,
                tolerance: float = TOLERANCE) -> Dict[str, Any]:
    """The convergence check of comparison results ``r`` against ``ref`` (the same comparison, twice the training).

    Returns:
        ``source``, ``tolerance``, the length field and both lengths, then either ``arms``: one
        entry per point and arm with the training metric here and in the reference per seed, their means, the mean
        and worst ``shortfall`` (reference minus here, in the direction of better) and ``converged``; ``all``:
        whether every arm converged; or ``unusable``: why the reference was not used.
    """
    length = LENGTH_FIELD.get(r['task'], 'length')
    out: Dict[str, Any] = dict(source=source, tolerance=tolerance, length=length,
                               here=r['config'].get(length), reference=ref.get('config', {}).get(length))
    why = mismatch(r, ref)
    if why:
        out['unusable'] = why
        return out
    sign = 1.0 if r['higher_is_better'] else -1.0
    theirs_points = {p['name']: p for p in ref['points']}
    arms: List[Dict[str, Any]] = []
    for p in r['points']:
        for role, arm in p['arms'].items():
            other = theirs_points[p['name']]['arms'][role]
            here, there = _train_per_seed(arm), _train_per_seed(other)
            seeds = [s for s in here if s in there]
            if not seeds:
                arms.append(dict(point=p['name'], role=role, label=arm['label'], seeds=[], converged=None))
                continue
            gaps = [sign * (there[s] - here[s]) for s in seeds]
            shortfall = sum(gaps) / len(gaps)
            val = {str(k): float(v) for k, v in (other.get('per_seed') or {}).items()}
            arms.append(dict(point=p['name'], role=role, label=arm['label'], seeds=seeds,
                             here={s: here[s] for s in seeds}, reference_values={s: there[s] for s in seeds},
                             here_mean=_mean([here[s] for s in seeds]), reference_mean=_mean([there[s] for s in seeds]),
                             reference_val_mean=_mean([val[s] for s in seeds if s in val]),
                             shortfall=shortfall, worst=max(gaps), converged=shortfall <= tolerance))
    out['arms'] = arms
    out['all'] = bool(arms) and all(a['converged'] for a in arms)
    return out


def _train_per_seed(arm: Mapping[str, Any]) -> Dict[str, float]:
    """An arm's training metric per seed (seed keys as strings, as ``results.json`` stores them)."""
    values = arm.get('train_per_seed')
    if values is None:  # results written before the per-seed training metric was kept: only complete lists map
        stats_ = arm.get('train_stats') or {}
        seeds = list((arm.get('per_seed') or {}).keys())
        vals = stats_.get('values') or []
        values = dict(zip(seeds, vals)) if len(vals) == len(seeds) else {}
    return {str(s): float(v) for s, v in values.items() if v is not None}


def _mean(values: List[float]) -> Optional[float]:
    return sum(values) / len(values) if values else None


def convergence_lines(c: Mapping[str, Any], digits: int, metric: str = 'training metric') -> List[str]:
    """The report's convergence section (markdown lines); ``metric`` names the training metric."""
    unit = (' point' if c['tolerance'] == 1 else ' points') if 'top-1' in metric else ''
    head = (f'**Convergence.** Each arm\'s final {metric}, with its final weights, against the same arm trained '
            f'with twice the {c["length"]} ({c["reference"]} instead of {c["here"]}; the reference '
            f'`{c["source"]}`). An arm has converged when it ends within {c["tolerance"]:g}{unit} of the reference, '
            'on the mean over seeds; the worst seed is shown beside the mean.')
    if 'unusable' in c:
        return [head, '', f'No statement: the reference does not match this comparison ({c["unusable"]}).']
    f = f'{{:.{digits}f}}'
    rows = ['| setting | arm | training here | with twice the ' + c['length'] + ' | shortfall (mean / worst seed) | '
            'held out, with twice the ' + c['length'] + ' | converged |', '|---|---|---|---|---|---|---|']
    for a in c['arms']:
        if not a['seeds']:
            rows.append(f'| {a["point"]} | {a["label"]} | - | - | - | - | no seed in both |')
            continue
        val = f.format(a['reference_val_mean']) if a.get('reference_val_mean') is not None else '-'
        rows.append(f'| {a["point"]} | {a["label"]} | {f.format(a["here_mean"])} | {f.format(a["reference_mean"])} | '
                    f'{a["shortfall"]:+.{digits}f} / {a["worst"]:+.{digits}f} | {val} | '
                    f'{"yes" if a["converged"] else "**no**: still learning"} |')
    done = sum(bool(a['converged']) for a in c['arms'])
    tail = (f'{done} of {len(c["arms"])} arms converged by this rule.' + (
        '' if c['all'] else ' An arm that has not converged is compared before the end of its learning: read its '
        'difference as one of speed as much as of where it ends.'))
    return [head, '', *rows, '', tail]
