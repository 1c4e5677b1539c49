"""Object detection and instance segmentation on COCO-format data: torchvision's Mask R-CNN / Faster R-CNN /
RetinaNet on any stepsnet or timm backbone, trained with the 1x schedule and scored with pycocotools.

The paper protocol (SPEC section 4): Mask R-CNN + FPN, 1x schedule = 12 epochs, learning rate divided by 10
after epochs 8 and 11, linear warm-up; AdamW for Transformer backbones (mmdetection's Swin recipe: lr 1e-4,
weight decay 0.05, total batch 16), SGD for ResNets (lr 0.02, momentum 0.9, weight decay 1e-4). Recipes are in
``configs/det/``. The same function runs single-process on a CPU or as one rank of ``torchrun`` (DDP).

Library entry points: :func:`build_detector`, :func:`train_detection`, :func:`evaluate_detection`,
:func:`evaluate_detector` (a model and a data set in memory), :class:`DetectionConfig`.
"""
import dataclasses
import json
import math
import os
import random
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Type, TypeVar

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.utils.data import DataLoader, Subset
from torch.utils.data.distributed import DistributedSampler

from stepsnet.data.coco import CocoInstances, coco_evaluate, coco_split_paths, collate_detection, detections_to_coco
from stepsnet.models.dense import FPNBackbone, create_backbone
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
from stepsnet.utils.config import load_dataclass_config

__all__ = [
    'ARCHS', 'DetectionConfig', 'load_config', 'build_detector', 'build_optimizer', 'evaluate_detector',
    'train_detection', 'evaluate_detection', 'detector_from_checkpoint',
]

ARCHS = ('mask_rcnn', 'faster_rcnn', 'retinanet')
CHECKPOINT_KIND = 'stepsnet-det'

C = TypeVar('C')


# ----------------------------------------------------------------------------------------------------------------
# Configuration


@dataclass
class DetectionConfig:
    """Options of :func:`train_detection` (the keys of a ``configs/det/*.yaml`` file)."""
    # data: <data_dir>/<split>/ images, <data_dir>/annotations/instances_<split>.json
    data_dir: str = 'runs/data/synth-coco'
    train_split: str = 'train2017'
    val_split: str = 'val2017'
    out_dir: str = 'runs/det'
    # model
    backbone: str = 'steps_resnet50'
    backbone_weights: Optional[str] = None
    model_kwargs: Dict[str, Any] = field(default_factory=dict)
    arch: str = 'mask_rcnn'
    min_size: int = 800
    max_size: int = 1333
    fpn_channels: int = 256
    box_head_dim: int = 1024
    mask_head_channels: int = 256
    anchor_sizes: Optional[List[int]] = None
    rpn_batch_size_per_image: int = 256
    box_batch_size_per_image: int = 512
    detector_kwargs: Dict[str, Any] = field(default_factory=dict)  # more torchvision detector options
    # schedule: per-process batch; lr for the total batch (batch_size x world size)
    epochs: int = 12
    max_iters: Optional[int] = None
    batch_size: int = 2
    workers: int = 2
    optimizer: str = 'adamw'
    lr: float = 1e-4
    weight_decay: float = 0.05
    momentum: float = 0.9
    lr_steps: List[int] = field(default_factory=lambda: [8, 11])
    lr_gamma: float = 0.1
    warmup_iters: int = 1000
    warmup_factor: float = 0.001
    grad_clip: Optional[float] = None
    # bookkeeping
    eval_interval: int = 1
    eval_batch_size: int = 1
    log_interval: int = 20
    seed: int = 0
    device: str = 'auto'
    threads: Optional[int] = None  # torch CPU threads (1 avoids oversubscription on a shared, small CPU)
    amp: bool = False
    resume: bool = True
    progress: bool = True


def load_config(cls: Type[C], path: Optional[str] = None, **overrides: Any) -> C:
    """A config dataclass from a YAML file (keys are its fields) plus non-``None`` overrides."""
    return load_dataclass_config(cls, path, overrides)


