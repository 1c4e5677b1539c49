"""``stepsnet models``: parameters, FLOPs, blocks and layers of every Steps model and its baseline."""
import argparse
import sys

from stepsnet.cli.common import positive_int
from stepsnet.utils.names import did_you_mean


def run(args: argparse.Namespace) -> int:
    from stepsnet.analysis.complexity import MODEL_PAIRS, complexity_table, format_table, format_twin_table, twin_table
    from stepsnet.models.twins import TWIN_BASELINES
    if args.coverage:
        if args.twins or args.format is not None or args.img_size is not None:
            raise ValueError('--coverage cannot be combined with --twins, --format or --img-size: it counts each '
                             'configuration at its baseline\'s own input size, as markdown')
        from stepsnet.analysis.twin_coverage import coverage, render_coverage
        sys.stdout.write(render_coverage(coverage(families=args.names, progress=False)))
        return 0
    if args.twins:
        given = [flag for flag, value in (('--format', args.format), ('--img-size', args.img_size))
                 if value is not None]
        if given:
            raise ValueError(f'{", ".join(given)} cannot be combined with --twins: the twin table is markdown, '
                             'each model measured at its baseline\'s own input size')
        rows = twin_table(args.names or TWIN_BASELINES)
        sys.stdout.write(format_twin_table(rows, paper=[steps for steps, _ in MODEL_PAIRS]))
        return 0
    size = args.img_size or 224
    rows = complexity_table(args.names or None, input_size=(3, size, size))
    if not rows:
        known = [name for pair in MODEL_PAIRS for name in pair]
        hints = ''.join(did_you_mean(n, known) for n in args.names)
        raise ValueError(f'no registered Steps model or baseline matches {args.names}{hints}')
    sys.stdout.write(format_table(rows, args.format or 'md'))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        'models', help='parameters, FLOPs, blocks and layers of each Steps model beside its timm baseline',
        description='One row per Steps model and per baseline. FLOPs are multiply-adds of one forward pass, '
                    'attention matmuls included; paper columns are Table 1 of arXiv:2511.14329.')
    p.add_argument('names', nargs='*', help='only these models (Steps or baseline names); default all')
    p.add_argument('--format', choices=('md', 'csv'), help='md or csv (default md)')
    p.add_argument('--img-size', type=positive_int, help='square input size for FLOPs (default 224)')
    p.add_argument('--twins', action=argparse.BooleanOptionalAction, default=False,
                   help='the Steps twins of timm baselines (names are timm baselines; default: the documented table)')
    p.add_argument('--coverage', action='store_true',
                   help='every timm configuration of the generic twin families (names: only these families, e.g. '
                        'RegNet XCiT): twinned and within parity, or refused with why; counted on the meta device')
    p.set_defaults(func=run)
