"""Residual against Steps, for every task: seeds x arms (x points), paired statistics, one report.

A comparison is a list of *points* (one setting, e.g. a depth), each with *arms* (``baseline``, ``steps``,
sometimes a ``control``), trained with the same recipe, data and seeds; only the model differs. Every run goes
into ``OUT/<point>/<arm>/seed<k>`` as an ordinary training run of its task, with ``resume='auto'``: a comparison
that is stopped and started again continues its unfinished runs and skips the finished ones (each leaves a
``result.json``). Results, in ``OUT``:

* ``results.json``: per point and arm the model, its parameters, FLOPs, blocks and layers, the metric per seed,
  mean and standard deviation; per point the paired differences to the baseline (same seed: same
  initialisation seed, same batches), their mean and standard deviation;
* ``report.md``: the table and what it shows, in words, with a link to the documentation that puts it in context;
* ``curves.png`` (validation metric against data seen, every run) and, for comparisons over depth,
  ``depth.png`` (the paper's Fig. 1 axes: metric against layers, markers sized by FLOPs).

Three comparisons are built in (``stepsnet compare TASK``): :func:`depth_comparison` (the paper's Fig. 1 in
miniature on the embedded digits: DeiT-like trunks, residual against the Steps twin of equal parameters and
FLOPs at a shallow and a deep setting), :func:`lm_comparison` and :func:`cls_comparison`.
"""
from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import json
import math
import multiprocessing as mp
import os
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

import numpy as np
import torch

from stepsnet.analysis.complexity import count_blocks, count_flops, count_layers, count_params
from stepsnet.models.factory import create_classifier, deit_trunk_config
from stepsnet.models.steps_gpt import GPT, lm_config
from stepsnet.tasks import classification as cls_task
from stepsnet.tasks import lm as lm_task
from stepsnet.utils.checkpoint import atomic_write_text
from stepsnet.utils.provenance import machine_info

__all__ = ['Arm', 'Point', 'Comparison', 'run_comparison', 'depth_comparison', 'lm_comparison', 'cls_comparison',
           'TASKS', 'default_config_path', 'paired_stats']

RESULT = 'result.json'
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
        task: ``lm`` or ``cls``: whose training function runs each arm.
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
        if self.task not in ('lm', 'cls'):
            raise ValueError(f"task must be 'lm' or 'cls', got {self.task!r}")
        if not self.seeds:
            raise ValueError('seeds must name at least one seed')
        if self.jobs < 1:
            raise ValueError(f'jobs must be >= 1, got {self.jobs}')
        for p in self.points:
            if not any(a.role == 'baseline' for a in p.arms):
                raise ValueError(f'point {p.name!r} has no baseline arm')


# ----------------------------------------------------------------------------------------------------------------
# One run of an arm


def _describe_classifier(cfg: cls_task.ClassificationConfig, num_classes: int = 10) -> Dict[str, Any]:
    img = cls_task.data_config(cfg)['input_size']
    net = create_classifier(cfg.model, num_classes, img[-1], **cfg.model_kwargs)
    plan = [str(m.plan) for m in net.modules() if hasattr(m, 'plan') and hasattr(m, 'truncate')]
    return dict(params=count_params(net), macs=count_flops(net, img), blocks=count_blocks(net),
                layers=count_layers(net), plan='; '.join(plan))


def _run_cls(cfg: cls_task.ClassificationConfig) -> Dict[str, Any]:
    s = cls_task.train_classification(cfg)
    curve = [(h['images_seen'], h['val_top1']) for h in s['history']]
    # the final weights on the training images, without augmentation (the paper's Fig. 1 shows both)
    train = cls_task.validate_classification(
        os.path.join(cfg.out_dir, 'last.pth'), dataset=cfg.dataset, data_dir=cfg.data_dir, split=cfg.train_split,
        batch_size=256, workers=0, device=cfg.device, progress=False)
    return dict(metric=s['final_top1'], loss=s['final_val_loss'], best=s['best_top1'],
                train_loss=s['final_train_loss'], train_metric=train['top1'], seen=s['images_seen'],
                train_time=s['train_seconds_total'], curve=curve, **_describe_classifier(cfg))