# ----------------------------------------------------------------------------------------------------------------
# Model


def build_detector(
        backbone: str,
        num_classes: int,
        arch: str = 'mask_rcnn',
        min_size: int = 800,
        max_size: int = 1333,
        fpn_channels: int = 256,
        box_head_dim: int = 1024,
        mask_head_channels: int = 256,
        anchor_sizes: Optional[Sequence[int]] = None,
        backbone_weights: Optional[str] = None,
        model_kwargs: Optional[Dict[str, Any]] = None,
        **detector_kwargs: Any,
) -> nn.Module:
    """A torchvision detector on a timm / stepsnet backbone with an FPN.

    Args:
        backbone: timm model name (``steps_resnet50``, ``steps_deit_small_patch16_224``, ``resnet50``, ...).
        num_classes: Object classes, background not included (labels run 1..num_classes).
        arch: ``mask_rcnn``, ``faster_rcnn`` or ``retinanet``.
        min_size: Shorter image side after the detector's resize (COCO: 800).
        max_size: Longest image side cap (COCO: 1333).
        fpn_channels: FPN width (256 in the papers; smaller for tests).
        box_head_dim: Width of the two-layer box head (R-CNN).
        mask_head_channels: Width of the four-conv mask head (Mask R-CNN).
        anchor_sizes: One anchor size per level (P2-P6 for R-CNN, P3-P7 for RetinaNet); default
            32..512 as torchvision.
        backbone_weights: Local file of classification weights for the backbone.
        model_kwargs: Extra ``timm.create_model`` arguments (e.g. ``drop_path_rate``).
        **detector_kwargs: Passed to the torchvision detector (e.g. ``rpn_batch_size_per_image``,
            ``box_detections_per_img``).

    Raises:
        ValueError: Unknown ``arch`` or backbone, or ``num_classes`` < 1.
    """
    from torchvision.models.detection import FasterRCNN, MaskRCNN, RetinaNet
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
    from torchvision.models.detection.retinanet import RetinaNetHead

    if arch not in ARCHS:
        raise ValueError(f'unknown detector {arch!r}; expected one of {ARCHS}')
    if num_classes < 1:
        raise ValueError(f'num_classes must be >= 1, got {num_classes}')
    strides = (8, 16, 32) if arch == 'retinanet' else (4, 8, 16, 32)
    body = create_backbone(backbone, weights=backbone_weights, strides=strides, **dict(model_kwargs or {}))
    common = dict(min_size=min_size, max_size=max_size, image_mean=list(body.mean), image_std=list(body.std))
    if arch == 'retinanet':
        sizes = list(anchor_sizes or (32, 64, 128, 256, 512))
        if len(sizes) != 5:
            raise ValueError(f'RetinaNet needs 5 anchor sizes (P3-P7), got {sizes}')
        anchors = AnchorGenerator(tuple((s, int(s * 2 ** (1 / 3)), int(s * 2 ** (2 / 3))) for s in sizes),
                                  ((0.5, 1.0, 2.0),) * 5)
        fpn = FPNBackbone(body, fpn_channels, extra='p6p7')
        head = RetinaNetHead(fpn_channels, anchors.num_anchors_per_location()[0], num_classes + 1)
        return RetinaNet(fpn, num_classes + 1, anchor_generator=anchors, head=head, **common, **detector_kwargs)
    sizes = list(anchor_sizes or (32, 64, 128, 256, 512))
    if len(sizes) != 5:
        raise ValueError(f'{arch} needs 5 anchor sizes (P2-P6), got {sizes}')
    anchors = AnchorGenerator(tuple((s,) for s in sizes), ((0.5, 1.0, 2.0),) * 5)
    fpn = FPNBackbone(body, fpn_channels, extra='pool')
    box_head = TwoMLPHead(fpn_channels * 7 * 7, box_head_dim)
    box_predictor = FastRCNNPredictor(box_head_dim, num_classes + 1)
    kwargs = dict(rpn_anchor_generator=anchors, box_head=box_head, box_predictor=box_predictor, **common,
                  **detector_kwargs)
    if arch == 'faster_rcnn':
        return FasterRCNN(fpn, **kwargs)
    mask_head = MaskRCNNHeads(fpn_channels, [mask_head_channels] * 4, 1)
    mask_predictor = MaskRCNNPredictor(mask_head_channels, mask_head_channels, num_classes + 1)
    return MaskRCNN(fpn, mask_head=mask_head, mask_predictor=mask_predictor, **kwargs)


