"""``train-det``, ``eval-det``, ``train-seg``, ``eval-seg`` and ``data synth-coco`` / ``data synth-ade``:
argument parsing only; the work is in :mod:`stepsnet.tasks.detection`, :mod:`stepsnet.tasks.segmentation` and
:mod:`stepsnet.data.synthetic`."""
import argparse
import dataclasses
import os
import sys
import typing
from typing import Any, Dict, Optional

import yaml


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ('1', 'true', 'yes', 'on'):
        return True
    if value in ('0', 'false', 'no', 'off'):
        return False
    raise argparse.ArgumentTypeError(f'expected true or false, got {text!r}')


def _yaml(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise argparse.ArgumentTypeError(f'expected a YAML value (e.g. 3, [8, 11], null), got {text!r}') from e


def _key_value(text: str) -> tuple:
    if '=' not in text:
        raise argparse.ArgumentTypeError(f'expected KEY=VALUE, got {text!r}')
    key, value = text.split('=', 1)
    return key.strip(), _yaml(value)


def _int_pair(text: str) -> list:
    parts = [p for p in text.replace('x', ',').split(',') if p.strip()]
    try:
        values = [int(p) for p in parts]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f'expected two integers such as 512,512, got {text!r}') from e
    if len(values) != 2:
        raise argparse.ArgumentTypeError(f'expected two integers such as 512,512, got {text!r}')
    return values


def _is_main() -> bool:
    """Print once under torchrun: only rank 0 reports."""
    return os.environ.get('RANK', '0') == '0'


def _converter(tp: Any):
    origin = typing.get_origin(tp)
    if origin is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        tp = args[0] if len(args) == 1 else tp
    return {int: int, float: float, bool: _bool, str: str}.get(tp, _yaml)


def _add_config_options(p: argparse.ArgumentParser, cls: type) -> None:
    hints = typing.get_type_hints(cls)
    g = p.add_argument_group('options (override the config file; lists as YAML, e.g. --lr-steps "[8, 11]")')
    for f in dataclasses.fields(cls):
        if f.name in ('model_kwargs', 'detector_kwargs'):
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        g.add_argument('--' + f.name.replace('_', '-'), dest=f.name, type=_converter(hints[f.name]), default=None,
                       metavar=f.name.upper(), help=f'default {default!r}')
    p.add_argument('--model-arg', action='append', type=_key_value, metavar='KEY=VALUE',
                   help='backbone option for timm.create_model, e.g. --model-arg drop_path_rate=0.2 (repeatable)')


def _overrides(args: argparse.Namespace, cls: type, load_config, config_path: Optional[str]) -> Dict[str, Any]:
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
              if f.name != 'model_kwargs' and getattr(args, f.name, None) is not None}
    if args.model_arg:
        base = load_config(cls, config_path).model_kwargs if config_path else {}
        values['model_kwargs'] = {**base, **dict(args.model_arg)}
    return values


def _run_train_det(args: argparse.Namespace) -> int:
    from stepsnet.tasks.detection import DetectionConfig, format_metrics, load_config, train_detection
    cfg = load_config(DetectionConfig, args.config, **_overrides(args, DetectionConfig, load_config, args.config))
    try:
        result = train_detection(cfg)
    except FloatingPointError as e:
        print(f'stepsnet train-det: stopped: {e}', file=sys.stderr)
        return 3
    if _is_main():
        print(f'{cfg.arch} {cfg.backbone}: {result["iters"]} iterations; {format_metrics(result["metrics"])}; '
              f'checkpoint {result["checkpoint"]}')
    return 0


def _run_eval_det(args: argparse.Namespace) -> int:
    from stepsnet.tasks.detection import evaluate_detection
    m = evaluate_detection(args.checkpoint, data_dir=args.data_dir, split=args.split, image_dir=args.images,
                           ann_file=args.ann, device=args.device, batch_size=args.batch_size, out=args.out,
                           progress=not args.no_progress, verbose=args.verbose)
    if not _is_main():
        return 0
    print('| metric | AP | AP50 | AP75 | APs | APm | APl |\n|---|---|---|---|---|---|---|')
    for kind in ('bbox', 'segm'):
        if f'{kind}_AP' in m:
            cells = ' | '.join(f'{100 * m[f"{kind}_{n}"]:.1f}' for n in ('AP', 'AP50', 'AP75', 'APs', 'APm', 'APl'))
            print(f'| {kind} | {cells} |')
    return 0


