"""Semantic segmentation on ADE20K-format data: UperNet on any stepsnet or timm backbone; mIoU, mean accuracy and
pixel accuracy with whole-image or sliding-window inference.

The paper protocol (SPEC section 4) is mmsegmentation's ADE20K UperNet setting: 512x512 crops, 160k iterations
at a total batch of 16, auxiliary FCN head with loss weight 0.4; AdamW (lr 6e-5, weight decay 0.01, 1500
iterations of linear warm-up, poly decay with power 1) for Transformer / ConvNeXt backbones, SGD (lr 0.01,
momentum 0.9, weight decay 5e-4, poly 0.9) for ResNets. Evaluation resizes each image to the (2048, 512) scale
keeping its aspect ratio, predicts (whole or 512x512 windows with stride 341), resizes the logits back to the
original size and compares with the original labels. Recipes are in ``configs/seg/``.

Library entry points: :func:`build_segmenter`, :func:`train_segmentation`, :func:`evaluate_segmentation`,
:func:`evaluate_segmenter`, :func:`predict_logits`, :func:`segmentation_metrics`, :class:`SegmentationConfig`.
"""
import dataclasses
import json
import math
import os
import random
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Sampler

from stepsnet.data.ade import IGNORE_INDEX, ADE20KSegmentation, resize_keep_ratio
from stepsnet.models.dense import UperNet
from stepsnet.tasks.detection import build_optimizer, load_config
from stepsnet.utils import (
    DistEnv,
    MetricWriter,
    all_reduce_mean,
    atomic_write_text,
    cleanup_distributed,
    load_checkpoint,
    save_checkpoint,
    setup_distributed,
    unwrap_model,
)

__all__ = [
    'SegmentationConfig', 'load_config', 'build_segmenter', 'predict_logits', 'segmentation_metrics',
    'evaluate_segmenter', 'train_segmentation', 'evaluate_segmentation', 'segmenter_from_checkpoint',
]

CHECKPOINT_KIND = 'stepsnet-seg'
EVAL_MODES = ('whole', 'slide')


@dataclass
class SegmentationConfig:
    """Options of :func:`train_segmentation` (the keys of a ``configs/seg/*.yaml`` file)."""
    # data: <data_dir>/images/<split>/, <data_dir>/annotations/<split>/
    data_dir: str = 'runs/data/synth-ade'
    train_split: str = 'training'
    val_split: str = 'validation'
    num_classes: int = 150
    reduce_zero_label: bool = True
    out_dir: str = 'runs/seg'
    # model
    backbone: str = 'steps_resnet50'
    backbone_weights: Optional[str] = None
    model_kwargs: Dict[str, Any] = field(default_factory=dict)
    channels: int = 512
    aux_channels: int = 256
    aux_weight: float = 0.4
    pool_scales: List[int] = field(default_factory=lambda: [1, 2, 3, 6])
    dropout: float = 0.1
    # augmentation (height, width) / (long, short)
    crop_size: List[int] = field(default_factory=lambda: [512, 512])
    scale: List[int] = field(default_factory=lambda: [2048, 512])
    ratio_range: List[float] = field(default_factory=lambda: [0.5, 2.0])
    # schedule: per-process batch
    iters: int = 160000
    batch_size: int = 2
    workers: int = 4
    optimizer: str = 'adamw'
    lr: float = 6e-5
    weight_decay: float = 0.01
    momentum: float = 0.9
    power: float = 1.0
    min_lr: float = 0.0
    warmup_iters: int = 1500
    warmup_ratio: float = 1e-6
    grad_clip: Optional[float] = None
    # evaluation
    eval_interval: int = 16000
    eval_mode: str = 'whole'
    eval_stride: List[int] = field(default_factory=lambda: [341, 341])
    test_scale: Optional[List[int]] = field(default_factory=lambda: [2048, 512])
    # bookkeeping
    checkpoint_interval: int = 16000
    log_interval: int = 50
    seed: int = 0
    device: str = 'auto'
    threads: Optional[int] = None  # torch CPU threads (1 avoids oversubscription on a shared, small CPU)
    amp: bool = False
    resume: bool = True
    progress: bool = True


