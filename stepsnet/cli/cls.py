"""``stepsnet train`` / ``validate`` / ``benchmark``: image classification and speed, over the library functions.

``train`` takes a YAML recipe (``--config configs/cls/<recipe>.yaml``) and any field of
:class:`stepsnet.tasks.classification.ClassificationConfig` as a flag (``--lr 1e-3``, ``--model-ema``,
``--no-amp``); flags override the recipe.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing
from typing import Any, Dict

_FIELD_HELP = {
    'model': 'timm model name (e.g. steps_resnet50, resnet50, test_steps_resnet)',
    'dataset': 'digits (embedded, no data needed), imagefolder, cifar10 or cifar100',
    'data_dir': 'dataset root: <dir>/train and <dir>/val class folders, or the extracted CIFAR python batches',
    'output': 'run folder for checkpoints, log.csv, tb/ and the summary',
    'resume': "checkpoint to resume from, or 'auto' for <output>/last.pth when present",
    'skip_corrupt': 'skip undecodable image files with a warning instead of stopping',
    'nan_tolerance': 'non-finite losses (skipped updates) tolerated before the run stops',
    'model_kwargs': 'extra model arguments as JSON, e.g. \'{"num_steps": [1, 1, 1, 1]}\'',
    'lr': 'peak learning rate; default lr_base * global_batch / lr_base_size',
}


def _add_config_flags(p: argparse.ArgumentParser) -> None:
    """One flag per config field; defaults are None so only flags given on the command line override a recipe."""
    from stepsnet.tasks.classification import ClassificationConfig
    hints = typing.get_type_hints(ClassificationConfig)
    g = p.add_argument_group('config fields (override the recipe)')
    for f in dataclasses.fields(ClassificationConfig):
        flag = '--' + f.name.replace('_', '-')
        hint = hints[f.name]
        args = typing.get_args(hint)
        base = next((a for a in args if a is not type(None)), hint) if args and type(None) in args else hint
        help_ = _FIELD_HELP.get(f.name, '')
        if base is bool:
            g.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_)
        elif typing.get_origin(base) is tuple:
            g.add_argument(flag, type=float, nargs='+', default=None, metavar='X', help=help_)
        elif typing.get_origin(base) is dict:
            g.add_argument(flag, type=json.loads, default=None, metavar='JSON', help=help_)
        else:
            g.add_argument(flag, type=base, default=None, help=help_)


def _overrides(args: argparse.Namespace) -> Dict[str, Any]:
    from stepsnet.tasks.classification import ClassificationConfig
    names = {f.name for f in dataclasses.fields(ClassificationConfig)}
    return {k: v for k, v in vars(args).items() if k in names and v is not None}


def run_train(args: argparse.Namespace) -> int:
    from stepsnet.tasks.classification import load_config, train_classification
    cfg = load_config(args.config, _overrides(args))
    train_classification(cfg)
    return 0


def run_validate(args: argparse.Namespace) -> int:
    from stepsnet.tasks.classification import validate_classification
    r = validate_classification(
        checkpoint=args.checkpoint, model=args.model, dataset=args.dataset, data_dir=args.data_dir,
        split=args.split, batch_size=args.batch_size, workers=args.workers, img_size=args.img_size,
        crop_pct=args.crop_pct, device=args.device, amp=args.amp, channels_last=args.channels_last,
        skip_corrupt=args.skip_corrupt, use_ema=args.ema, progress=not args.no_progress)
    if args.json:
        print(json.dumps(r, indent=2))
    else:
        print(f'{r["model"]} on {r["dataset"]}/{r["split"]}: top-1 {r["top1"]:.2f}  top-5 {r["top5"]:.2f}  '
              f'loss {r["loss"]:.4f}  ({r["images"]} images, {r["skipped"]} skipped, {r["img_size"]}px, '
              f'{r["seconds"]:.1f}s)')
    return 0


def run_benchmark(args: argparse.Namespace) -> int:
    from stepsnet.analysis.speed import benchmark_pairs, format_ratios, parse_pair, plot_ratios, write_csv
    pairs = [parse_pair(p) for p in args.pair]
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    rows = benchmark_pairs(
        pairs, modes=args.mode, batch_size=args.batch_size, img_size=args.img_size, device=args.device,
        dtype=args.dtype, channels_last=args.channels_last, warmup=args.warmup, runs=args.runs,
        iters=args.iters, num_classes=args.num_classes, memory=not args.no_memory, progress=not args.no_progress,
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
    p = sub.add_parser(
        'train', help='train an image classifier (any timm model name) with a YAML recipe',
        description='Image classification with timm\'s data pipeline, optimizers, schedulers and EMA; AMP, '
                    'channels_last, grad checkpointing, torch.compile; DDP when launched with torchrun. '
                    'Example: stepsnet train --config configs/cls/digits_cpu.yaml')
    p.add_argument('--config', '-c', help='YAML recipe (configs/cls/*.yaml); flags override its fields')
    _add_config_flags(p)
    p.set_defaults(func=run_train)

    v = sub.add_parser(
        'validate', help='top-1 / top-5 of a checkpoint on a dataset split',
        description='Evaluate a training checkpoint (or an untrained --model) on ImageFolder, CIFAR or digits.')
    v.add_argument('--checkpoint', help='checkpoint written by stepsnet train (last.pth / best.pth)')
    v.add_argument('--model', help='timm model name (taken from the checkpoint when omitted)')
    v.add_argument('--dataset', default='digits', help='digits, imagefolder, cifar10 or cifar100')
    v.add_argument('--data-dir', help='dataset root (ImageFolder: holds <split>/<class>/<image>)')
    v.add_argument('--split', default='val')
    v.add_argument('--batch-size', type=int, default=128)
    v.add_argument('--workers', type=int, default=2)
    v.add_argument('--img-size', type=int, help='input size (default: the checkpoint\'s)')
    v.add_argument('--crop-pct', type=float, help='center-crop fraction (default: the checkpoint\'s)')
    v.add_argument('--device', default='auto')
    v.add_argument('--amp', action='store_true', help='bfloat16 autocast')
    v.add_argument('--channels-last', action='store_true')
    v.add_argument('--skip-corrupt', action='store_true', help='skip undecodable images with a warning')
    v.add_argument('--ema', action='store_true', help='evaluate the checkpoint\'s EMA weights')
    v.add_argument('--json', action='store_true', help='print the result as JSON')
    v.add_argument('--no-progress', action='store_true')
    v.set_defaults(func=run_validate)

    b = sub.add_parser(
        'benchmark', help='throughput (images/s) and peak memory of baseline/Steps model pairs',
        description='Inference and training throughput and peak memory of model pairs, measured in one process, '
                    'alternating the two models, after warm-up, median of several runs. Prints the Steps / '
                    'baseline ratio; writes CSV with timm benchmark column names.')
    b.add_argument('--pair', action='append', required=True, metavar='BASELINE,STEPS',
                   help='a pair of timm model names, e.g. resnet50,steps_resnet50 (repeat for more pairs)')
    b.add_argument('--mode', nargs='+', choices=('infer', 'train'), default=['infer', 'train'])
    b.add_argument('--batch-size', type=int, default=32)
    b.add_argument('--img-size', type=int, default=224)
    b.add_argument('--num-classes', type=int, default=1000)
    b.add_argument('--device', default='cpu')
    b.add_argument('--dtype', default='float32', choices=('float32', 'bfloat16', 'float16'),
                   help='float32, or an autocast dtype')
    b.add_argument('--channels-last', action='store_true')
    b.add_argument('--threads', type=int, help='torch CPU threads (default: torch\'s choice, one per core)')
    b.add_argument('--warmup', type=int, default=2, help='untimed iterations per model before each timed run')
    b.add_argument('--runs', type=int, default=5, help='timed runs per model (alternating); the median is kept')
    b.add_argument('--iters', type=int, default=3, help='iterations per timed run')
    b.add_argument('--clock', choices=('wall', 'process'), default='wall',
                   help='wall clock (default), or CPU time of this process (CPU only; with --threads 1 it ignores '
                        'time taken by other jobs on a shared machine)')
    b.add_argument('--no-memory', action='store_true', help='skip the peak-memory pass')
    b.add_argument('--csv', help='write the rows to this CSV')
    b.add_argument('--png', help='plot the ratios to this PNG')
    b.add_argument('--no-progress', action='store_true')
    b.set_defaults(func=run_benchmark)