def _run_train_seg(args: argparse.Namespace) -> int:
    from stepsnet.tasks.segmentation import SegmentationConfig, format_metrics, load_config, train_segmentation
    cfg = load_config(SegmentationConfig, args.config,
                      **_overrides(args, SegmentationConfig, load_config, args.config))
    try:
        result = train_segmentation(cfg)
    except FloatingPointError as e:
        print(f'stepsnet train-seg: stopped: {e}', file=sys.stderr)
        return 3
    if _is_main():
        print(f'upernet {cfg.backbone}: {result["iters"]} iterations; {format_metrics(result["metrics"])}; '
              f'checkpoint {result["checkpoint"]}')
    return 0


def _run_eval_seg(args: argparse.Namespace) -> int:
    from stepsnet.tasks.segmentation import evaluate_segmentation, format_metrics
    test_scale = [] if args.no_resize else args.test_scale
    m = evaluate_segmentation(args.checkpoint, data_dir=args.data_dir, split=args.split, mode=args.mode,
                              crop_size=args.crop_size, stride=args.stride, test_scale=test_scale,
                              device=args.device, out=args.out, progress=not args.no_progress)
    if _is_main():
        print(format_metrics(m))
    return 0


def _run_synth_coco(args: argparse.Namespace) -> int:
    from stepsnet.data.synthetic import make_synthetic_coco
    s = make_synthetic_coco(args.out, num_train=args.num_train, num_val=args.num_val, size=tuple(args.size),
                            max_shapes=args.max_shapes, seed=args.seed)
    for split, v in s['splits'].items():
        print(f'{split}: {v["images"]} images, {v["annotations"]} instances -> {v["ann_file"]}')
    print(f'categories: {", ".join(s["categories"])}')
    return 0


def _run_synth_ade(args: argparse.Namespace) -> int:
    from stepsnet.data.synthetic import make_synthetic_ade
    s = make_synthetic_ade(args.out, num_train=args.num_train, num_val=args.num_val, size=tuple(args.size),
                           max_shapes=args.max_shapes, seed=args.seed)
    for split, v in s['splits'].items():
        print(f'{split}: {v["images"]} images -> {v["image_dir"]}, {v["ann_dir"]}')
    print(f'num_classes {s["num_classes"]} ({", ".join(s["classes"])}; label 0 is ignored)')
    return 0


