"""The built-in comparisons of ``stepsnet compare``: :func:`depth_comparison` (the paper's Fig. 1 in miniature),
:func:`lm_comparison` and :func:`cls_comparison`, with the recipe each starts from."""
from __future__ import annotations

import dataclasses
import os
import tempfile
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

from stepsnet.compare.harness import ADAPTERS, REPO, Arm, Comparison, Point
from stepsnet.models.factory import create_lm, deit_trunk_config
from stepsnet.tasks import lm as lm_task

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
        out: str = os.path.join('runs', 'compare-depth'),
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


MNIST1D_RECIPE = os.path.join('cls', 'mnist1d_main.yaml')
# residual blocks -> the 1-D ResNet of that depth and its Steps twin (Table 1's ResNet-18 / ResNet-34 rules)
MNIST1D_DEPTHS: Dict[int, Tuple[str, str, str]] = {
    8: ('mnist1d_resnet', 'mnist1d_steps_resnet', 'ResNet-18'),
    16: ('mnist1d_resnet34', 'mnist1d_steps_resnet34', 'ResNet-34'),
}


def mnist1d_comparison(
        blocks: Sequence[int] = (8, 16),
        seeds: Sequence[int] = (0, 1, 2),
        config: Optional[str] = None,
        overrides: Optional[Mapping[str, Any]] = None,
        out: str = os.path.join('runs', 'compare'),
        jobs: int = 2,
        threads: Optional[int] = 1,
) -> Comparison:
    """The main job (``make run``): 1-D ResNets against their Steps twins on MNIST-1D, shallow and deep.

    Each point is a residual 1-D ResNet (widths 16-128) with the layout of ResNet-18 (8 blocks) or ResNet-34 (16
    blocks), against its Steps twin built by the paper's rule for that ResNet (Table 1: stage 3 in 5 steps, stage
    4 in 7; the same parameters and FLOPs, about twice the blocks). Every arm trains with the same recipe
    (``configs/cls/mnist1d_main.yaml``: the standard MNIST-1D split, generated, never downloaded), data order and
    seeds; the models converge within the recipe's epochs (the committed convergence check,
    ``docs/figures/analyses/main_job/twice/``).
    """
    unknown = sorted(set(blocks) - set(MNIST1D_DEPTHS))
    if unknown:
        raise ValueError(f'the MNIST-1D comparison has 1-D ResNets of {sorted(MNIST1D_DEPTHS)} residual blocks '
                         f'(the ResNet-18 and ResNet-34 layouts), got {unknown}')
    cfg = _config('cls', config, dict(overrides or {}), MNIST1D_RECIPE)
    points = []
    for depth in blocks:
        base, twin, name = MNIST1D_DEPTHS[depth]
        arms = [Arm('baseline', f'1-D {name} ({depth} blocks)', dict(model=base, model_kwargs=dict(cfg.model_kwargs))),
                Arm('steps', f'1-D Steps-{name}', dict(model=twin, model_kwargs=dict(cfg.model_kwargs)))]
        points.append(Point(f'{depth} residual blocks', arms, x=depth))
    context = ('Table 1\'s ResNet pairs in miniature, at a shallow and a deep setting: 1-D ResNets with the layouts of '
               'ResNet-18 and ResNet-34 (widths 16-128) on MNIST-1D (Greydanus & Kobak, arXiv:2011.14439; the '
               'standard 4,000 / 1,000 split, generated by the authors\' package), each against its Steps twin of '
               'equal parameters and FLOPs (the paper\'s Steps-ResNet-18 / -34 rules: about twice the blocks), '
               f'{cfg.epochs} epochs each. The paper (ImageNet) reports ResNet-18 70.2 -> Steps 71.8 and ResNet-34 '
               '75.0 -> 76.0. The repository\'s docs/mnist1d.md has the models and the published MNIST-1D table; '
               'docs/analyses.md has the pre-registered replication of the DeiT depth pilot on the digits.')
    return Comparison('cls', cfg, points, seeds, out, 'Main job: residual against Steps on MNIST-1D (1-D ResNets)',
                      context, jobs, threads)


# the comparisons of `stepsnet compare TASK`
COMPARISONS: Dict[str, Callable[..., Comparison]] = {'mnist1d': mnist1d_comparison, 'depth': depth_comparison,
                                                    'lm': lm_comparison, 'cls': cls_comparison}