def build_segmenter(
        backbone: str,
        num_classes: int,
        channels: int = 512,
        aux_channels: int = 256,
        aux_head: bool = True,
        pool_scales: Sequence[int] = (1, 2, 3, 6),
        dropout: float = 0.1,
        backbone_weights: Optional[str] = None,
        model_kwargs: Optional[Dict[str, Any]] = None,
) -> UperNet:
    """UperNet on a timm / stepsnet backbone (see :class:`stepsnet.models.dense.UperNet`)."""
    return UperNet(backbone, num_classes, channels=channels, pool_scales=pool_scales, aux_channels=aux_channels,
                   aux_head=aux_head, dropout=dropout, weights=backbone_weights, model_kwargs=model_kwargs)


def _segmenter_from_config(cfg: SegmentationConfig, load_weights: bool = True) -> UperNet:
    return build_segmenter(cfg.backbone, cfg.num_classes, cfg.channels, cfg.aux_channels, cfg.aux_weight > 0,
                           cfg.pool_scales, cfg.dropout, cfg.backbone_weights if load_weights else None,
                           cfg.model_kwargs)


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
    from tqdm import tqdm
    env = env or DistEnv(device=device)
    net = unwrap_model(model)
    was_training = net.training
    net.eval()
    k = dataset.num_classes
    conf = torch.zeros(k, k, dtype=torch.int64, device=device)
    for i in tqdm(range(env.rank, len(dataset), env.world_size), desc='eval', leave=False,
                  disable=not (progress and env.is_main)):
        image, label = dataset[i]
        logits = predict_logits(net, image.to(device), mode, crop_size, stride, test_scale)
        conf += confusion_matrix(logits.argmax(0), label.to(device), k)
    if was_training:
        net.train()
    if env.distributed:
        dist.all_reduce(conf)
    return segmentation_metrics(conf.cpu())


# ----------------------------------------------------------------------------------------------------------------
# Training


