"""Semantic segmentation on ADE20K-format data: UperNet on any stepsnet or timm backbone
(:func:`stepsnet.models.factory.create_segmenter`); mIoU, mean accuracy and pixel accuracy with whole-image or
sliding-window inference.

The paper's protocol (Section 4; its tables were not recovered, so the field's standard applies) is
mmsegmentation's ADE20K UperNet setting: 512x512 crops, 160k iterations at a total batch of 16, auxiliary FCN head
with loss weight 0.4; AdamW (lr 6e-5, weight decay 0.01, 1500 iterations of linear warm-up, poly decay with power 1)
for Transformer / ConvNeXt backbones, SGD with momentum (lr 0.01, momentum 0.9, weight decay 5e-4, poly 0.9) for
ResNets. Evaluation resizes each image to the (2048, 512) scale keeping its aspect ratio, predicts (whole or
512x512 windows with stride 341), resizes the logits back to the original size and compares with the original
labels. Recipes are in ``configs/seg/``. The loop, checkpoints and DDP are the shared engine's.

Library entry points: :func:`train_segmentation`, :func:`evaluate_segmentation`, :func:`evaluate_segmenter`,
:func:`predict_logits`, :func:`segmentation_metrics`, :class:`SegmentationConfig`.
"""
import json
import math
import sys
from typing import Any, Dict, Iterator, List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.scheduler import create_scheduler_v2
from timm.utils import unwrap_model
from tqdm import tqdm

from stepsnet.config.segmentation import SegmentationConfig, load_config
from stepsnet.data.ade import IGNORE_INDEX, ADE20KSegmentation, resize_keep_ratio
from stepsnet.data.layouts import dry_run_data_dir, dry_run_sets
from stepsnet.data.sampler import steps_per_epoch
from stepsnet.engine import (
    DistEnv,
    RunFolder,
    Schedule,
    all_reduce_sum,
    config_dict,
    create_optimizer,
    distributed,
    epoch_loader_batches,
    fit,
    prepare,
)
from stepsnet.models.factory import SEG_KIND, create_segmenter, segmenter_from_checkpoint
from stepsnet.utils.checkpoint import atomic_write_text
from stepsnet.utils.logging import interactive
from stepsnet.utils.names import SEG_EVAL_MODES as EVAL_MODES
from stepsnet.utils.names import plural

__all__ = [
    'SegmentationConfig', 'load_config', 'predict_logits', 'segmentation_metrics', 'evaluate_segmenter',
    'train_segmentation', 'evaluate_segmentation', 'format_metrics', 'EVAL_MODES',
]


# ----------------------------------------------------------------------------------------------------------------
# Inference and metrics