def _detector_from_config(cfg: DetectionConfig, num_classes: int, load_weights: bool = True) -> nn.Module:
    return build_detector(
        cfg.backbone, num_classes, arch=cfg.arch, min_size=cfg.min_size, max_size=cfg.max_size,
        fpn_channels=cfg.fpn_channels, box_head_dim=cfg.box_head_dim, mask_head_channels=cfg.mask_head_channels,
        anchor_sizes=cfg.anchor_sizes, backbone_weights=cfg.backbone_weights if load_weights else None,
        model_kwargs=cfg.model_kwargs, **_sampling_kwargs(cfg))


def _sampling_kwargs(cfg: DetectionConfig) -> Dict[str, Any]:
    if cfg.arch == 'retinanet':
        return dict(cfg.detector_kwargs)
    return dict(rpn_batch_size_per_image=cfg.rpn_batch_size_per_image,
                box_batch_size_per_image=cfg.box_batch_size_per_image, **cfg.detector_kwargs)


def build_optimizer(model: nn.Module, name: str, lr: float, weight_decay: float,
                    momentum: float = 0.9) -> torch.optim.Optimizer:
    """AdamW or SGD; biases, norms, position embeddings and tokens get no weight decay (as mmdet's Swin recipe).

    Raises:
        ValueError: Unknown optimizer name.
    """
    decay, no_decay = [], []
    for n, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim <= 1 or n.endswith(('pos_embed', 'cls_token', 'relative_position_bias_table', 'reg_token')):
            no_decay.append(p)
        else:
            decay.append(p)
    groups = [{'params': decay, 'weight_decay': weight_decay}, {'params': no_decay, 'weight_decay': 0.0}]
    name = name.lower()
    if name == 'adamw':
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999))
    if name == 'sgd':
        return torch.optim.SGD(groups, lr=lr, momentum=momentum)
    raise ValueError(f"unknown optimizer {name!r}; expected 'adamw' or 'sgd'")


# ----------------------------------------------------------------------------------------------------------------
# Evaluation


@torch.no_grad()
def evaluate_detector(
        model: nn.Module,
        dataset: CocoInstances,
        device: str = 'cpu',
        batch_size: int = 1,
        workers: int = 0,
        env: Optional[DistEnv] = None,
        progress: bool = False,
        verbose: bool = False,
) -> Dict[str, float]:
    """COCO box (and mask) AP of ``model`` on ``dataset``.

    Under DDP each rank runs a disjoint share of the images; rank 0 gathers the detections and scores them, and
    every rank returns the metrics.

    Returns:
        ``bbox_AP``, ``bbox_AP50``, ``bbox_AP75``, ... and ``segm_*`` when the model predicts masks (fractions).
    """
    from tqdm import tqdm
    env = env or DistEnv(device=device)
    net = unwrap_model(model)
    was_training = net.training
    net.eval()
    indices = list(range(env.rank, len(dataset), env.world_size))
    loader = DataLoader(Subset(dataset, indices), batch_size=batch_size, shuffle=False, num_workers=workers,
                        collate_fn=collate_detection)
    boxes_res: List[Dict[str, Any]] = []
    masks_res: List[Dict[str, Any]] = []
    has_masks = False
    for images, targets in tqdm(loader, desc='eval', disable=not (progress and env.is_main), leave=False):
        outputs = net([im.to(device) for im in images])
        has_masks = has_masks or any('masks' in o for o in outputs)
        b, m = detections_to_coco(outputs, [t['image_id'] for t in targets], dataset.cat_ids)
        boxes_res += b
        masks_res += m
    if was_training:
        net.train()
    if env.distributed:
        gathered: List[Any] = [None] * env.world_size
        dist.all_gather_object(gathered, (boxes_res, masks_res, has_masks))
        boxes_res = [r for g in gathered for r in g[0]]
        masks_res = [r for g in gathered for r in g[1]]
        has_masks = any(g[2] for g in gathered)
    metrics: Dict[str, float] = {}
    if env.is_main:
        results = {'bbox': boxes_res}
        if has_masks or _has_mask_head(net):
            results['segm'] = masks_res
        metrics = coco_evaluate(dataset.coco, results, image_ids=dataset.ids, verbose=verbose)
    if env.distributed:
        box = [metrics]
        dist.broadcast_object_list(box, src=0)
        metrics = box[0]
    return metrics