def _run_lm(cfg: lm_task.LMConfig) -> Dict[str, Any]:
    s = lm_task.train_lm(cfg)
    curve = [(h['tokens_seen'], h['val_loss']) for h in s['history'] if 'val_loss' in h]
    return dict(metric=s['final'].get('loss'), bpb=s['final'].get('bpb'), seen=s['tokens_seen'],
                steps=s['iters'], stopped_by_time=s['stopped_by_time'], train_time=s['train_time_s'],
                tokens_per_s=s['tokens_per_s'], curve=curve, params=s['params'], macs=s['flops_per_token'],
                blocks=s['blocks'], layers=5 * s['blocks'], plan=s['plan'])


METRICS = {'cls': ('val top-1 (%)', True), 'lm': ('val loss (nats/token)', False)}
_RUNNERS: Dict[str, Callable[[Any], Dict[str, Any]]] = {'cls': _run_cls, 'lm': _run_lm}


def _check_arm(task: str, cfg: Any) -> None:
    """Build the arm's model on the meta device (no memory, no compute): a bad setting fails before any training."""
    with torch.device('meta'):
        if task == 'cls':
            create_classifier(cfg.model, 10, cls_task.data_config(cfg)['input_size'][-1], **cfg.model_kwargs)
        else:
            model = lm_config(cfg.model, **cfg.model_kwargs)
            model.plan()
            if cfg.block_size and cfg.block_size > model.block_size:
                raise ValueError(f'training context block_size={cfg.block_size} is longer than the model '
                                 f'{cfg.model!r} context {model.block_size}; expected at most {model.block_size}')


def _train_arm(task: str, cfg: Any, run_dir: str, threads: Optional[int]) -> Dict[str, Any]:
    """Train (or finish) one run; write and return its result."""
    if threads:
        torch.set_num_threads(threads)
    t0 = time.time()
    result = _RUNNERS[task](cfg)
    result['wall_time_s'] = time.time() - t0
    result['machine'] = machine_info()
    atomic_write_text(os.path.join(run_dir, RESULT), json.dumps(result, indent=2))
    return result


# ----------------------------------------------------------------------------------------------------------------
# The harness


def paired_stats(values: Sequence[float]) -> Dict[str, Any]:
    """Mean, sample standard deviation (ddof 1; None for one value) and the values."""
    arr = np.asarray([v for v in values if v is not None], dtype=np.float64)
    return dict(mean=float(arr.mean()) if arr.size else None,
                std=float(arr.std(ddof=1)) if arr.size > 1 else None, n=int(arr.size), values=arr.tolist())


def _run_dir(comp: Comparison, point: Point, arm: Arm, seed: int) -> str:
    return os.path.join(comp.out, point.name.replace(' ', '_'), arm.role, f'seed{seed}')


def run_comparison(comp: Comparison, progress: bool = True) -> Dict[str, Any]:
    """Train every (point, arm, seed) that has no result yet, then write ``results.json``, ``report.md`` and plots.

    Returns:
        The content of ``results.json``.
    """
    t0 = time.time()
    jobs = []
    for seed in comp.seeds:
        for point in comp.points:
            for arm in point.arms:
                run_dir = _run_dir(comp, point, arm, seed)
                if os.path.isfile(os.path.join(run_dir, RESULT)):
                    continue
                fields = dict(arm.overrides, seed=int(seed), out_dir=run_dir, resume='auto', tensorboard=False,
                              progress=progress and comp.jobs == 1)
                jobs.append((point, arm, seed, run_dir, dataclasses.replace(comp.config, **fields)))
    for *_, cfg in jobs:
        _check_arm(comp.task, cfg)
    if jobs:
        print(f'{comp.title}: {len(jobs)} run(s) to train, {comp.jobs} at a time -> {comp.out}', flush=True)
    if comp.jobs == 1:
        for point, arm, seed, run_dir, cfg in jobs:
            r = _train_arm(comp.task, cfg, run_dir, comp.threads)
            _print_done(point, arm, seed, r)
    elif jobs:
        with cf.ProcessPoolExecutor(comp.jobs, mp_context=mp.get_context('spawn')) as pool:
            futures = {pool.submit(_train_arm, comp.task, cfg, run_dir, comp.threads): (point, arm, seed)
                       for point, arm, seed, run_dir, cfg in jobs}
            for fut in cf.as_completed(futures):
                point, arm, seed = futures[fut]
                _print_done(point, arm, seed, fut.result())
    results = _collect(comp, time.time() - t0)
    os.makedirs(comp.out, exist_ok=True)
    atomic_write_text(os.path.join(comp.out, 'results.json'), json.dumps(results, indent=2))
    _plot_curves(comp, results, os.path.join(comp.out, 'curves.png'))
    if any(p.x is not None for p in comp.points):
        _plot_depth(results, os.path.join(comp.out, 'depth.png'))
    report = report_markdown(results)
    atomic_write_text(os.path.join(comp.out, 'report.md'), report)
    print(report)
    return results