def _forward_padded(model: nn.Module, x: torch.Tensor, multiple: int = 32) -> torch.Tensor:
    """Logits of ``x`` padded (bottom / right) to a multiple of the coarsest stride, cropped back."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph))
    return model(x)[..., :h, :w]


@torch.no_grad()
def predict_logits(
        model: nn.Module,
        image: torch.Tensor,
        mode: str = 'whole',
        crop_size: Sequence[int] = (512, 512),
        stride: Sequence[int] = (341, 341),
        test_scale: Optional[Sequence[int]] = (2048, 512),
) -> torch.Tensor:
    """Class logits of one image at its own size.

    Args:
        model: A segmenter taking ``(B, 3, H, W)`` images in [0, 1] and returning logits at that size.
        image: ``(3, H, W)`` or ``(1, 3, H, W)``, values in [0, 1].
        mode: ``whole`` (one pass on the resized image) or ``slide`` (windows of ``crop_size`` every ``stride``,
            overlapping logits averaged).
        crop_size: Window (height, width) for ``slide``.
        stride: Window step (height, width) for ``slide``.
        test_scale: Resize to this (long, short) scale keeping the aspect ratio first; ``None`` keeps the size.

    Returns:
        ``(num_classes, H, W)`` logits (softmax probabilities averaged for ``slide``).
    """
    if mode not in EVAL_MODES:
        raise ValueError(f'unknown inference mode {mode!r}; expected one of {EVAL_MODES}')
    x = image if image.dim() == 4 else image[None]
    height, width = x.shape[-2:]
    if test_scale is not None:
        size = resize_keep_ratio(height, width, tuple(test_scale))
        x = F.interpolate(x, size=size, mode='bilinear', align_corners=False)
    if mode == 'whole':
        out = _forward_padded(model, x)
    else:
        h, w = x.shape[-2:]
        ch, cw = crop_size
        sh, sw = stride
        rows = max(h - ch + sh - 1, 0) // sh + 1
        cols = max(w - cw + sw - 1, 0) // sw + 1
        out, count = None, torch.zeros(1, 1, h, w, device=x.device)
        for r in range(rows):
            for c in range(cols):
                y1, x1 = r * sh, c * sw
                y2, x2 = min(y1 + ch, h), min(x1 + cw, w)
                y1, x1 = max(y2 - ch, 0), max(x2 - cw, 0)
                logits = _forward_padded(model, x[..., y1:y2, x1:x2]).softmax(1)
                if out is None:
                    out = x.new_zeros(1, logits.shape[1], h, w)
                out[..., y1:y2, x1:x2] += logits
                count[..., y1:y2, x1:x2] += 1
        out = out / count
    if out.shape[-2:] != (height, width):
        out = F.interpolate(out, size=(height, width), mode='bilinear', align_corners=False)
    return out[0]


def confusion_matrix(pred: torch.Tensor, label: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``(num_classes, num_classes)`` counts, rows = ground truth, columns = prediction; ignored pixels skipped."""
    valid = (label != IGNORE_INDEX) & (label >= 0) & (label < num_classes)
    idx = label[valid].long() * num_classes + pred[valid].long()
    return torch.bincount(idx, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def segmentation_metrics(confusion: torch.Tensor) -> Dict[str, Any]:
    """mIoU, mean class accuracy and pixel accuracy from a confusion matrix (mmsegmentation's definitions).

    A class absent from both labels and predictions has no IoU and no accuracy (NaN) and is left out of the
    means; one absent from the labels but predicted has IoU 0.

    Returns:
        ``mIoU``, ``mAcc``, ``aAcc`` (fractions) and per-class ``IoU`` / ``Acc`` lists.
    """
    conf = confusion.double()
    inter = conf.diag()
    area_label = conf.sum(1)
    area_pred = conf.sum(0)
    union = area_label + area_pred - inter
    iou = inter / union  # 0/0 -> NaN
    acc = inter / area_label
    total = area_label.sum()
    return {
        'mIoU': float(torch.nanmean(iou)) if not torch.isnan(iou).all() else float('nan'),
        'mAcc': float(torch.nanmean(acc)) if not torch.isnan(acc).all() else float('nan'),
        'aAcc': float(inter.sum() / total) if total > 0 else float('nan'),
        'IoU': iou.tolist(),
        'Acc': acc.tolist(),
    }


@torch.no_grad()
def evaluate_segmenter(
        model: nn.Module,
        dataset: ADE20KSegmentation,
        device: str = 'cpu',
        mode: str = 'whole',
        crop_size: Sequence[int] = (512, 512),
        stride: Sequence[int] = (341, 341),
        test_scale: Optional[Sequence[int]] = (2048, 512),
        env: Optional[DistEnv] = None,
        progress: bool = False,
) -> Dict[str, Any]:
    """mIoU / mAcc / aAcc of ``model`` on ``dataset`` (original-size labels); DDP ranks share the images."""
    env = env or DistEnv(device=device)
    net = unwrap_model(model)
    was_training = net.training
    net.eval()
    k = dataset.num_classes
    conf = torch.zeros(k, k, dtype=torch.int64, device=device)
    for i in tqdm(range(env.rank, len(dataset), env.world_size), desc='eval', leave=False,
                  disable=not (interactive(progress) and env.is_main)):
        image, label = dataset[i]
        logits = predict_logits(net, image.to(device), mode, crop_size, stride, test_scale)
        conf += confusion_matrix(logits.argmax(0), label.to(device), k)
    if was_training:
        net.train()
    return segmentation_metrics(all_reduce_sum(conf).cpu())


# ----------------------------------------------------------------------------------------------------------------
# Training


def _train_batches(dataset: ADE20KSegmentation, cfg: SegmentationConfig, spe: int, start: int,
                   env: DistEnv) -> Iterator[List]:
    return epoch_loader_batches(
        dataset, cfg.batch_size, cfg.seed, spe, start, env, cfg.workers)  # crops and flips: seed_epoch


def _loss_fn(cfg: SegmentationConfig):
    def loss_fn(net: nn.Module, batch) -> tuple:
        images, labels = batch
        out, aux = net(images, return_aux=True)
        main = F.cross_entropy(out.float(), labels, ignore_index=IGNORE_INDEX)
        if aux is None:
            return main, {'main': main}
        return main + cfg.aux_weight * F.cross_entropy(aux.float(), labels, ignore_index=IGNORE_INDEX), \
            {'main': main}
    return loss_fn


def train_segmentation(cfg: SegmentationConfig) -> Dict[str, Any]:
    """Train UperNet on ADE20K-format data; evaluate on the validation split; checkpoint at intervals.

    The run folder holds ``last.pth`` / ``best.pth`` (best mIoU), ``log.csv``, ``config.json`` and ``results.json``.
    A resumed run sees the same images in the same batches it would have seen; crops and flips are re-seeded per
    epoch, so they repeat exactly when the run resumes at an epoch boundary.

    Returns:
        ``{'metrics': final evaluation, 'iters': ..., 'checkpoint': path, 'results': ...}``.

    Raises:
        FileNotFoundError, ValueError: Bad data (see :class:`ADE20KSegmentation`) or options; a run folder holding a
            run without ``resume``, a resume with other settings.
        FloatingPointError: More than ``nan_tolerance`` non-finite losses.
    """
    common = dict(num_classes=cfg.num_classes, reduce_zero_label=cfg.reduce_zero_label)
    data_dir = dry_run_data_dir('seg', cfg)
    train_set = ADE20KSegmentation(data_dir, cfg.train_split, train=True, crop_size=tuple(cfg.crop_size),
                                   scale=tuple(cfg.scale), ratio_range=tuple(cfg.ratio_range), **common)
    val_set = ADE20KSegmentation(data_dir, cfg.val_split, train=False, **common)
    train_set, val_set, val_size = dry_run_sets('seg', cfg, train_set, val_set, 1)  # evaluation: image by image
    model_args = cfg.model_args()
    with distributed(cfg.device, cfg.threads) as env, \
            RunFolder.of(cfg, SEG_KIND, env) as run:
        run.open(config_dict(cfg), SegmentationConfig.MUTABLE, dict(model_args=model_args))
        torch.manual_seed(cfg.seed)  # the same initial weights on every rank
        model = create_segmenter(**model_args)
        optimizer = create_optimizer(model, cfg.opt, cfg.lr, cfg.weight_decay, cfg.momentum)
        scheduler, _ = create_scheduler_v2(
            optimizer, 'poly', num_epochs=cfg.max_iters, decay_rate=cfg.power, min_lr=cfg.min_lr,
            warmup_epochs=cfg.warmup_iters, warmup_lr=cfg.lr * cfg.warmup_factor, step_on_epochs=False,
            updates_per_epoch=1)
        state = prepare(model, optimizer, scheduler, run, cfg)
        spe = steps_per_epoch(len(train_set), cfg.batch_size, env.world_size)

        def evaluate_run() -> Dict[str, Any]:
            m = evaluate_segmenter(model, val_set, env.device, cfg.eval_mode, cfg.crop_size, cfg.eval_stride,
                                   cfg.test_scale, env=env, progress=cfg.progress)
            return {k: v for k, v in m.items() if not isinstance(v, list)}

        run.describe(f'upernet {cfg.backbone}: {cfg.num_classes} classes, {len(train_set)} train / {len(val_set)} '
                     f'val images, {plural(env.world_size, "process", "processes")} on {env.device}',
                     world_size=env.world_size, device=env.device)
        schedule = Schedule(
            total_steps=cfg.max_iters, eval_every=cfg.eval_interval, checkpoint_every=cfg.checkpoint_interval,
            log_every=cfg.log_interval, metric='mIoU', higher_is_better=True, clip_grad=cfg.clip_grad,
            nan_tolerance=cfg.nan_tolerance, progress=cfg.progress, desc=f'upernet {cfg.backbone}',
            item_name='images', steps_per_epoch=spe, eval_batches=math.ceil(val_size / env.world_size))
        fit(state, run=run, batches=_train_batches(train_set, cfg, spe, state.progress.step, env),
            loss_fn=_loss_fn(cfg), evaluate=evaluate_run, schedule=schedule,
            count=lambda micro: sum(b[0].shape[0] for b in micro),
            eval_line=lambda step, m: f'step {step}/{cfg.max_iters}: {format_metrics(m)}')
        metrics = state.progress.last_eval('mIoU')
        results = run.results(state, schedule, metrics, model=f'upernet {cfg.backbone}',
                              params=sum(p.numel() for p in model.parameters()))
        run.finish(results)
        return {'metrics': metrics, 'iters': state.progress.step, 'checkpoint': run.last, 'results': results}


def format_metrics(m: Dict[str, Any]) -> str:
    return f'mIoU {100 * m["mIoU"]:.2f}  mAcc {100 * m["mAcc"]:.2f}  aAcc {100 * m["aAcc"]:.2f}'


def evaluate_segmentation(
        checkpoint: str,
        data_dir: Optional[str] = None,
        split: Optional[str] = None,
        mode: Optional[str] = None,
        crop_size: Optional[Sequence[int]] = None,
        stride: Optional[Sequence[int]] = None,
        test_scale: Optional[Sequence[int]] = None,
        device: str = 'auto',
        out: Optional[str] = None,
        progress: bool = True,
) -> Dict[str, Any]:
    """mIoU / mAcc / aAcc of a :func:`train_segmentation` checkpoint; unset options come from the run's config.

    Args:
        checkpoint: ``last.pth`` / ``best.pth`` of a run.
        data_dir: Data root (default: the run's).
        split: Split (default: the run's ``val_split``).
        mode: ``whole`` or ``slide``.
        crop_size: Window for ``slide``.
        stride: Window step for ``slide``.
        test_scale: (long, short) resize before inference; ``[]`` keeps the original size.
        device: ``auto``, ``cpu``, ``cuda``; under torchrun each rank evaluates a share.
        out: Write the metrics as JSON here.
        progress: Show a progress bar.
    """
    if mode is not None and mode not in EVAL_MODES:
        raise ValueError(f'unknown mode {mode!r}; expected one of {EVAL_MODES}')
    with distributed(device) as env:
        model, info = segmenter_from_checkpoint(checkpoint, env.device)
        cfg = info['config']
        dataset = ADE20KSegmentation(data_dir or cfg['data_dir'], split or cfg['val_split'],
                                     num_classes=cfg['num_classes'], reduce_zero_label=cfg['reduce_zero_label'])
        scale = cfg['test_scale'] if test_scale is None else (list(test_scale) or None)
        if env.is_main:
            print(f'eval-seg {checkpoint} on {dataset.root} ({dataset.split}): '
                  f'{len(dataset)} images on {env.device}', file=sys.stderr, flush=True)
        metrics = evaluate_segmenter(model, dataset, env.device, mode or cfg['eval_mode'],
                                     crop_size or cfg['crop_size'], stride or cfg['eval_stride'], scale, env=env,
                                     progress=progress)
        if out and env.is_main:
            atomic_write_text(out, json.dumps(metrics, indent=2))
        return metrics
