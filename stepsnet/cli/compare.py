"""``stepsnet compare``: residual against Steps with seeds, paired statistics and a report (:mod:`stepsnet.compare`).

``stepsnet compare`` (the main job, ``make run``) is the MNIST-1D comparison of 1-D ResNets at two depths;
``stepsnet compare depth`` the paper's Fig. 1 in miniature on the digits; ``stepsnet compare lm`` and
``stepsnet compare cls`` compare a pair of language models or classifiers; ``stepsnet compare --render DIR`` writes
the report of an earlier comparison again from its ``results.json`` (the statistics recomputed from the per-seed
values). ``--set FIELD=VALUE`` changes a field of the task's recipe for every arm (e.g. ``--set epochs=10``,
``--set max_iters=300``). ``stepsnet analyze pilot`` is the depth comparison with the pilot's defaults: both
parsers get their flags from :func:`add_run_flags` and :func:`add_depth_flags`.

Seeds are a count: ``--seeds 3`` trains seeds 0, 1 and 2; ``--first-seed 5 --seeds 3`` seeds 5, 6 and 7.
"""
import argparse
import inspect
import sys

from stepsnet.cli.common import ParseKwargs, integer, positive_float, positive_int, probability
from stepsnet.utils.names import PAIRINGS


class _SeedCount(argparse.Action):
    """``--seeds N``: a count. A list of seeds (the older ``analyze pilot`` form) fails with how to write it."""

    def __call__(self, parser, namespace, values, option_string=None):
        text = ' '.join(values)
        if len(values) != 1 or ',' in values[0]:
            raise argparse.ArgumentError(self, f'takes a count, got {text!r}: --seeds 3 trains seeds 0, 1, 2; '
                                               'add --first-seed K to start at seed K (e.g. --first-seed 5 --seeds 3 '
                                               'for seeds 5, 6, 7)')
        try:
            n = int(values[0])
        except ValueError:
            raise argparse.ArgumentError(self, f'expected a count of seeds, e.g. --seeds 3, got {text!r}') from None
        if n < 1:
            raise argparse.ArgumentError(self, f'expected at least one seed, got {n}')
        setattr(namespace, self.dest, n)


class _DepthsRenamed(argparse.Action):
    """``--depths`` (the older spelling of ``compare``): fails with the new one."""

    def __call__(self, parser, namespace, values, option_string=None):
        raise argparse.ArgumentError(self, f'is now --blocks (the same flag as analyze pilot): write --blocks '
                                           f'{" ".join(map(str, values or []))}')


def add_run_flags(p: argparse.ArgumentParser, out_help: str, seeds_default: str, jobs_default: str,
                  threads_default: str) -> None:
    """The flags every comparison takes: seeds, recipe, output, processes."""
    p.add_argument('--out', help=f'output folder (default {out_help})')
    p.add_argument('--seeds', nargs='+', action=_SeedCount, metavar='N',
                   help=f'how many seeds: N trains seeds 0 .. N-1 (default {seeds_default})')
    p.add_argument('--first-seed', type=integer, default=0, metavar='K', help='the first seed (default 0)')
    p.add_argument('--config', '-c', help='recipe YAML (default: configs/cls/mnist1d_main.yaml for mnist1d, '
                   'configs/cls/depth_digits.yaml for depth, configs/lm/cpu.yaml for lm, configs/cls/digits_cpu.yaml '
                   'for cls)')
    p.add_argument('--set', nargs='*', action=ParseKwargs, metavar='FIELD=VALUE',
                   help='change recipe fields for every arm, e.g. --set epochs=10')
    p.add_argument('--jobs', type=positive_int, default=None, help=f'runs side by side (default {jobs_default})')
    p.add_argument('--threads', type=positive_int, default=None,
                   help=f'torch threads per run (default {threads_default})')
    p.add_argument('--device', help='auto, cpu, cuda (default: the recipe\'s)')
    p.add_argument('--progress', action=argparse.BooleanOptionalAction, default=True)
    p.add_argument('--dry-run', type=positive_int, nargs='?', const=2, default=None, metavar='N',
                   help='train nothing for real: the dry run of each arm (N steps, default 2, and one evaluation '
                        'batch; nothing written), with the projected time of the whole comparison')
    p.add_argument('--synthetic-data', action='store_true',
                   help='with --dry-run: generated data in the recipe\'s layout instead of its data_dir')
    p.add_argument('--report-only', action='store_true',
                   help='train nothing: report the runs already finished in --out')
    p.add_argument('--convergence', metavar='DIR',
                   help='the same comparison trained with twice the epochs (its results.json or folder): the report '
                        'says whether each arm has converged (final training top-1 within 1 point of it)')