def _data_subparsers(sub: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """The ``stepsnet data`` group's subcommands (created here when no other module made the group)."""
    data = sub.choices.get('data')
    if data is None:
        data = sub.add_parser('data', help='prepare datasets', description='Prepare datasets once for training.')
        group = data.add_subparsers(dest='data_command', metavar='DATA_COMMAND')
        group.required = True
        return group
    for action in data._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    raise RuntimeError('the "data" command has no subcommands group')


def _add_synth_options(p: argparse.ArgumentParser, default_out: str) -> None:
    p.add_argument('--out', default=default_out, help=f'output folder (default {default_out})')
    p.add_argument('--num-train', type=int, default=16, help='training images (default 16)')
    p.add_argument('--num-val', type=int, default=8, help='validation images (default 8)')
    p.add_argument('--size', type=_int_pair, default=[96, 128], metavar='H,W',
                   help='nominal image height,width (each image varies by 15%%; default 96,128)')
    p.add_argument('--max-shapes', type=int, default=3, help='most shapes per image (default 3)')
    p.add_argument('--seed', type=int, default=0)


def register(sub: argparse._SubParsersAction) -> None:
    from stepsnet.tasks.detection import ARCHS, DetectionConfig
    from stepsnet.tasks.segmentation import EVAL_MODES, SegmentationConfig

    # data synth-coco / synth-ade
    data_sub = _data_subparsers(sub)
    p = data_sub.add_parser(
        'synth-coco', help='write a small synthetic COCO instance data set (shapes with masks)',
        description='Coloured shapes with exact polygon masks in the COCO layout: <out>/{train2017,val2017}/ and '
                    '<out>/annotations/instances_{train2017,val2017}.json. Runs detection end to end offline.')
    _add_synth_options(p, 'runs/data/synth-coco')
    p.set_defaults(func=_run_synth_coco)
    p = data_sub.add_parser(
        'synth-ade', help='write a small synthetic ADE20K-format segmentation data set',
        description='Coloured shapes in the ADE20K layout: <out>/images/{training,validation}/*.jpg and '
                    '<out>/annotations/{training,validation}/*.png; 4 classes (background + 3 shapes), label 0 '
                    '(shape outlines) ignored. Runs segmentation end to end offline (num_classes: 4).')
    _add_synth_options(p, 'runs/data/synth-ade')
    p.set_defaults(func=_run_synth_ade)

    # train-det
    p = sub.add_parser(
        'train-det', help='train a detector (Mask R-CNN / Faster R-CNN / RetinaNet + FPN) on COCO-format data',
        description=f'Train from a YAML config (configs/det/*.yaml) with command-line overrides; architectures '
                    f'{", ".join(ARCHS)}. Launch with torchrun for DDP (same command). Resumes from '
                    f'<out_dir>/checkpoint.pt.')
    p.add_argument('--config', help='YAML file of DetectionConfig options')
    _add_config_options(p, DetectionConfig)
    p.set_defaults(func=_run_train_det)

    # eval-det
    p = sub.add_parser('eval-det', help='COCO box / mask AP of a detection checkpoint (pycocotools)')
    p.add_argument('--checkpoint', required=True, help='checkpoint.pt written by train-det')
    p.add_argument('--data-dir', help='data root (default: the run\'s)')
    p.add_argument('--split', help='split name, e.g. val2017 (default: the run\'s val_split)')
    p.add_argument('--images', help='explicit image folder (with --ann)')
    p.add_argument('--ann', help='explicit instances JSON (with --images)')
    p.add_argument('--batch-size', type=int, default=1)
    p.add_argument('--device', default='auto', help='auto, cpu, cuda')
    p.add_argument('--out', help='write the metrics as JSON here')
    p.add_argument('--verbose', action='store_true', help='print pycocotools\' tables')
    p.add_argument('--no-progress', action='store_true')
    p.set_defaults(func=_run_eval_det)

    # train-seg
    p = sub.add_parser(
        'train-seg', help='train UperNet on ADE20K-format data',
        description='Train from a YAML config (configs/seg/*.yaml) with command-line overrides. Launch with '
                    'torchrun for DDP (same command). Resumes from <out_dir>/checkpoint.pt.')
    p.add_argument('--config', help='YAML file of SegmentationConfig options')
    _add_config_options(p, SegmentationConfig)
    p.set_defaults(func=_run_train_seg)

    # eval-seg
    p = sub.add_parser('eval-seg', help='mIoU / mAcc / aAcc of a segmentation checkpoint')
    p.add_argument('--checkpoint', required=True, help='checkpoint.pt written by train-seg')
    p.add_argument('--data-dir', help='data root (default: the run\'s)')
    p.add_argument('--split', help='split name (default: the run\'s val_split)')
    p.add_argument('--mode', choices=EVAL_MODES, help='whole image or sliding window (default: the run\'s)')
    p.add_argument('--crop-size', type=_int_pair, metavar='H,W', help='window for --mode slide')
    p.add_argument('--stride', type=_int_pair, metavar='H,W', help='window step for --mode slide')
    p.add_argument('--test-scale', type=_int_pair, metavar='LONG,SHORT', help='resize before inference')
    p.add_argument('--no-resize', action='store_true', help='infer at the original size')
    p.add_argument('--device', default='auto', help='auto, cpu, cuda')
    p.add_argument('--out', help='write the metrics as JSON here')
    p.add_argument('--no-progress', action='store_true')
    p.set_defaults(func=_run_eval_seg)
