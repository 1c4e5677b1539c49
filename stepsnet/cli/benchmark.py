"""``stepsnet benchmark``: throughput and peak memory of baseline / Steps pairs (:mod:`stepsnet.analysis.speed`)."""
import argparse
import sys
import time

from stepsnet.cli.common import ParseKwargs, non_negative_int, positive_float, positive_int


def run_benchmark(args: argparse.Namespace) -> int:
    import torch

    from stepsnet.analysis.speed import (
        benchmark_pairs,
        check_pair,
        format_profile,
        format_ratios,
        parse_pair,
        plot_ratios,
        write_csv,
    )
    from stepsnet.utils.checkpoint import atomic_write_text
    if args.task == 'lm' and args.img_size is not None:
        raise ValueError('--img-size is for image models; the context length of task lm is --seq-len')
    if args.task == 'cls' and args.seq_len is not None:
        raise ValueError('--seq-len is for task lm; image models take --img-size')
    if args.compile == 'off':
        given = [f for f, v in (('--compile-backend', args.compile_backend), ('--compile-scope', args.compile_scope))
                 if v is not None]
        if given:
            raise ValueError(f'{", ".join(given)} applies to --compile only: it says how the compiled models are '
                             'built; add --compile (or --compile both)')
    pairs = [parse_pair(p) for p in args.pair]
    kwargs = args.model_kwargs or {}
    if not args.any_pair:
        for baseline, steps in pairs:
            check_pair(baseline, steps, task=args.task, model_kwargs=kwargs)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.profile:
        # name inductor's generated kernels in the profile (set before anything compiles)
        import torch._inductor.config as inductor_config
        inductor_config.cpp.enable_kernel_profile = True
    backend = args.compile_backend or 'inductor'
    variants = {'off': [None], 'on': [backend], 'both': [None, backend]}[args.compile]
    size = args.seq_len if args.task == 'lm' else (args.img_size or 224)
    deadline = time.monotonic() + args.time_budget if args.time_budget else None

    def write(rows):
        if args.csv:
            write_csv(rows, args.csv)
    profiles = [] if args.profile else None
    rows = benchmark_pairs(
        pairs, modes=args.mode, batch_sizes=args.batch_size, img_size=size, device=args.device,
        dtype=args.dtype, channels_last=args.channels_last, warmup=args.warmup, runs=args.runs,
        iters=args.iters, num_classes=args.num_classes, memory=args.memory, progress=args.progress,
        clock=args.clock, task=args.task, model_kwargs=kwargs, compile=variants,
        checkpoint_steps=args.checkpoint_steps, compile_scope=args.compile_scope or 'model', deadline=deadline,
        profiles=profiles, on_rows=write)
    sys.stdout.write(format_ratios(rows))
    if args.csv:  # written by on_rows after every pair, the last one included
        print(f'wrote {args.csv}')
    if args.png:
        plot_ratios(rows, args.png)
        print(f'wrote {args.png}')
    if args.profile:
        atomic_write_text(args.profile, format_profile(profiles))
        print(f'wrote {args.profile}')
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    b = sub.add_parser(
        'benchmark', help='throughput and peak memory of baseline/Steps model pairs, eager or compiled',
        description='Inference and training throughput and peak memory of model pairs (image classifiers, or with '
                    '--task lm the language models), measured in one process, alternating the models, after '
                    'warm-up, median of several runs. Prints the Steps / baseline ratio and the warm-up time (for '
                    'a compiled model: the compilation); writes CSV with timm benchmark column names.')
    b.add_argument('--pair', action='append', required=True, metavar='BASELINE,STEPS',
                   help='a pair of model names, e.g. resnet50,steps_resnet50 or gpt_cpu,steps_gpt_cpu (repeat '
                        'for more pairs)')
    b.add_argument('--task', choices=('cls', 'lm'), default='cls',
                   help='cls: timm image classifiers (images/s); lm: the language models (tokens/s)')
    b.add_argument('--any-pair', action=argparse.BooleanOptionalAction, default=False,
                   help='measure any two models (default: the second must be the Steps twin of the first)')
    b.add_argument('--model-kwargs', nargs='*', action=ParseKwargs, metavar='KEY=VALUE',
                   help='extra arguments for both models, e.g. n_layer=16')
    b.add_argument('--mode', nargs='+', choices=('infer', 'train'), default=['infer', 'train'])
    b.add_argument('--batch-size', type=positive_int, nargs='+', default=[32],
                   help='images (or sequences) per iteration; several values measure each')
    b.add_argument('--img-size', type=positive_int, help='image size (default 224)')
    b.add_argument('--seq-len', type=positive_int, help='context length of task lm (default: the model\'s)')
    b.add_argument('--num-classes', type=positive_int, default=1000)
    b.add_argument('--device', default='cpu')
    b.add_argument('--dtype', default='float32', choices=('float32', 'bfloat16', 'float16'),
                   help='float32, or an autocast dtype')
    b.add_argument('--channels-last', action=argparse.BooleanOptionalAction, default=False)
    b.add_argument('--compile', nargs='?', choices=('off', 'on', 'both'), const='on', default='off',
                   help='torch.compile both models (--compile or --compile on), or measure eager and compiled '
                        'in the same alternating rounds (--compile both); default off')
    b.add_argument('--compile-backend',
                   help='torch.compile backend (default inductor; aot_eager compiles fast, for checks)')
    b.add_argument('--compile-scope', choices=('model', 'blocks'),
                   help='model: compile the whole model, as training with compile does (default); blocks: compile '
                        'each residual block (regional compilation: blocks of one class and width share a graph, '
                        'much faster to compile, no fusion across blocks)')
    b.add_argument('--checkpoint-steps', type=non_negative_int, default=0, metavar='K',
                   help='activation checkpointing of the first K steps of every Steps trunk of the Steps model '
                        '(training memory); default 0')
    b.add_argument('--threads', type=positive_int, help='torch CPU threads (default: torch\'s choice, one per core)')
    b.add_argument('--warmup', type=non_negative_int, default=2,
                   help='untimed iterations per model before the timed runs (a compiled model compiles in the first)')
    b.add_argument('--runs', type=positive_int, default=5,
                   help='timed runs per model (alternating); the median is kept')
    b.add_argument('--iters', type=positive_int, default=3, help='iterations per timed run')
    b.add_argument('--clock', choices=('wall', 'process'), default='wall',
                   help='wall clock (default), or CPU time of this process (CPU only; with --threads 1 it ignores '
                        'time taken by other jobs on a shared machine)')
    b.add_argument('--memory', action=argparse.BooleanOptionalAction, default=True, help='the peak-memory pass')
    b.add_argument('--time-budget', type=positive_float, metavar='SECONDS',
                   help='skip (and record as skipped) cells that would start after this many seconds')
    b.add_argument('--profile', metavar='PATH',
                   help='also profile one timed run of every model (torch.profiler) and write per-operator tables '
                        '(markdown) to PATH')
    b.add_argument('--csv', help='write the rows to this CSV (rewritten after each pair)')
    b.add_argument('--png', help='plot the ratios to this PNG')
    b.add_argument('--progress', action=argparse.BooleanOptionalAction, default=True)
    b.set_defaults(func=run_benchmark)
