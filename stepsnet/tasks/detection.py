"""Object detection and instance segmentation on COCO-format data: torchvision's Mask R-CNN / Faster R-CNN /
RetinaNet on any stepsnet or timm backbone (:func:`stepsnet.models.factory.create_detector`), trained with the 1x
schedule and scored with pycocotools.

The paper's protocol (Section 4; its tables were not recovered, so the field's standard applies): Mask R-CNN +
FPN, 1x schedule = 12 epochs, learning rate divided by 10 after epochs 8 and 11, linear warm-up; AdamW for
Transformer backbones (mmdetection's Swin recipe: lr 1e-4, weight decay 0.05, total batch 16), SGD with momentum
for ResNets (lr 0.02, momentum 0.9, weight decay 1e-4). Recipes are in ``configs/det/``. The loop, checkpoints
and DDP are the shared engine's (:mod:`stepsnet.engine`).

Library entry points: :func:`train_detection`, :func:`evaluate_detection`, :func:`evaluate_detector` (a model
and a data set in memory), :class:`DetectionConfig`.
"""
import json
import math
import sys
from typing import Any, Dict, Iterator, List, Optional

import torch
import torch.distributed as dist
import torch.nn as nn
from timm.scheduler import create_scheduler_v2
from timm.utils import unwrap_model
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from stepsnet.config.detection import DetectionConfig, load_config
from stepsnet.data.coco import (
    CocoInstances,
    aspect_groups,
    coco_evaluate,
    coco_split_paths,
    collate_detection,
    detections_to_coco,
)
from stepsnet.data.layouts import dry_run_data_dir, dry_run_sets
from stepsnet.data.sampler import steps_per_epoch
from stepsnet.engine import (
    DistEnv,
    RunError,
    RunFolder,
    Schedule,
    config_dict,
    create_optimizer,
    distributed,
    epoch_loader_batches,
    fit,
    loader_errors,
    prepare,
)
from stepsnet.models.factory import DET_KIND, create_detector, detector_from_checkpoint
from stepsnet.utils.checkpoint import atomic_write_text
from stepsnet.utils.logging import interactive
from stepsnet.utils.names import plural

__all__ = ['DetectionConfig', 'load_config', 'evaluate_detector', 'train_detection', 'evaluate_detection',
           'format_metrics']


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
    for images, targets in tqdm(loader, desc='eval', disable=not (interactive(progress) and env.is_main),
                                leave=False):
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


def _train_batches(dataset: CocoInstances, cfg: DetectionConfig, spe: int, start: int,
                   env: DistEnv) -> Iterator[List]:
    def to_device(batch):
        images, targets = batch
        return ([im.to(env.device) for im in images],
                [{k: (v.to(env.device) if torch.is_tensor(v) else v) for k, v in t.items()} for t in targets])
    return epoch_loader_batches(
        dataset, cfg.batch_size, cfg.seed, spe, start, env, cfg.workers, drop_last=False,
        groups=aspect_groups(dataset) if cfg.aspect_grouping else None, to_device=to_device,
        collate_fn=collate_detection)


def _detection_loss(model: nn.Module, batch) -> tuple:
    losses = model(*batch)
    return sum(losses.values()), losses