def add_depth_flags(p, blocks_default: str, pairing_default: str) -> None:
    """The flags of the depth comparison (``compare depth`` and ``analyze pilot``)."""
    p.add_argument('--blocks', type=positive_int, nargs='+',
                   help=f'residual block counts, one point each (default {blocks_default})')
    p.add_argument('--depths', nargs='*', action=_DepthsRenamed, help=argparse.SUPPRESS)
    p.add_argument('--width', type=positive_int, help='trunk width (default 80)')
    p.add_argument('--heads', type=positive_int, help='attention heads at the trunk width (default 4)')
    p.add_argument('--pairing', nargs='+', choices=PAIRINGS,
                   help=f'compute: the Steps twin with equal parameters and FLOPs (Table 1); blocks: equal blocks '
                        f'(default {pairing_default})')


# the flags each task takes; a flag left out keeps the library's default (stepsnet.compare)
_TASK_FLAGS = {'mnist1d': ('blocks',), 'depth': ('blocks', 'width', 'heads', 'pairing'),
               'lm': ('baseline', 'steps', 'minutes'),
               'cls': ('baseline', 'steps', 'baseline_kwargs', 'steps_kwargs')}
_RENAMED = {'pairing': 'pairings'}


# what a protocol fixes: none of these may be given with --protocol
_PROTOCOL_FIXES = ('out', 'seeds', 'first_seed', 'config', 'set', 'jobs', 'threads', 'device', 'blocks', 'width',
                   'heads', 'pairing', 'baseline', 'steps', 'baseline_kwargs', 'steps_kwargs', 'minutes', 'render',
                   'plan', 'convergence')


# what each task's own flag does: the reason a refusal gives when the flag is given to another task
_FLAG_PURPOSE = {'blocks': 'it sets the residual block counts of the depth points',
                 'width': "it sets the trunk width of the depth comparison's models",
                 'heads': "it sets the attention heads of the depth comparison's models",
                 'pairing': 'it chooses how each Steps model is paired with a residual one',
                 'baseline': 'it names the baseline model',
                 'steps': 'it names the Steps model',
                 'baseline_kwargs': "it passes arguments to the baseline classifier",
                 'steps_kwargs': "it passes arguments to the Steps classifier",
                 'minutes': "it sets each language model's training budget"}
# the flags of a comparison that trains: none of them means anything to --render or --plan, which train nothing
_TRAINING_FLAGS = ('seeds', 'first_seed', 'config', 'set', 'jobs', 'threads', 'device', 'dry_run', 'synthetic_data',
                   'report_only', 'convergence') + tuple(_FLAG_PURPOSE)


def _flag(name: str) -> str:
    return '--' + name.replace('_', '-')


def _given(args: argparse.Namespace, names) -> list:
    return [_flag(n) for n in names if getattr(args, n, None) not in (None, 0, False)]


def _refuse_flags_that_do_not_apply(args: argparse.Namespace) -> None:
    """A flag that the chosen task or mode would ignore is refused with why, rather than silently dropped.

    Raises:
        ValueError: ``--minutes`` (a language-model flag) with the depth task, ``--synthetic-data`` without
            ``--dry-run``, a training flag with ``--render`` or ``--plan``, ...
    """
    if getattr(args, 'synthetic_data', False) and not args.dry_run:
        raise ValueError('--synthetic-data applies to --dry-run only: it replaces the recipe\'s data in a dry run '
                         '(a comparison trained on generated data would report meaningless results)')
    if getattr(args, 'report_only', False) and args.dry_run:
        raise ValueError('--report-only and --dry-run exclude each other: a dry run trains nothing to report; drop '
                         'one of them')
    if getattr(args, 'protocol', None):
        return  # the protocol's own check names what it fixes
    for mode, why in (('plan', 'it reads the per-seed spread of an earlier comparison'),
                      ('render', 'it writes the report of an earlier comparison again')):
        if getattr(args, mode, None):
            given = _given(args, _TRAINING_FLAGS + (('render', 'out') if mode == 'plan' else ()))
            if given:
                raise ValueError(f'{", ".join(given)} cannot be combined with --{mode}, which trains nothing: {why}')
    for name, purpose in _FLAG_PURPOSE.items():
        if getattr(args, name, None) is not None and name not in _TASK_FLAGS[args.task]:
            tasks = ' and '.join(f'`stepsnet compare {t}`' for t, flags in _TASK_FLAGS.items() if name in flags)
            raise ValueError(f'{_flag(name)} applies to {tasks} only: {purpose}')


