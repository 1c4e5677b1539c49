"""``stepsnet analyze``: the paper's analyses over the functions of :mod:`stepsnet.analysis`.

Sub-commands: ``shortcut`` (Fig. 2), ``mask`` (Table 6), ``drop-step`` (Table 7), ``depth`` (Fig. 6c/d) and
``pilot`` (Fig. 1 at CPU scale: ``stepsnet compare depth`` with the pilot's defaults and the same flags). Each
prints a markdown table and writes CSV (and PNG where there is a plot). Every argument is checked before any model
is built or trained.
"""
from __future__ import annotations

import argparse
import os

from stepsnet.cli import compare as compare_cli
from stepsnet.cli.common import ParseKwargs, integer, non_negative_int, positive_int
from stepsnet.cli.compare import add_depth_flags, add_run_flags
from stepsnet.utils.machine import cap_workers
from stepsnet.utils.names import PAIRINGS, plural

DATASET_HELP = 'digits (embedded), imagefolder, cifar10, cifar100, or random (noise; shortcut only)'


# ---------------------------------------------------------------------------------------------- shortcut ratio

def run_shortcut(args: argparse.Namespace) -> int:
    from stepsnet.analysis import jobs, shortcut
    todo = jobs.shortcut_jobs(args.model or [], args.model_kwargs, args.deit_blocks or [], args.kinds, args.width,
                              args.heads, args.img_size, args.patch_size, args.checkpoint or [], args.labels or [],
                              args.seed)
    profiles = jobs.measure_shortcut(todo, args.dataset, args.data_dir, args.split, args.batch_size, args.trunk,
                                     args.reduction, args.seed, args.progress)
    os.makedirs(args.out_dir, exist_ok=True)
    csv_path = os.path.join(args.out_dir, f'{args.name}.csv')
    png_path = os.path.join(args.out_dir, f'{args.name}.png')
    shortcut.write_profiles_csv(profiles, csv_path)
    title = args.title or f'shortcut ratio on {args.dataset} ({plural(args.batch_size, "image")}, {args.reduction} std)'
    shortcut.plot_profiles(profiles, png_path, title)
    print(shortcut.summary_table(profiles), end='')
    print(f'wrote {csv_path}\nwrote {png_path}')
    return 0


# ---------------------------------------------------------------------------------------------- mask, drop-step

def _models_and_loader(args: argparse.Namespace):
    """The models to ablate (one per checkpoint, or an untrained ``--model``) and the evaluation loader."""
    from stepsnet.analysis import ablation, jobs
    models, dcfg = jobs.ablation_models(args.checkpoint or [], args.model, args.model_kwargs, args.img_size,
                                        args.dataset, args.seed, args.device, args.trunk)
    return models, ablation.eval_loader(dcfg, args.dataset, args.data_dir, args.split, args.batch_size,
                                        cap_workers(args.workers)[0])


def _report_ablation(args: argparse.Namespace, tables: list, how: str, table: str, differences) -> int:
    """Print an ablation's table over the models (and, for several, the paired differences) and write its CSV."""
    from stepsnet.analysis import ablation, jobs
    print(f'{plural(len(tables), "model")}; {how}mean ± std over models', flush=True)
    print(table, end='')
    if len(tables) > 1:
        print('\n' + ablation.format_differences(differences(tables)), end='')
    jobs.write_rows_csv([dict(r, model=i) for i, t in enumerate(tables) for r in t], args.csv)
    return 0


def run_mask(args: argparse.Namespace) -> int:
    from stepsnet.analysis import ablation
    models, loader = _models_and_loader(args)
    tables = [ablation.mask_table(m, loader, args.sizes, args.trunk, args.device, args.progress) for m in models]
    rows = ablation.aggregate(tables, 'n', ('slow_top1', 'slow_loss', 'fast_top1', 'fast_loss'))
    return _report_ablation(args, tables, '', ablation.format_mask_table(rows, paper=args.paper),
                            ablation.mask_differences)


def run_drop_step(args: argparse.Namespace) -> int:
    from stepsnet.analysis import ablation
    models, loader = _models_and_loader(args)
    tables = [ablation.drop_step_table(m, loader, args.blocks, args.trunk, args.device, progress=args.progress)
              for m in models]
    rows = ablation.aggregate(tables, 'step', ('top1', 'loss'))
    return _report_ablation(args, tables, 'each step\'s score is the mean over its windows; ',
                            ablation.format_drop_table(rows, paper=args.paper), ablation.drop_differences)


# ---------------------------------------------------------------------------------------------- depth

