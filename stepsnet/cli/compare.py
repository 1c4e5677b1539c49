"""``stepsnet compare``: residual against Steps with seeds, paired statistics and a report (:mod:`stepsnet.compare`).

``stepsnet compare`` (the main job, ``make run``) is the depth comparison; ``stepsnet compare lm`` and
``stepsnet compare cls`` compare a pair of language models or classifiers. ``--set FIELD=VALUE`` changes a field of
the task's recipe for every arm (e.g. ``--set epochs=10``, ``--set max_iters=300``).
"""
import argparse

from stepsnet.cli.common import ParseKwargs, positive_int
from stepsnet.compare import cls_comparison, depth_comparison, lm_comparison, run_comparison
from stepsnet.models.factory import PAIRINGS


def _seeds(text: str):
    """``3`` means seeds 0, 1, 2; ``1,5,9`` lists them."""
    try:
        if ',' in text:
            return [int(s) for s in text.split(',') if s.strip()]
        n = int(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f'expected a count (3) or a list of seeds (0,1,2), got {text!r}') from e
    if n < 1:
        raise argparse.ArgumentTypeError(f'expected at least one seed, got {text!r}')
    return list(range(n))


def run(args: argparse.Namespace) -> int:
    common = dict(config=args.config, overrides=args.set or {}, jobs=args.jobs, threads=args.threads)
    if args.device:
        common['overrides'] = dict(common['overrides'], device=args.device)
    if args.task == 'depth':
        comp = depth_comparison(depths=args.depths, width=args.width, heads=args.heads, pairings=args.pairing,
                                seeds=args.seeds or [0, 1, 2], out=args.out or 'runs/compare', **common)
    elif args.task == 'lm':
        comp = lm_comparison(baseline=args.baseline or 'gpt_cpu', steps=args.steps or 'steps_gpt_cpu',
                             seeds=args.seeds or [0], minutes=args.minutes, out=args.out or 'runs/compare-lm',
                             **common)
    else:
        comp = cls_comparison(baseline=args.baseline or 'test_steps_resnet', steps=args.steps or 'test_steps_resnet',
                              baseline_kwargs=args.baseline_kwargs, steps_kwargs=args.steps_kwargs,
                              seeds=args.seeds or [0], out=args.out or 'runs/compare-cls', **common)
    run_comparison(comp, progress=args.progress)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        'compare', help='train residual and Steps models on the same data and seeds; paired report',
        description='Train residual and Steps models with the same recipe, data and seeds, then write report.md, '
                    'results.json and plots into --out. Finished runs are kept: the same command continues an '
                    'interrupted comparison. TASK: depth (default; the paper\'s Fig. 1 in miniature on the embedded '
                    'digits), lm (a pair of language models) or cls (a pair of classifiers).')
    p.add_argument('task', nargs='?', choices=('depth', 'lm', 'cls'), default='depth')
    p.add_argument('--out', help='output folder (default runs/compare, runs/compare-lm, runs/compare-cls)')
    p.add_argument('--seeds', type=_seeds, help='a count (3 -> 0,1,2) or a list (0,1,2); default 3 for depth, else 1')
    p.add_argument('--config', '-c', help='recipe YAML (default: configs/cls/depth_digits.yaml, configs/lm/cpu.yaml '
                   'or configs/cls/digits_cpu.yaml)')
    p.add_argument('--set', nargs='*', action=ParseKwargs, metavar='FIELD=VALUE',
                   help='change recipe fields for every arm, e.g. --set epochs=10')
    p.add_argument('--jobs', type=positive_int, default=None, help='runs side by side (default 2 for depth, else 1)')
    p.add_argument('--threads', type=positive_int, default=None, help='torch threads per run (default 1 for depth)')
    p.add_argument('--device', help='auto, cpu, cuda (default: the recipe\'s)')
    p.add_argument('--progress', action=argparse.BooleanOptionalAction, default=True)
    g = p.add_argument_group('depth')
    g.add_argument('--depths', type=positive_int, nargs='+', default=[4, 12],
                   help='residual block counts, one point each (default 4 12: the depth of DeiT, as in Table 1)')
    g.add_argument('--width', type=positive_int, default=80, help='trunk width (default 80)')
    g.add_argument('--heads', type=positive_int, default=4, help='attention heads at the trunk width (default 4)')
    g.add_argument('--pairing', nargs='+', choices=PAIRINGS, default=['compute'],
                   help='compute: the Steps twin with equal parameters and FLOPs (Table 1); blocks: equal blocks')
    g = p.add_argument_group('lm and cls')
    g.add_argument('--baseline', help='baseline model (lm: gpt_cpu; cls: test_steps_resnet as a plain twin)')
    g.add_argument('--steps', help='Steps model (lm: steps_gpt_cpu; cls: test_steps_resnet)')
    g.add_argument('--baseline-kwargs', nargs='*', action=ParseKwargs, metavar='KEY=VALUE')
    g.add_argument('--steps-kwargs', nargs='*', action=ParseKwargs, metavar='KEY=VALUE')
    g.add_argument('--minutes', type=float, help='lm: training budget per model; the step count is derived from it')
    p.set_defaults(func=_defaults_then_run, trains=True)


def _defaults_then_run(args: argparse.Namespace) -> int:
    if args.jobs is None:
        args.jobs = 2 if args.task == 'depth' else 1
    if args.threads is None and args.task == 'depth':
        args.threads = 1
    return run(args)