def _print_done(point: Point, arm: Arm, seed: int, r: Mapping[str, Any]) -> None:
    print(f'  {point.name} / {arm.label} / seed {seed}: {r["metric"]:.4f} ({r["wall_time_s"]:.0f} s)', flush=True)


def _collect(comp: Comparison, wall: float) -> Dict[str, Any]:
    name, higher = METRICS[comp.task]
    out: Dict[str, Any] = dict(
        title=comp.title, task=comp.task, metric=name, higher_is_better=higher, seeds=[int(s) for s in comp.seeds],
        context=comp.context, config=dataclasses.asdict(comp.config), points=[], wall_time_s=round(wall, 1),
        torch=torch.__version__, threads=comp.threads or torch.get_num_threads(), jobs=comp.jobs)
    for point in comp.points:
        runs: Dict[str, Dict[int, Dict[str, Any]]] = {}
        for arm in point.arms:
            runs[arm.role] = {}
            for seed in comp.seeds:
                path = os.path.join(_run_dir(comp, point, arm, seed), RESULT)
                if os.path.isfile(path):
                    with open(path, encoding='utf-8') as f:
                        runs[arm.role][int(seed)] = json.load(f)
        entry: Dict[str, Any] = dict(name=point.name, x=point.x, arms={}, diffs={})
        base = runs.get('baseline', {})
        for arm in point.arms:
            rs = runs[arm.role]
            any_run = next(iter(rs.values()), {})
            entry['arms'][arm.role] = dict(
                label=arm.label, overrides=arm.overrides,
                **{k: any_run.get(k) for k in ('params', 'macs', 'blocks', 'layers', 'plan')},
                per_seed={s: r['metric'] for s, r in rs.items()},
                stats=paired_stats([r['metric'] for r in rs.values()]),
                train_stats=paired_stats([r.get('train_metric') for r in rs.values()]),
                seen=any_run.get('seen'), train_time=paired_stats([r['train_time'] for r in rs.values()])['mean'],
                capped=[s for s, r in rs.items() if r.get('stopped_by_time')])
            if arm.role != 'baseline':
                per_seed = {s: rs[s]['metric'] - base[s]['metric'] for s in rs if s in base}
                entry['diffs'][arm.role] = dict(paired_stats(list(per_seed.values())), per_seed=per_seed)
                if all(rs[s].get('train_metric') is not None for s in rs):
                    entry['diffs'][arm.role + '_train'] = paired_stats(
                        [rs[s]['train_metric'] - base[s]['train_metric'] for s in rs if s in base])
        out['points'].append(entry)
    deep = [p for p in out['points'] if p['x'] is not None]
    if len(deep) > 1:  # does the difference grow with depth? the deepest point's gap minus the shallowest's, per seed
        first, last = min(deep, key=lambda p: p['x']), max(deep, key=lambda p: p['x'])
        out['trend'] = {}
        for role, d in last['diffs'].items():
            if role.endswith('_train') or role not in first['diffs']:
                continue
            a, b = first['diffs'][role]['per_seed'], d['per_seed']
            out['trend'][role] = dict(paired_stats([b[s] - a[s] for s in b if s in a]), shallow=first['name'],
                                      deep=last['name'])
    return out


# ----------------------------------------------------------------------------------------------------------------
# Report and plots


def _fmt(stats: Mapping[str, Any], digits: int, sign: bool = False) -> str:
    if stats['mean'] is None:
        return 'not run'
    s = f'{stats["mean"]:+.{digits}f}' if sign else f'{stats["mean"]:.{digits}f}'
    return s + (f' ± {stats["std"]:.{digits}f}' if stats['std'] is not None else '')