def _has_mask_head(model: nn.Module) -> bool:
    heads = getattr(model, 'roi_heads', None)
    return heads is not None and getattr(heads, 'mask_head', None) is not None


# ----------------------------------------------------------------------------------------------------------------
# Training


def _lr_factor(it: int, epoch: int, cfg: DetectionConfig) -> float:
    decay = cfg.lr_gamma ** sum(epoch >= s for s in cfg.lr_steps)
    if it < cfg.warmup_iters:
        alpha = it / cfg.warmup_iters
        return decay * (cfg.warmup_factor * (1 - alpha) + alpha)
    return decay


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def train_detection(cfg: DetectionConfig) -> Dict[str, Any]:
    """Train a detector on COCO-format data; evaluate on the validation split; checkpoint every epoch.

    ``<out_dir>/checkpoint.pt`` holds the model, optimizer, epoch and iteration; with ``resume`` a run restarts
    from it (data order and learning rate continue where they were). ``log.csv`` holds training losses and
    evaluations; ``metrics.json`` the final evaluation; ``config.json`` the options.

    Returns:
        ``{'metrics': final evaluation, 'epochs': ..., 'iters': ..., 'checkpoint': path}``.

    Raises:
        FileNotFoundError, ValueError: Bad data (see :class:`CocoInstances`) or options.
    """
    from tqdm import tqdm
    if cfg.arch not in ARCHS:
        raise ValueError(f'unknown detector {cfg.arch!r}; expected one of {ARCHS}')
    env = setup_distributed(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        _seed_everything(cfg.seed + env.rank)
        train_set = CocoInstances(*coco_split_paths(cfg.data_dir, cfg.train_split), train=True,
                                  masks=cfg.arch == 'mask_rcnn')
        val_set = CocoInstances(*coco_split_paths(cfg.data_dir, cfg.val_split), train=False,
                                masks=cfg.arch == 'mask_rcnn')
        if val_set.cat_ids != train_set.cat_ids:
            raise ValueError(f'categories of {val_set.ann_file!r} ({val_set.cat_ids}) differ from those of '
                             f'{train_set.ann_file!r} ({train_set.cat_ids}); expected the same categories')
        model = _detector_from_config(cfg, train_set.num_classes).to(env.device)
        optimizer = build_optimizer(model, cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.momentum)
        ckpt_path = os.path.join(cfg.out_dir, 'checkpoint.pt')
        start_epoch, it = 0, 0
        if cfg.resume and os.path.isfile(ckpt_path):
            state = load_checkpoint(ckpt_path, CHECKPOINT_KIND, required=('model', 'optimizer', 'epoch', 'iter'))
            model.load_state_dict(state['model'])
            optimizer.load_state_dict(state['optimizer'])
            start_epoch, it = int(state['epoch']), int(state['iter'])
            if 'rng' in state:
                torch.set_rng_state(state['rng'])
        if env.distributed:
            if env.device.startswith('cuda'):
                model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
            model = nn.parallel.DistributedDataParallel(
                model, device_ids=[env.local_rank] if env.device.startswith('cuda') else None)
        sampler = DistributedSampler(train_set, num_replicas=env.world_size, rank=env.rank, shuffle=True,
                                     seed=cfg.seed)
        loader = DataLoader(train_set, batch_size=cfg.batch_size, sampler=sampler, num_workers=cfg.workers,
                            collate_fn=collate_detection, drop_last=False, persistent_workers=False)
        iters_per_epoch = len(loader)
        total = cfg.epochs * iters_per_epoch if cfg.max_iters is None else min(cfg.max_iters,
                                                                                 cfg.epochs * iters_per_epoch)
        writer = MetricWriter(cfg.out_dir, step_key='iter') if env.is_main else None
        if writer is not None:
            writer.csv.truncate_after(it)
            atomic_write_text(os.path.join(cfg.out_dir, 'config.json'),
                              json.dumps(dataclasses.asdict(cfg), indent=2))
        use_amp = cfg.amp and env.device.startswith('cuda')
        scaler = torch.amp.GradScaler('cuda', enabled=use_amp)
        metrics: Dict[str, float] = {}
        bar = tqdm(total=total, initial=it, desc=f'train {cfg.arch} {cfg.backbone}',
                   disable=not (cfg.progress and env.is_main))
        epoch = start_epoch
        t0 = time.time()
        for epoch in range(start_epoch, cfg.epochs):
            if it >= total:
                break
            sampler.set_epoch(epoch)
            model.train()
            for images, targets in loader:
                if it >= total:
                    break
                for g in optimizer.param_groups:
                    g['lr'] = cfg.lr * _lr_factor(it, epoch, cfg)
                images = [im.to(env.device) for im in images]
                targets = [{k: (v.to(env.device) if torch.is_tensor(v) else v) for k, v in t.items()}
                           for t in targets]
                with torch.autocast('cuda', enabled=use_amp):
                    losses = model(images, targets)
                loss = sum(losses.values())
                if not math.isfinite(loss.item()):
                    raise FloatingPointError(f'loss is {loss.item()} at iteration {it} (epoch {epoch}): '
                                             f'{ {k: float(v) for k, v in losses.items()} }')
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if cfg.grad_clip:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                it += 1
                bar.update(1)
                if it % cfg.log_interval == 0 or it == total:
                    row = {k: float(all_reduce_mean(v.detach())) for k, v in losses.items()}
                    row['loss'] = sum(row.values())
                    bar.set_postfix(loss=f'{row["loss"]:.3f}', lr=f'{optimizer.param_groups[0]["lr"]:.2e}')
                    if writer is not None:
                        writer.log({'iter': it, 'epoch': epoch, 'lr': optimizer.param_groups[0]['lr'], **row,
                                    'elapsed_s': round(time.time() - t0, 1)})
            done = epoch + 1 if it == (epoch + 1) * iters_per_epoch else epoch  # an epoch cut by max_iters is redone
            last = it >= total or epoch + 1 == cfg.epochs
            if last or (cfg.eval_interval and (epoch + 1) % cfg.eval_interval == 0):
                metrics = evaluate_detector(model, val_set, env.device, cfg.eval_batch_size, env=env,
                                            progress=cfg.progress)
                if writer is not None:
                    writer.log({'iter': it, 'epoch': epoch, **{f'val_{k}': v for k, v in metrics.items()}})
                    bar.write(f'epoch {epoch + 1}: ' + format_metrics(metrics))
            if env.is_main:
                save_checkpoint({
                    'model': unwrap_model(model).state_dict(), 'optimizer': optimizer.state_dict(),
                    'epoch': done, 'iter': it, 'config': dataclasses.asdict(cfg),
                    'classes': train_set.classes, 'cat_ids': train_set.cat_ids, 'metrics': metrics,
                    'rng': torch.get_rng_state(),
                }, ckpt_path, CHECKPOINT_KIND)
        bar.close()
        if not metrics:  # resumed a finished run: evaluate it again
            metrics = evaluate_detector(model, val_set, env.device, cfg.eval_batch_size, env=env,
                                        progress=cfg.progress)
        if writer is not None:
            atomic_write_text(os.path.join(cfg.out_dir, 'metrics.json'), json.dumps(metrics, indent=2))
            writer.close()
        return {'metrics': metrics, 'epochs': epoch + 1, 'iters': it, 'checkpoint': ckpt_path}
    finally:
        cleanup_distributed()


def format_metrics(m: Dict[str, float]) -> str:
    keys = [k for k in ('bbox_AP', 'bbox_AP50', 'bbox_AP75', 'segm_AP', 'segm_AP50', 'segm_AP75') if k in m]
    return '  '.join(f'{k} {100 * m[k]:.1f}' for k in keys)


def detector_from_checkpoint(path: str, device: str = 'cpu') -> Dict[str, Any]:
    """Rebuild the detector saved by :func:`train_detection`.

    Returns:
        ``{'model': the detector in eval mode, 'config': DetectionConfig, 'classes': names, 'cat_ids': ids}``.
    """
    state = load_checkpoint(path, CHECKPOINT_KIND, required=('model', 'config', 'classes', 'cat_ids'))
    known = {f.name for f in dataclasses.fields(DetectionConfig)}
    cfg = DetectionConfig(**{k: v for k, v in state['config'].items() if k in known})
    model = _detector_from_config(cfg, len(state['classes']), load_weights=False)
    model.load_state_dict(state['model'])
    return {'model': model.to(device).eval(), 'config': cfg, 'classes': state['classes'],
            'cat_ids': state['cat_ids']}


def evaluate_detection(
        checkpoint: str,
        data_dir: Optional[str] = None,
        split: Optional[str] = None,
        image_dir: Optional[str] = None,
        ann_file: Optional[str] = None,
        device: str = 'auto',
        batch_size: int = 1,
        out: Optional[str] = None,
        progress: bool = True,
        verbose: bool = False,
) -> Dict[str, float]:
    """COCO AP of a :func:`train_detection` checkpoint on a split (default: the run's validation split).

    Args:
        checkpoint: ``checkpoint.pt`` of a run.
        data_dir: Data root (default: the run's).
        split: Split name (default: the run's ``val_split``).
        image_dir: Explicit image folder (with ``ann_file``; overrides ``data_dir`` / ``split``).
        ann_file: Explicit instances JSON.
        device: ``auto``, ``cpu``, ``cuda``; under torchrun each rank evaluates a share.
        batch_size: Images per forward pass.
        out: Write the metrics as JSON here.
        progress: Show a progress bar.
        verbose: Print pycocotools' tables.

    Raises:
        ValueError: The data's categories differ from the checkpoint's.
    """
    env = setup_distributed(device)
    try:
        loaded = detector_from_checkpoint(checkpoint, env.device)
        cfg: DetectionConfig = loaded['config']
        if (image_dir is None) != (ann_file is None):
            raise ValueError('give both image_dir and ann_file, or neither')
        if image_dir is None:
            image_dir, ann_file = coco_split_paths(data_dir or cfg.data_dir, split or cfg.val_split)
        dataset = CocoInstances(image_dir, ann_file, train=False, masks=False)
        if dataset.cat_ids != list(loaded['cat_ids']):
            raise ValueError(f'categories of {ann_file!r} ({dataset.cat_ids}) differ from the checkpoint\'s '
                             f'({list(loaded["cat_ids"])}); expected the categories the model was trained on')
        metrics = evaluate_detector(loaded['model'], dataset, env.device, batch_size, env=env, progress=progress,
                                    verbose=verbose)
        if out and env.is_main:
            atomic_write_text(out, json.dumps(metrics, indent=2))
        return metrics
    finally:
        cleanup_distributed()