def run(args: argparse.Namespace) -> int:
    from stepsnet.compare import COMPARISONS, render_report, run_comparison
    _refuse_flags_that_do_not_apply(args)
    if getattr(args, 'protocol', None):
        given = [_flag(n) for n in _PROTOCOL_FIXES if getattr(args, n, None) not in (None, 0, False)]
        if given:
            raise ValueError(f'{", ".join(given)} cannot be combined with --protocol: a pre-registered comparison '
                             'runs exactly what its protocol file says')
        from stepsnet.compare import dry_run_comparison, protocol_comparison, run_protocol
        if args.dry_run:
            from stepsnet.config.protocol import load_protocol
            dry_run_comparison(protocol_comparison(load_protocol(args.protocol)), args.dry_run, args.synthetic_data)
            return 0
        run_protocol(args.protocol, progress=args.progress, train=not args.report_only)
        return 0
    if getattr(args, 'plan', None):
        if args.effect is None:
            raise ValueError('--plan needs --effect X: the true difference to find, in the metric\'s units')
        from stepsnet import stats
        from stepsnet.compare import plan_markdown, power_plan
        power = args.power if args.power is not None else stats.POWER
        print(plan_markdown(power_plan(args.plan, args.effect, power, family=args.family), args.effect, power,
                            stats.ALPHA, args.plan))
        return 0
    for name in ('effect', 'power', 'family'):
        if getattr(args, name, None) is not None:
            raise ValueError(f'{_flag(name)} applies to --plan only')
    if getattr(args, 'render', None):
        render_report(args.render, args.out)
        return 0
    overrides = dict(args.set or {}, **({'device': args.device} if args.device else {}))
    kw = dict(config=args.config, overrides=overrides)
    for name in ('out', 'jobs', 'threads') + _TASK_FLAGS[args.task]:
        if getattr(args, name) is not None:
            kw[_RENAMED.get(name, name)] = getattr(args, name)
    if args.seeds is not None or args.first_seed:
        count = args.seeds if args.seeds is not None else len(
            inspect.signature(COMPARISONS[args.task]).parameters['seeds'].default)
        kw['seeds'] = list(range(args.first_seed, args.first_seed + count))
    comparison = COMPARISONS[args.task](**kw)
    comparison.reference = getattr(args, 'convergence', None)
    if not args.report_only:  # a report of finished runs trains nothing, whatever the recipe says now
        for warning in comparison.config.check_schedule():
            print(f'warning: {warning}', file=sys.stderr, flush=True)
    if args.dry_run:
        from stepsnet.compare import dry_run_comparison
        dry_run_comparison(comparison, args.dry_run, args.synthetic_data)
        return 0
    run_comparison(comparison, progress=args.progress, train=not args.report_only)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        'compare', help='train residual and Steps models on the same data and seeds; paired report',
        description='Train residual and Steps models with the same recipe, data and seeds, then write report.md, '
                    'results.json and plots into --out. Finished runs are kept: the same command continues an '
                    'interrupted comparison. TASK: mnist1d (default, the main job: 1-D ResNet-18 / -34 layouts '
                    'against their Steps twins on MNIST-1D), depth (the paper\'s Fig. 1 in miniature: DeiT-like '
                    'trunks on the embedded digits), lm (a pair of language models) or cls (a pair of classifiers).')
    p.add_argument('task', nargs='?', choices=('mnist1d', 'depth', 'lm', 'cls'), default='mnist1d')
    add_run_flags(p, 'runs/compare, runs/compare-depth, runs/compare-lm, runs/compare-cls',
                  '3 for mnist1d and depth, else 1', '2 for mnist1d and depth, else 1', '1 for mnist1d and depth')
    p.add_argument('--render', metavar='DIR', help='train nothing: render the report, results.json and plots of an '
                   'earlier comparison again from DIR/results.json (into --out, default DIR)')
    g = p.add_argument_group('pre-registration and power')
    g.add_argument('--protocol', metavar='FILE', help='run a pre-registered comparison exactly as its committed '
                   'protocol file says (configs/protocols/*.yaml); training refuses an uncommitted or changed file '
                   'and a checkout not at the protocol\'s commit; with --report-only, report the runs so far')
    g.add_argument('--plan', metavar='DIR', help='train nothing: print the seeds needed for 80%% power from the '
                   'per-seed spread of the comparison in DIR (needs --effect)')
    g.add_argument('--effect', type=positive_float, metavar='X', help='with --plan: the true difference to find, in '
                   'the metric\'s units (e.g. 1.0 top-1 points)')
    g.add_argument('--power', type=probability, metavar='P', help='with --plan: the power to plan for (default 0.8)')
    g.add_argument('--family', type=positive_int, metavar='M', help='with --plan: Holm family size (default: the '
                   'validation differences of DIR)')
    add_depth_flags(p.add_argument_group('mnist1d and depth'), 'mnist1d: 8 16, the ResNet-18 and ResNet-34 layouts; '
                    'depth: 4 12, the depth of DeiT, as in Table 1', 'compute')
    g = p.add_argument_group('lm and cls')
    g.add_argument('--baseline', help='baseline model (lm: gpt_cpu; cls: test_steps_resnet as a plain twin)')
    g.add_argument('--steps', help='Steps model (lm: steps_gpt_cpu; cls: test_steps_resnet)')
    g.add_argument('--baseline-kwargs', nargs='*', action=ParseKwargs, metavar='KEY=VALUE')
    g.add_argument('--steps-kwargs', nargs='*', action=ParseKwargs, metavar='KEY=VALUE')
    g.add_argument('--minutes', type=positive_float,
                   help='lm: training budget per model; the step count is derived from it')
    p.set_defaults(func=run, trains=True)
