"""``train-det``, ``eval-det``, ``train-seg``, ``eval-seg``: detection and segmentation, argument parsing only."""
import argparse
import os

from stepsnet.cli.common import add_config_flags, config_from_flags, int_list, positive_int
from stepsnet.utils.names import DETECTOR_ARCHS, SEG_EVAL_MODES, plural
from stepsnet.utils.tasks import TASKS

DET_CONFIG = TASKS['det'].config
SEG_CONFIG = TASKS['seg'].config


def _is_main() -> bool:
    """Print once under torchrun: only rank 0 reports."""
    return os.environ.get('RANK', '0') == '0'


def _report(model: str, cfg, result, format_metrics) -> int:
    if _is_main() and not cfg.dry_run:  # a dry run has printed its report
        print(f'{model}: {plural(result["iters"], "iteration")}; {format_metrics(result["metrics"])} (split '
              f'{cfg.val_split}); checkpoint {result["checkpoint"]}')
    return 0


def _run_train_det(args: argparse.Namespace) -> int:
    cfg = config_from_flags(args, DET_CONFIG)
    from stepsnet.tasks import detection
    return _report(f'{cfg.arch} {cfg.backbone}', cfg, detection.train_detection(cfg), detection.format_metrics)


def _run_eval_det(args: argparse.Namespace) -> int:
    from stepsnet.tasks import detection
    m = detection.evaluate_detection(args.checkpoint, data_dir=args.data_dir, split=args.split,
                                     image_dir=args.images, ann_file=args.ann, device=args.device,
                                     batch_size=args.batch_size, out=args.out, progress=args.progress,
                                     verbose=args.verbose)
    if not _is_main():
        return 0
    print('| metric | AP | AP50 | AP75 | APs | APm | APl |\n|---|---|---|---|---|---|---|')
    for kind in ('bbox', 'segm'):
        if f'{kind}_AP' in m:
            cells = ' | '.join(f'{100 * m[f"{kind}_{n}"]:.1f}' for n in ('AP', 'AP50', 'AP75', 'APs', 'APm', 'APl'))
            print(f'| {kind} | {cells} |')
    return 0


def _run_train_seg(args: argparse.Namespace) -> int:
    cfg = config_from_flags(args, SEG_CONFIG)
    from stepsnet.tasks import segmentation
    return _report(f'upernet {cfg.backbone}', cfg, segmentation.train_segmentation(cfg), segmentation.format_metrics)


def _run_eval_seg(args: argparse.Namespace) -> int:
    from stepsnet.tasks import segmentation
    test_scale = [] if not args.resize else args.test_scale
    m = segmentation.evaluate_segmentation(
        args.checkpoint, data_dir=args.data_dir, split=args.split, mode=args.mode, crop_size=args.crop_size,
        stride=args.stride, test_scale=test_scale, device=args.device, out=args.out, progress=args.progress)
    if _is_main():
        print(segmentation.format_metrics(m))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        'train-det', help='train a detector (Mask R-CNN / Faster R-CNN / RetinaNet + FPN) on COCO-format data',
        description=f'Train from a YAML config (configs/det/*.yaml) with command-line overrides; architectures '
                    f'{", ".join(DETECTOR_ARCHS)}. Launch with torchrun for DDP (same command).')
    p.add_argument('--config', '-c', help='YAML file of DetectionConfig fields')
    add_config_flags(p, DET_CONFIG)
    p.set_defaults(func=_run_train_det, trains=True)

    p = sub.add_parser('eval-det', help='COCO box / mask AP of a detection checkpoint (pycocotools)')
    p.add_argument('--checkpoint', required=True, help='last.pth / best.pth written by train-det')
    p.add_argument('--data-dir', help='data root (default: the run\'s)')
    p.add_argument('--split', help='split name, e.g. val2017 (default: the run\'s val_split)')
    p.add_argument('--images', help='explicit image folder (with --ann)')
    p.add_argument('--ann', help='explicit instances JSON (with --images)')
    p.add_argument('--batch-size', type=positive_int, default=1)
    p.add_argument('--device', default='auto', help='auto, cpu, cuda')
    p.add_argument('--out', help='write the metrics as JSON here')
    p.add_argument('--verbose', action=argparse.BooleanOptionalAction, default=False,
                   help='print pycocotools\' tables')
    p.add_argument('--progress', action=argparse.BooleanOptionalAction, default=True)
    p.set_defaults(func=_run_eval_det)

    p = sub.add_parser(
        'train-seg', help='train UperNet on ADE20K-format data',
        description='Train from a YAML config (configs/seg/*.yaml) with command-line overrides. Launch with '
                    'torchrun for DDP (same command).')
    p.add_argument('--config', '-c', help='YAML file of SegmentationConfig fields')
    add_config_flags(p, SEG_CONFIG)
    p.set_defaults(func=_run_train_seg, trains=True)

    p = sub.add_parser('eval-seg', help='mIoU / mAcc / aAcc of a segmentation checkpoint')
    p.add_argument('--checkpoint', required=True, help='last.pth / best.pth written by train-seg')
    p.add_argument('--data-dir', help='data root (default: the run\'s)')
    p.add_argument('--split', help='split name (default: the run\'s val_split)')
    p.add_argument('--mode', choices=SEG_EVAL_MODES,
                   help='whole image or sliding window (default: the run\'s)')
    p.add_argument('--crop-size', type=int_list, metavar='H,W', help='window for --mode slide')
    p.add_argument('--stride', type=int_list, metavar='H,W', help='window step for --mode slide')
    p.add_argument('--test-scale', type=int_list, metavar='LONG,SHORT', help='resize before inference')
    p.add_argument('--resize', action=argparse.BooleanOptionalAction, default=True,
                   help='--no-resize infers at the original size')
    p.add_argument('--device', default='auto', help='auto, cpu, cuda')
    p.add_argument('--out', help='write the metrics as JSON here')
    p.add_argument('--progress', action=argparse.BooleanOptionalAction, default=True)
    p.set_defaults(func=_run_eval_seg)