def run_depth(args: argparse.Namespace) -> int:
    from stepsnet.analysis import depth_speed as depth
    for family in args.family:  # every configuration is checked before the first model is measured
        for blocks in args.blocks:
            for kind in ('residual', 'steps'):
                depth.model_config(family, blocks, kind, args.width, args.img_size)
    rows = depth.depth_benchmark(
        families=args.family, blocks=args.blocks, width=args.width, img_size=args.img_size, device=args.device,
        batch_sizes=tuple(args.batch_sizes), throughput_batch=args.throughput_batch, warmup=args.warmup,
        runs=args.runs, memory=args.memory, memory_mode=args.memory_mode, threads=args.threads,
        progress=args.progress, clock=args.clock)
    print(depth.format_depth_table(rows), end='')
    os.makedirs(args.out_dir, exist_ok=True)
    depth.write_depth_csv(rows, os.path.join(args.out_dir, f'{args.name}.csv'))
    depth.plot_depth(rows, os.path.join(args.out_dir, f'{args.name}.png'))
    print(f'wrote {os.path.join(args.out_dir, args.name)}.csv / .png')
    return 0


# ---------------------------------------------------------------------------------------------- parser

def _add_eval_args(p: argparse.ArgumentParser) -> None:
    p.add_argument('--checkpoint', nargs='+', help='stepsnet train checkpoints (last.pth / best.pth); several '
                   'independently trained models give mean ± std')
    p.add_argument('--model', help='expected model name of the checkpoints, or an untrained model without one')
    p.add_argument('--model-kwargs', nargs='*', action=ParseKwargs, metavar='KEY=VALUE',
                   help='model arguments (with --model and no checkpoint)')
    p.add_argument('--dataset', default='digits', help='digits (embedded), imagefolder, cifar10 or cifar100')
    p.add_argument('--data-dir', help='dataset root')
    p.add_argument('--split', default='val')
    p.add_argument('--img-size', type=positive_int, help='input size (default: the checkpoint\'s)')
    p.add_argument('--batch-size', type=positive_int, default=128)
    p.add_argument('--workers', type=non_negative_int, default=0,
                   help='data-loader workers (default 0; at most this machine\'s cores)')
    p.add_argument('--device', default='cpu')
    p.add_argument('--trunk', help='Steps module path (default: the one with the most blocks)')
    p.add_argument('--seed', type=integer, default=0)
    p.add_argument('--csv', help='write every model\'s rows to this CSV')
    p.add_argument('--paper', action=argparse.BooleanOptionalAction, default=False,
                   help='print the paper\'s numbers under the table')
    p.add_argument('--progress', action=argparse.BooleanOptionalAction, default=True)