def _verdict(d: Mapping[str, Any], higher: Optional[bool] = None) -> str:
    """Whether a paired difference is distinguishable from zero at this number of seeds (|mean| > 2 std/sqrt(n)).

    With ``higher`` (whether a larger metric is better) a clear difference is worded as better or worse than the
    baseline; without it, as a change from zero (the change of a gap with depth).
    """
    if d['mean'] is None:
        return 'not run'
    if d['n'] < 2 or d['std'] is None:
        return 'one seed: no spread to judge by' if higher is not None else 'from one seed: no spread to judge by'
    se = d['std'] / math.sqrt(d['n'])
    if abs(d['mean']) <= 2 * se:
        return f'within the seed-to-seed spread (|mean| <= 2 standard errors, {se:.3g})'
    if higher is None:
        return f'more than 2 standard errors ({se:.3g}) from zero'
    better = (d['mean'] > 0) == higher
    return f'{"better" if better else "worse"} than the baseline by more than 2 standard errors ({se:.3g})'


def report_markdown(r: Mapping[str, Any]) -> str:
    """The comparison as markdown: one row per point and arm, the paired differences, and a plain statement."""
    higher = r['higher_is_better']
    digits = 2 if r['task'] == 'cls' else 4
    n = len(r['seeds'])
    lines = [f'# {r["title"]}', '']
    if r.get('context'):
        lines += [r['context'], '']
    lines += [f'Metric: {r["metric"]} on the validation split, after the last step; '
              f'{"higher" if higher else "lower"} is better. Mean ± standard deviation over {n} seed(s) '
              f'{r["seeds"]}; a difference is paired by seed (same initialisation seed and batches for every arm).',
              '']
    train = r['task'] == 'cls'
    head = '| setting | arm | model | params | MFLOPs (MACs) | blocks | layers | metric | − baseline |'
    lines += [head + (' train top-1 (no augmentation) | − baseline |' if train else ''),
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
    lines += ['', '**What this run shows.**', '']
    for p in r['points']:
        for role, d in p['diffs'].items():
            what = f'{role[:-6]} − baseline on the training images' if role.endswith('_train') else \
                f'{role} − baseline'
            lines.append(f'- {p["name"]}: {what} = {_fmt(d, digits, sign=True)} ({d["n"]} paired seed(s)): '
                         f'{_verdict(d, higher)}.')
    for role, t in (r.get('trend') or {}).items():
        lines.append(f'- Depth: ({role} − baseline at {t["deep"]}) − ({role} − baseline at {t["shallow"]}) = '
                     f'{_fmt(t, digits, sign=True)} ({t["n"]} paired seed(s)): a change with depth '
                     f'{_verdict(t)}.')
    capped = [(p['name'], a['label'], a['capped']) for p in r['points'] for a in p['arms'].values() if a['capped']]
    for name, label, seeds in capped:
        lines.append(f'- {name} / {label} stopped at the time limit for seeds {seeds}: it saw fewer tokens than '
                     'planned (use a fixed step count for equal data).')
    lines += ['', '![curves](curves.png)', '']
    if any(p['x'] is not None for p in r['points']):
        lines += ['![depth](depth.png)', '']
    lines.append(f'Wall time {r["wall_time_s"] / 60:.1f} min ({r["jobs"]} run(s) at a time, {r["threads"]} '
                 f'thread(s) each), torch {r["torch"]}.')
    return '\n'.join(lines) + '\n'


def _save(fig, path: str) -> None:
    import matplotlib.pyplot as plt
    tmp = path + '.tmp.png'
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)


def _role_colours(roles) -> Dict[str, str]:
    """One colour per arm role: the baseline grey, Steps arms warm, controls green, anything else from a cycle."""
    fixed = {'baseline': '#404040', 'control': 'tab:green'}
    warm = iter(['#e07040', '#3070c0', '#a040a0', '#c0a000'])
    return {role: fixed.get(role) or next(warm, 'k') for role in roles}


