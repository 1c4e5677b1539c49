"""``stepsnet train-cls`` (``stepsnet train`` of a ``task: cls`` recipe) / ``validate``: image classification,
argument parsing only.

``train-cls`` takes a YAML recipe (``--config configs/cls/<recipe>.yaml``) and any field of
:class:`stepsnet.tasks.classification.ClassificationConfig` as a flag (``--lr 1e-3``, ``--model-ema``,
``--no-amp``); flags override the recipe.
"""
from __future__ import annotations

import argparse
import json
import os

from stepsnet.cli.common import add_config_flags, config_from_flags, fraction, non_negative_int, positive_int
from stepsnet.utils.machine import cap_workers
from stepsnet.utils.names import plural
from stepsnet.utils.tasks import TASKS

CONFIG = TASKS['cls'].config

_FIELD_HELP = {
    'model': 'timm model name (e.g. steps_resnet50, resnet50, test_steps_resnet)',
    'dataset': 'digits (embedded, no data needed), imagefolder, cifar10 or cifar100',
    'data_dir': 'dataset root: <dir>/train and <dir>/val class folders, or the extracted CIFAR python batches',
    'out_dir': 'run folder for checkpoints, log.csv, tb/ and results.json',
    'skip_corrupt': 'skip undecodable image files with a warning instead of stopping',
    'nan_tolerance': 'non-finite losses (skipped updates) tolerated before the run stops',
    'model_kwargs': 'extra model arguments, e.g. num_steps=(1,1,1,1)',
    'initial_checkpoint': 'initial weights: a stepsnet checkpoint, a timm state dict (.pth) or .safetensors',
    'lr': 'peak learning rate; default lr_base * global_batch / lr_base_size',
}


def run_train(args: argparse.Namespace) -> int:
    cfg = config_from_flags(args, CONFIG)
    from stepsnet.tasks.classification import train_classification
    summary = train_classification(cfg)
    if os.environ.get('RANK', '0') != '0' or cfg.dry_run:  # only rank 0 reports; a dry run has printed its report
        return 0
    print(f'{summary["model"]}: {plural(summary["epochs"], "epoch")}; validation top-1 {summary["final_top1"]:.2f} '
          f'(best {summary["best_top1"]:.2f}); run folder {summary["out_dir"]}')
    return 0


def run_validate(args: argparse.Namespace) -> int:
    from stepsnet.tasks.classification import validate_classification
    r = validate_classification(
        checkpoint=args.checkpoint, model=args.model, dataset=args.dataset, data_dir=args.data_dir,
        split=args.split, batch_size=args.batch_size, workers=cap_workers(args.workers)[0], img_size=args.img_size,
        crop_pct=args.crop_pct, device=args.device, amp=args.amp, channels_last=args.channels_last,
        skip_corrupt=args.skip_corrupt, use_ema=args.ema, progress=args.progress)
    if args.json:
        print(json.dumps(r, indent=2))
    else:
        print(f'{r["model"]} on {r["dataset"]}/{r["split"]}: top-1 {r["top1"]:.2f}  top-5 {r["top5"]:.2f}  '
              f'loss {r["loss"]:.4f}  ({plural(r["images"], "image")}, {r["skipped"]} skipped, {r["img_size"]}px, '
              f'{r["seconds"]:.1f}s)')
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        'train-cls', help='train an image classifier (any timm model name) with a YAML recipe',
        description='Image classification with timm\'s data pipeline, optimizers, schedulers and EMA; AMP, '
                    'channels_last, grad checkpointing, torch.compile; DDP when launched with torchrun. '
                    'Example: stepsnet train-cls --config configs/cls/digits_cpu.yaml (or stepsnet train -c ...)')
    p.add_argument('--config', '-c', help='YAML recipe (configs/cls/*.yaml); flags override its fields')
    add_config_flags(p, CONFIG, help=_FIELD_HELP)
    p.set_defaults(func=run_train, trains=True)

    v = sub.add_parser(
        'validate', help='top-1 / top-5 of a checkpoint, an exported model or an untrained model on a split',
        description='Evaluate a training checkpoint (--checkpoint), a weights folder in timm\'s layout '
                    '(--model local-dir:DIR) or an untrained --model on ImageFolder, CIFAR or digits.')
    v.add_argument('--checkpoint', help='checkpoint written by stepsnet train (last.pth / best.pth)')
    v.add_argument('--model', help='timm model name or local-dir:DIR (taken from the checkpoint when omitted)')
    v.add_argument('--dataset', default='digits', help='digits, imagefolder, cifar10 or cifar100')
    v.add_argument('--data-dir', help='dataset root (ImageFolder: holds <split>/<class>/<image>)')
    v.add_argument('--split', default='val')
    v.add_argument('--batch-size', type=positive_int, default=128)
    v.add_argument('--workers', type=non_negative_int, default=2,
                   help='data-loader workers (default 2; at most this machine\'s cores)')
    v.add_argument('--img-size', type=positive_int, help='input size (default: the model\'s)')
    v.add_argument('--crop-pct', type=fraction, help='center-crop fraction (default: the model\'s)')
    v.add_argument('--device', default='auto')
    v.add_argument('--amp', action=argparse.BooleanOptionalAction, default=False, help='bfloat16 autocast')
    v.add_argument('--channels-last', action=argparse.BooleanOptionalAction, default=False)
    v.add_argument('--skip-corrupt', action=argparse.BooleanOptionalAction, default=False,
                   help='skip undecodable images with a warning')
    v.add_argument('--ema', action=argparse.BooleanOptionalAction, default=False,
                   help='evaluate the checkpoint\'s EMA weights')
    v.add_argument('--json', action=argparse.BooleanOptionalAction, default=False, help='print the result as JSON')
    v.add_argument('--progress', action=argparse.BooleanOptionalAction, default=True)
    v.set_defaults(func=run_validate)