def register(sub: argparse._SubParsersAction) -> None:
    a = sub.add_parser('analyze', help='the paper\'s analyses: shortcut ratio, masking, step dropping, depth',
                       description='Reproduce the analyses of the paper (Fig. 1, 2, 6; Tables 6, 7).')
    asub = a.add_subparsers(dest='analysis', metavar='ANALYSIS')
    asub.required = True

    s = asub.add_parser(
        'shortcut', help='shortcut ratio sigma_0 / sigma_l along the trunk (Fig. 2)',
        description='gamma_l = sigma_0 / sigma_l after every block of a residual or Steps trunk, on a real batch. '
                    'Example (Fig. 2a at CPU scale): stepsnet analyze shortcut --deit-blocks 24 96 --width 128')
    s.add_argument('--model', nargs='+', help='timm model names, measured at initialisation')
    s.add_argument('--model-kwargs', nargs='*', action=ParseKwargs, metavar='KEY=VALUE',
                   help='arguments for every --model')
    s.add_argument('--checkpoint', nargs='+', help='stepsnet train checkpoints, measured as trained')
    s.add_argument('--labels', nargs='+', help='labels of the checkpoints, in order')
    s.add_argument('--deit-blocks', type=positive_int, nargs='+', help='depth-scaled DeiT-like trunks with these '
                   'block counts (their Steps twins have the same blocks and final width, as in Fig. 2)')
    s.add_argument('--kinds', nargs='+', default=['residual', 'steps'], choices=('residual', 'steps'))
    s.add_argument('--width', type=positive_int, default=384, help='trunk width of --deit-blocks models')
    s.add_argument('--heads', type=positive_int, default=6)
    s.add_argument('--patch-size', type=positive_int, default=16)
    s.add_argument('--img-size', type=positive_int, help='input size (default: the model\'s / checkpoint\'s; 224)')
    s.add_argument('--dataset', default='digits', help=DATASET_HELP)
    s.add_argument('--data-dir')
    s.add_argument('--split', default='val')
    s.add_argument('--batch-size', type=positive_int, default=16)
    s.add_argument('--trunk', help='trunk module path (default: the Steps module or the longest block sequence)')
    s.add_argument('--reduction', default='token', choices=('token', 'global'),
                   help='token: std over channels per position (what a pre-norm sees); global: over all elements')
    s.add_argument('--seed', type=integer, default=0, help='seed of the weights at init and of the image subset')
    s.add_argument('--out-dir', default='runs/analyze')
    s.add_argument('--name', default='shortcut_ratio', help='file name stem of the CSV and PNG')
    s.add_argument('--title')
    s.add_argument('--progress', action=argparse.BooleanOptionalAction, default=True)
    s.set_defaults(func=run_shortcut)

    m = asub.add_parser(
        'mask', help='zero the first / last n input channels of the Steps trunk (Table 6)',
        description='Top-1 and loss with the first n (slow path) or last n (fast path) channels of the Steps '
                    'trunk\'s input zeroed, without retraining; mean ± std over the checkpoints given.')
    _add_eval_args(m)
    m.add_argument('--sizes', type=non_negative_int, nargs='+',
                   help='channel counts n (default: k * width / 12, k = 0..5)')
    m.set_defaults(func=run_mask)

    d = asub.add_parser(
        'drop-step', help='drop a similar amount of computation from each step (Table 7)',
        description='Top-1 and loss with the blocks of one window of a step made the identity, the same MACs '
                    'from each step; each step is the mean over every window of that size inside it; mean ± std '
                    'over the checkpoints given.')
    _add_eval_args(d)
    d.add_argument('--blocks', type=positive_int, default=1, help='budget, in blocks of the widest step (default 1)')
    d.set_defaults(func=run_drop_step)

    b = asub.add_parser(
        'depth', help='throughput and memory of residual and Steps models as depth grows (Fig. 6c/d)',
        description='Residual and Steps models of growing depth at a fixed width, paired at equal blocks (the Steps '
                    'model has about half the FLOPs): inference throughput, and memory as the growth of peak '
                    'memory from batch 32 to 64 (CPU: peak RSS; CUDA: peak allocated).')
    b.add_argument('--family', nargs='+', default=['deit', 'swin'], choices=('deit', 'swin'))
    b.add_argument('--blocks', type=positive_int, nargs='+', default=[12, 24, 48, 96],
                   help='total residual blocks per model (DeiT: trunk blocks; Swin: all stages, >= 18)')
    b.add_argument('--width', type=positive_int, help='DeiT trunk width / Swin stage-1 width (default 192 / 96)')
    b.add_argument('--img-size', type=positive_int, help='input size (default 64: DeiT patch 8, Swin window 4)')
    b.add_argument('--device', default='cpu')
    b.add_argument('--batch-sizes', type=positive_int, nargs=2, default=[32, 64], metavar=('SMALL', 'LARGE'))
    b.add_argument('--throughput-batch', type=positive_int, default=32)
    b.add_argument('--warmup', type=non_negative_int, default=1, help='untimed forwards per model (default 1)')
    b.add_argument('--runs', type=positive_int, default=3)
    b.add_argument('--threads', type=positive_int, help='torch threads (default: torch\'s)')
    b.add_argument('--clock', choices=('wall', 'process'), default='wall',
                   help='wall clock, or the CPU time of this process (CPU only; with --threads 1 it ignores the time '
                        'taken by other jobs on a shared machine)')
    b.add_argument('--memory-mode', default='train', choices=('train', 'infer'),
                   help='train: forward + backward (activations kept, as in training); infer: no_grad forward')
    b.add_argument('--memory', action=argparse.BooleanOptionalAction, default=True)
    b.add_argument('--out-dir', default='runs/analyze')
    b.add_argument('--name', default='depth_benchmark')
    b.add_argument('--progress', action=argparse.BooleanOptionalAction, default=True)
    b.set_defaults(func=run_depth)

    p = asub.add_parser(
        'pilot', help='residual vs Steps DeiT-like models of growing depth, same recipe and seeds (Fig. 1)',
        description='The depth pilot: `stepsnet compare depth` with more depths and both pairings by default. '
                    'Residual DeiT-like trunks of growing depth against Steps trunks paired by equal compute (the '
                    'Table 1 twin, twice the blocks) and by equal blocks, trained with the same recipe and seeds. '
                    'Seeds are a count: --seeds 8 trains seeds 0-7. Defaults: 30 epochs (--set epochs=N), 3 seeds.')
    add_run_flags(p, 'runs/analyze/pilot', '3', '2', '1')
    add_depth_flags(p, '4 8 16 32', 'compute blocks')
    # the pilot's protocol: 3 seeds of 30 epochs (the recipe's other fields as in compare depth)
    p.set_defaults(func=compare_cli.run, trains=True, task='depth', blocks=[4, 8, 16, 32], pairing=list(PAIRINGS),
                   out='runs/analyze/pilot', seeds=3, set={'epochs': 30})