def train_detection(cfg: DetectionConfig) -> Dict[str, Any]:
    """Train a detector on COCO-format data, evaluate on the validation split, checkpoint every epoch.

    The run folder holds ``last.pth`` / ``best.pth`` (best box AP), ``log.csv``, ``config.json`` and
    ``results.json`` (its ``final`` is the last evaluation).

    Returns:
        ``{'metrics': final evaluation, 'epochs': ..., 'iters': ..., 'checkpoint': path, 'results': ...}``.

    Raises:
        FileNotFoundError, ValueError: Bad data (see :class:`CocoInstances`) or options; a run folder holding a run
            without ``resume``, a resume with other settings or categories.
        FloatingPointError: More than ``nan_tolerance`` non-finite losses.
    """
    masks = cfg.arch == 'mask_rcnn'
    data_dir = dry_run_data_dir('det', cfg)
    train_set = CocoInstances(*coco_split_paths(data_dir, cfg.train_split), train=True, masks=masks)
    val_set = CocoInstances(*coco_split_paths(data_dir, cfg.val_split), train=False, masks=masks)
    if val_set.cat_ids != train_set.cat_ids:
        raise ValueError(f'categories of {val_set.ann_file!r} ({val_set.cat_ids}) differ from those of '
                         f'{train_set.ann_file!r} ({train_set.cat_ids}); expected the same categories')
    train_set, val_set, val_size = dry_run_sets('det', cfg, train_set, val_set, cfg.eval_batch_size)
    model_args = cfg.model_args(train_set.num_classes)
    meta = dict(model_args=model_args, classes=train_set.classes, cat_ids=train_set.cat_ids)
    with distributed(cfg.device, cfg.threads) as env, \
            RunFolder.of(cfg, DET_KIND, env) as run:
        stored = run.open(config_dict(cfg), DetectionConfig.MUTABLE, meta)
        if stored is not None and list(stored['meta']['cat_ids']) != list(train_set.cat_ids):
            raise RunError(f'{run.resumed_from!r} was trained on categories {stored["meta"]["cat_ids"]}, but '
                           f'{train_set.ann_file!r} has {train_set.cat_ids}; resume with the data it was trained on')
        del stored  # the run folder keeps the checkpoint until prepare() has restored it
        torch.manual_seed(cfg.seed)
        model = create_detector(**model_args)
        optimizer = create_optimizer(model, cfg.opt, cfg.lr, cfg.weight_decay, cfg.momentum)
        spe = steps_per_epoch(len(train_set), cfg.batch_size, env.world_size, drop_last=False)
        total = cfg.epochs * spe if cfg.max_iters is None else min(cfg.max_iters, cfg.epochs * spe)
        scheduler, _ = create_scheduler_v2(
            optimizer, 'multistep', num_epochs=cfg.epochs * spe, decay_milestones=[s * spe for s in cfg.lr_steps],
            decay_rate=cfg.lr_gamma, warmup_epochs=cfg.warmup_iters, warmup_lr=cfg.lr * cfg.warmup_factor,
            step_on_epochs=False, updates_per_epoch=1)
        state = prepare(model, optimizer, scheduler, run, cfg)
        run.describe(f'{cfg.arch} {cfg.backbone}: {train_set.num_classes} categories, {len(train_set)} train / '
                     f'{len(val_set)} val images, {plural(env.world_size, "process", "processes")} on {env.device}, '
                     f'{plural(spe, "step")} per epoch',
                     world_size=env.world_size, device=env.device)
        schedule = Schedule(
            total_steps=total, eval_every=cfg.eval_every_epochs * spe, checkpoint_every=spe, log_every=cfg.log_interval,
            metric='bbox_AP', higher_is_better=True, clip_grad=cfg.clip_grad, nan_tolerance=cfg.nan_tolerance,
            progress=cfg.progress, desc=f'{cfg.arch} {cfg.backbone}', item_name='images', steps_per_epoch=spe,
            eval_batches=math.ceil(val_size / (cfg.eval_batch_size * env.world_size)))
        fit(state, run=run, batches=_train_batches(train_set, cfg, spe, state.progress.step, env),
            loss_fn=_detection_loss, schedule=schedule, count=lambda micro: sum(len(b[0]) for b in micro),
            evaluate=lambda: evaluate_detector(model, val_set, env.device, cfg.eval_batch_size, env=env,
                                               progress=cfg.progress),
            eval_line=lambda step, m: f'step {step}/{total}: {format_metrics(m)}')
        metrics = state.progress.last_eval('bbox_AP')
        results = run.results(state, schedule, metrics, model=f'{cfg.arch} {cfg.backbone}',
                              params=sum(p.numel() for p in model.parameters()))
        run.finish(results)
        return {'metrics': metrics, 'epochs': state.progress.step / spe, 'iters': state.progress.step,
                'checkpoint': run.last, 'results': results}


def format_metrics(m: Dict[str, float]) -> str:
    keys = [k for k in ('bbox_AP', 'bbox_AP50', 'bbox_AP75', 'segm_AP', 'segm_AP50', 'segm_AP75') if k in m]
    return '  '.join(f'{k} {100 * m[k]:.1f}' for k in keys)


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
        checkpoint: ``last.pth`` / ``best.pth`` of a run.
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
        ValueError: The data's categories differ from the checkpoint's; bad arguments.
    """
    if (image_dir is None) != (ann_file is None):
        raise ValueError('give both image_dir and ann_file, or neither')
    if batch_size < 1:
        raise ValueError(f'batch_size must be >= 1, got {batch_size}')
    with distributed(device) as env:
        model, info = detector_from_checkpoint(checkpoint, env.device)
        cfg = info['config']
        if image_dir is None:
            image_dir, ann_file = coco_split_paths(data_dir or cfg['data_dir'], split or cfg['val_split'])
        dataset = CocoInstances(image_dir, ann_file, train=False, masks=False)
        if dataset.cat_ids != info['cat_ids']:
            raise ValueError(f'categories of {ann_file!r} ({dataset.cat_ids}) differ from the checkpoint\'s '
                             f'({info["cat_ids"]}); expected the categories the model was trained on')
        if env.is_main:
            print(f'eval-det {checkpoint} on {ann_file}: {len(dataset)} images on {env.device}', file=sys.stderr,
                  flush=True)
        with loader_errors():
            metrics = evaluate_detector(model, dataset, env.device, batch_size, env=env, progress=progress,
                                        verbose=verbose)
        if out and env.is_main:
            atomic_write_text(out, json.dumps(metrics, indent=2))
        return metrics