def _plot_curves(comp: Comparison, r: Mapping[str, Any], path: str) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(comp.points), figsize=(5 * len(comp.points), 3.8), squeeze=False)
    roles = dict.fromkeys(arm.role for point in comp.points for arm in point.arms)
    colours = _role_colours(roles)
    for ax, point in zip(axes[0], comp.points):
        for arm in point.arms:
            for i, seed in enumerate(comp.seeds):
                f = os.path.join(_run_dir(comp, point, arm, seed), RESULT)
                if not os.path.isfile(f):
                    continue
                with open(f, encoding='utf-8') as fh:
                    curve = json.load(fh)['curve']
                if curve:
                    ax.plot(*zip(*curve), color=colours[arm.role], marker='o', ms=2, lw=1, alpha=0.7,
                            label=arm.label if i == 0 else None)
        ax.set(title=point.name, xlabel='tokens seen' if comp.task == 'lm' else 'images seen', ylabel=r['metric'])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path)


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
    _save(fig, path)


# ----------------------------------------------------------------------------------------------------------------
# The built-in comparisons


def default_config_path(task: str) -> Optional[str]:
    """The recipe a comparison starts from: ``configs/lm/cpu.yaml`` or ``configs/cls/digits_cpu.yaml``."""
    rel = {'lm': ('lm', 'cpu.yaml'), 'cls': ('cls', 'digits_cpu.yaml'), 'depth': ('cls', 'depth_digits.yaml')}[task]
    path = os.path.join(REPO, 'configs', *rel)
    return path if os.path.isfile(path) else None


def _config(task: str, path: Optional[str], overrides: Mapping[str, Any]):
    path = path or default_config_path(task)
    if path is None:
        raise FileNotFoundError(f'no recipe for {task!r}: pass --config (the package was installed without configs/)')
    loader = lm_task.load_config if task == 'lm' else cls_task.load_config
    return loader(path, **{k: v for k, v in overrides.items() if v is not None})


def depth_comparison(
        depths: Sequence[int] = (4, 12),
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
    embedded digits at 32x32, patch 8), data order and seeds.
    """
    cfg = _config('depth', config, dict(overrides or {}))
    img = cfg.img_size or 32
    points = []
    for blocks in depths:
        arms = []
        for role, kind, pairing in [('baseline', 'residual', 'compute')] + [('steps', 'steps', p) for p in pairings]:
            name, kw = deit_trunk_config(blocks, kind, width, heads, img, cfg.model_kwargs.get('patch_size', 8),
                                         pairing)
            kw = {k: v for k, v in kw.items() if k != 'img_size'}
            n = blocks if kind == 'residual' else (2 * blocks if pairing == 'compute' else blocks)
            label = f'{"DeiT-like" if kind == "residual" else "Steps-DeiT-like"} {n} blocks'
            role_name = role if len(pairings) == 1 or kind == 'residual' else f'steps_{pairing}'
            arms.append(Arm(role_name, label, dict(model=name, model_kwargs={**cfg.model_kwargs, **kw})))
        points.append(Point(f'{blocks} residual blocks', arms, x=blocks))
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
    p = {a.role: GPT(lm_config(a.overrides['model'], vocab_size=data.vocab_size, **cfg.model_kwargs)).num_params()
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
    if baseline_kwargs is None and baseline == steps == 'test_steps_resnet':
        baseline_kwargs = PLAIN_TWIN_KWARGS
    arms = [Arm('baseline', baseline + (f' {dict(baseline_kwargs)}' if baseline_kwargs else ''),
                dict(model=baseline, model_kwargs={**cfg.model_kwargs, **dict(baseline_kwargs or {})})),
            Arm('steps', steps, dict(model=steps, model_kwargs={**cfg.model_kwargs, **dict(steps_kwargs or {})}))]
    context = (f'Both models train {cfg.epochs} epochs of `{cfg.dataset}` with the same recipe and images. '
               'Parameter and FLOP counts are in the table; see the repository\'s docs/classification.md.')
    return Comparison('cls', cfg, [Point(cfg.dataset, arms)], seeds, out,
                      f'Classification: {steps} against {baseline}', context, jobs, threads)


TASKS: Dict[str, Callable[..., Comparison]] = {'depth': depth_comparison, 'lm': lm_comparison,
                                              'cls': cls_comparison}
