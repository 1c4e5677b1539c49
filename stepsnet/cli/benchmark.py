"""``stepsnet benchmark``: throughput and peak memory of baseline / Steps pairs (:mod:`stepsnet.analysis.speed`)."""
import argparse
import sys

import torch

from stepsnet.analysis.speed import benchmark_pairs, check_pair, format_ratios, parse_pair, plot_ratios, write_csv
from stepsnet.cli.common import positive_int


def run_benchmark(args: argparse.Namespace) -> int:
    pairs = [parse_pair(p) for p in args.pair]
    if not args.any_pair:
        for baseline, steps in pairs:
            check_pair(baseline, steps)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = benchmark_pairs(
        pairs, modes=args.mode, batch_size=args.batch_size, img_size=args.img_size, device=args.device,
        dtype=args.dtype, channels_last=args.channels_last, warmup=args.warmup, runs=args.runs,
        iters=args.iters, num_classes=args.num_classes, memory=args.memory, progress=args.progress,
        clock=args.clock)
    sys.stdout.write(format_ratios(rows))
    if args.csv:
        write_csv(rows, args.csv)
        print(f'wrote {args.csv}')
    if args.png:
        plot_ratios(rows, args.png)
        print(f'wrote {args.png}')
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    b = sub.add_parser(
        'benchmark', help='throughput (images/s) and peak memory of baseline/Steps model pairs',
        description='Inference and training throughput and peak memory of model pairs, measured in one process, '
                    'alternating the two models, after warm-up, median of several runs. Prints the Steps / '
                    'baseline ratio; writes CSV with timm benchmark column names.')
    b.add_argument('--pair', action='append', required=True, metavar='BASELINE,STEPS',
                   help='a pair of timm model names, e.g. resnet50,steps_resnet50 (repeat for more pairs)')
    b.add_argument('--any-pair', action=argparse.BooleanOptionalAction, default=False,
                   help='measure any two models (default: the second must be the Steps twin of the first)')
    b.add_argument('--mode', nargs='+', choices=('infer', 'train'), default=['infer', 'train'])
    b.add_argument('--batch-size', type=positive_int, default=32)
    b.add_argument('--img-size', type=positive_int, default=224)
    b.add_argument('--num-classes', type=positive_int, default=1000)
    b.add_argument('--device', default='cpu')
    b.add_argument('--dtype', default='float32', choices=('float32', 'bfloat16', 'float16'),
                   help='float32, or an autocast dtype')
    b.add_argument('--channels-last', action=argparse.BooleanOptionalAction, default=False)
    b.add_argument('--threads', type=positive_int, help='torch CPU threads (default: torch\'s choice, one per core)')
    b.add_argument('--warmup', type=int, default=2, help='untimed iterations per model before each timed run')
    b.add_argument('--runs', type=positive_int, default=5,
                   help='timed runs per model (alternating); the median is kept')
    b.add_argument('--iters', type=positive_int, default=3, help='iterations per timed run')
    b.add_argument('--clock', choices=('wall', 'process'), default='wall',
                   help='wall clock (default), or CPU time of this process (CPU only; with --threads 1 it ignores '
                        'time taken by other jobs on a shared machine)')
    b.add_argument('--memory', action=argparse.BooleanOptionalAction, default=True, help='the peak-memory pass')
    b.add_argument('--csv', help='write the rows to this CSV')
    b.add_argument('--png', help='plot the ratios to this PNG')
    b.add_argument('--progress', action=argparse.BooleanOptionalAction, default=True)
    b.set_defaults(func=run_benchmark)