class _ResumableSampler(Sampler):
    """Endless shuffled batches of indices for this rank, reproducible from ``(seed, iteration)``.

    Each pass over the data is a permutation seeded by ``seed + pass``; a resumed run asks for the batches from
    ``start_batch`` on and sees exactly the sequence the uninterrupted run would have seen.
    """

    def __init__(self, n: int, batch_size: int, world_size: int, rank: int, seed: int, start_batch: int = 0):
        self.n, self.bs, self.world, self.rank, self.seed = n, batch_size, world_size, rank, seed
        self.per_pass = max(n // (batch_size * world_size), 1)
        self.start = start_batch

    def __iter__(self) -> Iterator[List[int]]:
        p, b = divmod(self.start, self.per_pass)
        while True:
            g = torch.Generator().manual_seed(self.seed + p)
            perm = torch.randperm(self.n, generator=g).tolist()
            need = self.per_pass * self.bs * self.world
            while len(perm) < need:  # fewer images than one global batch: repeat them
                perm += perm[:need - len(perm)]
            mine = perm[self.rank:need:self.world]
            for i in range(b, self.per_pass):
                yield mine[i * self.bs:(i + 1) * self.bs]
            p, b = p + 1, 0

    def __len__(self) -> int:  # endless; DataLoader only needs it for its repr
        return 2 ** 62


def _lr_at(it: int, cfg: SegmentationConfig) -> float:
    lr = (cfg.lr - cfg.min_lr) * (1 - it / cfg.iters) ** cfg.power + cfg.min_lr
    if it < cfg.warmup_iters:
        k = (1 - it / cfg.warmup_iters) * (1 - cfg.warmup_ratio)
        lr = lr * (1 - k)
    return lr


def train_segmentation(cfg: SegmentationConfig) -> Dict[str, Any]:
    """Train UperNet on ADE20K-format data; evaluate on the validation split; checkpoint at intervals.

    ``<out_dir>/checkpoint.pt`` holds the model, optimizer and iteration; with ``resume`` a run restarts from it
    and sees the same images in the same batches it would have seen (the random crops and flips are re-drawn).
    ``log.csv``, ``metrics.json`` and ``config.json`` as in detection.

    Returns:
        ``{'metrics': final evaluation, 'iters': ..., 'checkpoint': path}``.

    Raises:
        FileNotFoundError, ValueError: Bad data (see :class:`ADE20KSegmentation`) or options.
    """
    from tqdm import tqdm
    if cfg.eval_mode not in EVAL_MODES:
        raise ValueError(f'unknown eval_mode {cfg.eval_mode!r}; expected one of {EVAL_MODES}')
    if cfg.iters < 1:
        raise ValueError(f'iters must be >= 1, got {cfg.iters}')
    env = setup_distributed(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        random.seed(cfg.seed + env.rank)
        torch.manual_seed(cfg.seed + env.rank)
        common = dict(num_classes=cfg.num_classes, reduce_zero_label=cfg.reduce_zero_label)
        train_set = ADE20KSegmentation(cfg.data_dir, cfg.train_split, train=True, crop_size=tuple(cfg.crop_size),
                                       scale=tuple(cfg.scale), ratio_range=tuple(cfg.ratio_range), **common)
        val_set = ADE20KSegmentation(cfg.data_dir, cfg.val_split, train=False, **common)
        torch.manual_seed(cfg.seed)  # the same initial weights on every rank
        model = _segmenter_from_config(cfg).to(env.device)
        optimizer = build_optimizer(model, cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.momentum)
        ckpt_path = os.path.join(cfg.out_dir, 'checkpoint.pt')
        it = 0
        if cfg.resume and os.path.isfile(ckpt_path):
            state = load_checkpoint(ckpt_path, CHECKPOINT_KIND, required=('model', 'optimizer', 'iter'))
            model.load_state_dict(state['model'])
            optimizer.load_state_dict(state['optimizer'])
            it = int(state['iter'])
        if env.distributed:
            if env.device.startswith('cuda'):
                model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
            model = nn.parallel.DistributedDataParallel(
                model, device_ids=[env.local_rank] if env.device.startswith('cuda') else None)
        # augmentation draws: a stream seeded by the start iteration (the batch order itself resumes exactly)
        random.seed(cfg.seed + 1000 * (it + 1) + env.rank)
        torch.manual_seed(cfg.seed + 1000 * (it + 1) + env.rank)
        sampler = _ResumableSampler(len(train_set), cfg.batch_size, env.world_size, env.rank, cfg.seed, it)
        loader = DataLoader(train_set, batch_sampler=sampler, num_workers=cfg.workers)
        writer = MetricWriter(cfg.out_dir, step_key='iter') if env.is_main else None
        if writer is not None:
            writer.csv.truncate_after(it)
            atomic_write_text(os.path.join(cfg.out_dir, 'config.json'),
                              json.dumps(dataclasses.asdict(cfg), indent=2))
        use_amp = cfg.amp and env.device.startswith('cuda')
        scaler = torch.amp.GradScaler('cuda', enabled=use_amp)
        eval_kwargs = dict(mode=cfg.eval_mode, crop_size=cfg.crop_size, stride=cfg.eval_stride,
                           test_scale=cfg.test_scale, env=env, progress=cfg.progress)
        metrics: Dict[str, Any] = {}
        bar = tqdm(total=cfg.iters, initial=it, desc=f'train upernet {cfg.backbone}',
                   disable=not (cfg.progress and env.is_main))
        model.train()
        t0 = time.time()
        batches = iter(loader)
        while it < cfg.iters:
            images, labels = next(batches)
            images, labels = images.to(env.device), labels.to(env.device)
            lr = _lr_at(it, cfg)
            for g in optimizer.param_groups:
                g['lr'] = lr
            with torch.autocast('cuda', enabled=use_amp):
                out, aux = model(images, return_aux=True)
                loss_main = F.cross_entropy(out.float(), labels, ignore_index=IGNORE_INDEX)
                loss = loss_main
                if aux is not None:
                    loss_aux = F.cross_entropy(aux.float(), labels, ignore_index=IGNORE_INDEX)
                    loss = loss + cfg.aux_weight * loss_aux
            if not math.isfinite(loss.item()):
                raise FloatingPointError(f'loss is {loss.item()} at iteration {it}')
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if cfg.grad_clip:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            it += 1
            bar.update(1)
            if it % cfg.log_interval == 0 or it == cfg.iters:
                losses = all_reduce_mean(torch.stack([loss.detach(), loss_main.detach()]))  # mean over ranks
                row = {'iter': it, 'lr': lr, 'loss': losses[0].item(), 'loss_main': losses[1].item(),
                       'elapsed_s': round(time.time() - t0, 1)}
                bar.set_postfix(loss=f'{row["loss"]:.3f}', lr=f'{lr:.2e}')
                if writer is not None:
                    writer.log(row)
            if it == cfg.iters or (cfg.eval_interval and it % cfg.eval_interval == 0):
                metrics = evaluate_segmenter(model, val_set, env.device, **eval_kwargs)
                if writer is not None:
                    writer.log({'iter': it, 'val_mIoU': metrics['mIoU'], 'val_mAcc': metrics['mAcc'],
                                'val_aAcc': metrics['aAcc']})
                    bar.write(f'iter {it}: ' + format_metrics(metrics))
            if env.is_main and (it == cfg.iters or (cfg.checkpoint_interval and it % cfg.checkpoint_interval == 0)):
                save_checkpoint({'model': unwrap_model(model).state_dict(), 'optimizer': optimizer.state_dict(),
                                 'iter': it, 'config': dataclasses.asdict(cfg)}, ckpt_path, CHECKPOINT_KIND)
        bar.close()
        if not metrics:  # resumed a finished run
            metrics = evaluate_segmenter(model, val_set, env.device, **eval_kwargs)
        if writer is not None:
            atomic_write_text(os.path.join(cfg.out_dir, 'metrics.json'), json.dumps(metrics, indent=2))
            writer.close()
        return {'metrics': metrics, 'iters': it, 'checkpoint': ckpt_path}
    finally:
        cleanup_distributed()


def format_metrics(m: Dict[str, Any]) -> str:
    return f'mIoU {100 * m["mIoU"]:.2f}  mAcc {100 * m["mAcc"]:.2f}  aAcc {100 * m["aAcc"]:.2f}'


def segmenter_from_checkpoint(path: str, device: str = 'cpu') -> Tuple[UperNet, SegmentationConfig]:
    """The UperNet saved by :func:`train_segmentation` (eval mode) and its config."""
    state = load_checkpoint(path, CHECKPOINT_KIND, required=('model', 'config'))
    known = {f.name for f in dataclasses.fields(SegmentationConfig)}
    cfg = SegmentationConfig(**{k: v for k, v in state['config'].items() if k in known})
    model = _segmenter_from_config(cfg, load_weights=False)
    model.load_state_dict(state['model'])
    return model.to(device).eval(), cfg


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
        checkpoint: ``checkpoint.pt`` of a run.
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
    env = setup_distributed(device)
    try:
        model, cfg = segmenter_from_checkpoint(checkpoint, env.device)
        dataset = ADE20KSegmentation(data_dir or cfg.data_dir, split or cfg.val_split, num_classes=cfg.num_classes,
                                     reduce_zero_label=cfg.reduce_zero_label)
        scale = cfg.test_scale if test_scale is None else (list(test_scale) or None)
        metrics = evaluate_segmenter(model, dataset, env.device, mode or cfg.eval_mode, crop_size or cfg.crop_size,
                                     stride or cfg.eval_stride, scale, env=env, progress=progress)
        if out and env.is_main:
            atomic_write_text(out, json.dumps(metrics, indent=2))
        return metrics
    finally:
        cleanup_distributed()
