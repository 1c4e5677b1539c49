"""``stepsnet compare``: residual against Steps with seeds, paired statistics and a report (:mod:`stepsnet.compare`).

``stepsnet compare`` (the main job, ``make run``) is the depth comparison; ``stepsnet compare lm`` and
``stepsnet compare cls`` compare a pair of language models or classifiers; ``stepsnet compare --render DIR`` writes
the report of an earlier comparison again from its ``results.json`` (the statistics recomputed from the per-seed
values). ``--set FIELD=VALUE`` changes a field of
the task's recipe for every arm (e.g. ``--set epochs=10``, ``--set max_iters=300``).
"""
import argparse

from stepsnet.cli.common import ParseKwargs, positive_int
from stepsnet.compare import COMPARISONS, render_report, run_comparison
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


# the flags each task takes; a flag left out keeps the library's default (stepsnet.compare)
_TASK_FLAGS = {'depth': ('depths', 'width', 'heads', 'pairing'),
               'lm': ('baseline', 'steps', 'minutes'),
               'cls': ('baseline', 'steps', 'baseline_kwargs', 'steps_kwargs')}
_RENAMED = {'pairing': 'pairings'}


def run(args: argparse.Namespace) -> int:
    if args.render:
        render_report(args.render, args.out)
        return 0
    overrides = dict(args.set or {}, **({'device': args.device} if args.device else {}))
    kw = dict(config=args.config, overrides=overrides)
    for name in ('seeds', 'out', 'jobs', 'threads') + _TASK_FLAGS[args.task]:
        if getattr(args, name) is not None:
            kw[_RENAMED.get(name, name)] = getattr(args, name)
    run_comparison(COMPARISONS[args.task](**kw), progress=args.progress)
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
    p.add_argument('--render', metavar='DIR', help='train nothing: render the report, results.json and plots of an '
                   'earlier comparison again from DIR/results.json (into --out, default DIR)')
    g = p.add_argument_group('depth')
    g.add_argument('--depths', type=positive_int, nargs='+',
                   help='residual block counts, one point each (default 4 12: the depth of DeiT, as in Table 1)')
    g.add_argument('--width', type=positive_int, help='trunk width (default 80)')
    g.add_argument('--heads', type=positive_int, help='attention heads at the trunk width (default 4)')
    g.add_argument('--pairing', nargs='+', choices=PAIRINGS,
                   help='compute (default): the Steps twin with equal parameters and FLOPs (Table 1); blocks: equal '
                        'blocks')
    g = p.add_argument_group('lm and cls')
    g.add_argument('--baseline', help='baseline model (lm: gpt_cpu; cls: test_steps_resnet as a plain twin)')
    g.add_argument('--steps', help='Steps model (lm: steps_gpt_cpu; cls: test_steps_resnet)')
    g.add_argument('--baseline-kwargs', nargs='*', action=ParseKwargs, metavar='KEY=VALUE')
    g.add_argument('--steps-kwargs', nargs='*', action=ParseKwargs, metavar='KEY=VALUE')
    g.add_argument('--minutes', type=float, help='lm: training budget per model; the step count is derived from it')
    p.set_defaults(func=run, trains=True)

