"""Image classification: training, validation and baseline-vs-Steps comparison for any timm model name.

The pipeline is timm's own: ``create_transform`` (RandAugment, random erasing, random resized crop),
``Mixup`` / CutMix, label smoothing or binary cross-entropy, ``create_optimizer_v2``, ``create_scheduler_v2``
(stepped per update), ``ModelEmaV3``; plus AMP, ``channels_last``, gradient checkpointing, ``torch.compile`` and
DDP under ``torchrun``. One :class:`ClassificationConfig` describes a run; the YAML recipes in ``configs/cls``
are its fields.

Resuming is exact: checkpoints are written atomically at the end of every epoch, and every random stream
(torch, numpy, ``random``, the loader's shuffling and worker seeds) is re-seeded from ``(seed, epoch, rank)``
at the start of each epoch, so a run killed after epoch ``k`` and resumed from its checkpoint logs the same
losses as a run that never stopped. A non-finite loss skips the update; more than ``nan_tolerance`` of them
stop the run with :class:`FloatingPointError`, leaving the last good checkpoint in place.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import random
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Subset

import stepsnet  # noqa: F401  (registers the Steps models with timm)
from stepsnet.data.images import build_dataset, collate_skip_none, dataset_mean_std, seed_worker
from stepsnet.utils import (
    DistEnv,
    MetricWriter,
    all_reduce_mean,
    atomic_write_text,
    barrier,
    cleanup_distributed,
    load_checkpoint,
    save_checkpoint,
    setup_distributed,
)
from stepsnet.utils.config import load_dataclass_config

__all__ = [
    'ClassificationConfig', 'load_config', 'create_classifier', 'train_classification', 'validate_classification',
    'evaluate', 'compare_classification', 'compare_add_arguments', 'compare_from_args', 'default_cpu_config',
    'CHECKPOINT_KIND',
]

CHECKPOINT_KIND = 'stepsnet-cls'


@dataclass
class ClassificationConfig:
    """One classification run. Field names are the YAML keys of ``configs/cls/*.yaml`` and the CLI flags.

    Learning rate: when ``lr`` is None it is ``lr_base * global_batch / lr_base_size`` (timm's / DeiT's rule;
    ``lr_base_scale='sqrt'`` for the square-root rule).
    """
    # model
    model: str = 'test_steps_resnet'
    num_classes: Optional[int] = None  # None: taken from the dataset
    drop_rate: float = 0.0
    drop_path: Optional[float] = None
    model_kwargs: Dict[str, Any] = field(default_factory=dict)
    initial_checkpoint: Optional[str] = None
    # data
    dataset: str = 'digits'
    data_dir: Optional[str] = None
    train_split: str = 'train'
    val_split: str = 'val'
    img_size: Optional[int] = None  # None: the model's default (32 for digits)
    crop_pct: Optional[float] = None
    interpolation: str = 'bicubic'
    mean: Optional[Tuple[float, ...]] = None
    std: Optional[Tuple[float, ...]] = None
    skip_corrupt: bool = False
    workers: int = 4
    batch_size: int = 128
    val_batch_size: Optional[int] = None
    # augmentation and regularisation
    scale: Tuple[float, float] = (0.08, 1.0)
    ratio: Tuple[float, float] = (3. / 4., 4. / 3.)
    hflip: float = 0.5
    color_jitter: Optional[float] = 0.4
    auto_augment: Optional[str] = 'rand-m9-mstd0.5-inc1'
    reprob: float = 0.25
    remode: str = 'pixel'
    recount: int = 1
    aug_repeats: int = 0
    mixup: float = 0.8
    cutmix: float = 1.0
    mixup_prob: float = 1.0
    mixup_switch_prob: float = 0.5
    mixup_mode: str = 'batch'
    smoothing: float = 0.1
    bce_loss: bool = False
    bce_target_thresh: Optional[float] = None
    # optimisation
    epochs: int = 300
    opt: str = 'adamw'
    lr: Optional[float] = None
    lr_base: float = 5e-4
    lr_base_size: int = 512
    lr_base_scale: str = 'linear'
    weight_decay: float = 0.05
    momentum: float = 0.9
    opt_eps: Optional[float] = None
    opt_betas: Optional[Tuple[float, ...]] = None
    layer_decay: Optional[float] = None
    clip_grad: Optional[float] = None
    clip_mode: str = 'norm'
    sched: str = 'cosine'
    warmup_epochs: float = 5
    warmup_lr: float = 1e-6
    min_lr: float = 1e-5
    cooldown_epochs: int = 0
    # EMA
    model_ema: bool = False
    model_ema_decay: float = 0.9998
    model_ema_warmup: bool = False
    # performance
    device: str = 'auto'
    threads: Optional[int] = None  # torch CPU threads per process (None: torch's default)
    amp: bool = False
    amp_dtype: str = 'bfloat16'
    channels_last: bool = False
    grad_checkpointing: bool = False
    compile: bool = False
    # run control
    seed: int = 42
    output: str = 'runs/cls'
    resume: Optional[str] = None  # a checkpoint path, or 'auto' for <output>/last.pth when it exists
    nan_tolerance: int = 0
    max_train_batches: Optional[int] = None  # cap per epoch (smoke tests)
    progress: bool = True
    tensorboard: bool = True
    stop_after_epochs: Optional[int] = None  # leave the loop after this many epochs of the run (tests)

    def __post_init__(self):
        for name in ('scale', 'ratio', 'mean', 'std', 'opt_betas'):
            v = getattr(self, name)
            if v is not None and not isinstance(v, tuple):
                setattr(self, name, tuple(float(x) for x in v))
        if self.epochs < 1:
            raise ValueError(f'epochs must be >= 1, got {self.epochs}')
        if self.batch_size < 1:
            raise ValueError(f'batch_size must be >= 1, got {self.batch_size}')
        if self.amp_dtype not in ('bfloat16', 'float16'):
            raise ValueError(f"amp_dtype must be 'bfloat16' or 'float16', got {self.amp_dtype!r}")
        if self.lr_base_scale not in ('linear', 'sqrt'):
            raise ValueError(f"lr_base_scale must be 'linear' or 'sqrt', got {self.lr_base_scale!r}")

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


def load_config(path: Optional[str] = None, overrides: Optional[Mapping[str, Any]] = None) -> ClassificationConfig:
    """Read a YAML recipe and apply ``overrides`` (e.g. parsed CLI flags); a recipe's ``source`` is informational.

    Raises:
        FileNotFoundError: The recipe does not exist.
        ValueError: A key is not a :class:`ClassificationConfig` field.
    """
    return load_dataclass_config(ClassificationConfig, path, overrides)


# ----------------------------------------------------------------------------------------------- helpers

def _seed_all(seed: int) -> None:
    seed = seed % 2 ** 32
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _epoch_seed(cfg: ClassificationConfig, epoch: int, rank: int) -> int:
    return cfg.seed + 1_000_003 * (epoch + 1) + 7919 * rank


def create_classifier(
        name: str,
        num_classes: int,
        img_size: Optional[int] = None,
        drop_rate: float = 0.0,
        drop_path: Optional[float] = None,
        **kwargs: Any,
) -> nn.Module:
    """``timm.create_model`` without pretrained weights; ``img_size`` is passed to models that take it (ViT, Swin).

    Raises:
        ValueError: ``name`` is not a registered timm model.
    """
    import timm
    if not timm.is_model(name):
        close = timm.list_models(f'*{name}*')[:8]
        raise ValueError(f'unknown model {name!r}; expected a timm-registered name (similar: {close})')
    args: Dict[str, Any] = dict(num_classes=num_classes, drop_rate=drop_rate, **kwargs)
    if drop_path is not None:
        args['drop_path_rate'] = drop_path
    default = timm.models.get_pretrained_cfg(name)
    default_size = (default.input_size[-1] if default is not None and default.input_size else None)
    if img_size is not None and img_size != default_size:
        try:
            return timm.create_model(name, pretrained=False, img_size=img_size, **args)
        except TypeError:  # a model without an img_size argument (CNNs) takes any input size
            pass
    return timm.create_model(name, pretrained=False, **args)


def _model_img_size(name: str, dataset: str) -> int:
    import timm
    if dataset == 'digits':
        return 32
    cfg = timm.models.get_pretrained_cfg(name)
    return int(cfg.input_size[-1]) if cfg is not None and cfg.input_size else 224


def _data_cfg(cfg: ClassificationConfig) -> Dict[str, Any]:
    """Input size, crop, interpolation and normalisation for the run."""
    import timm
    img_size = cfg.img_size or _model_img_size(cfg.model, cfg.dataset)
    pcfg = timm.models.get_pretrained_cfg(cfg.model)
    mean, std = (pcfg.mean, pcfg.std) if pcfg is not None else ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    ds = dataset_mean_std(cfg.dataset)
    if ds is not None:
        mean, std = ds
    crop_pct = cfg.crop_pct
    if crop_pct is None:
        crop_pct = 1.0 if cfg.dataset in ('digits', 'cifar10', 'cifar100') else (
            pcfg.crop_pct if pcfg is not None else 0.875)
    return dict(img_size=int(img_size), mean=tuple(cfg.mean or mean), std=tuple(cfg.std or std),
                crop_pct=float(crop_pct), interpolation=cfg.interpolation)


def _transforms(cfg: ClassificationConfig, dcfg: Mapping[str, Any], train: bool):
    from timm.data import create_transform
    common = dict(input_size=dcfg['img_size'], interpolation=dcfg['interpolation'], mean=dcfg['mean'],
                  std=dcfg['std'], crop_pct=dcfg['crop_pct'])
    if not train:
        return create_transform(is_training=False, **common)
    return create_transform(
        is_training=True, scale=cfg.scale, ratio=cfg.ratio, hflip=cfg.hflip,
        color_jitter=cfg.color_jitter or 0.0, auto_augment=cfg.auto_augment, re_prob=cfg.reprob,
        re_mode=cfg.remode, re_count=cfg.recount, **common)


def _autocast(device: str, cfg_amp: bool, dtype: str):
    if not cfg_amp:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=getattr(torch, dtype))


def _state_dict(model: nn.Module) -> Dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


@torch.no_grad()
def evaluate(
        model: nn.Module,
        loader: DataLoader,
        device: str,
        amp: bool = False,
        amp_dtype: str = 'bfloat16',
        channels_last: bool = False,
        progress: bool = False,
        desc: str = 'val',
) -> Dict[str, float]:
    """Top-1 / top-5 accuracy (percent) and mean cross-entropy of ``model`` over ``loader``.

    Under DDP each rank evaluates its own part; the sums are reduced, so every rank returns the totals.
    """
    from tqdm import tqdm
    model.eval()
    stats = torch.zeros(4, dtype=torch.float64)  # loss sum, top1, top5, count
    for batch in tqdm(loader, desc=desc, disable=not progress, leave=False, dynamic_ncols=True):
        if batch is None:
            continue
        x, y = batch
        x, y = x.to(device), y.to(device)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with _autocast(device, amp, amp_dtype):
            out = model(x)
        out = out.float()
        k = min(5, out.shape[-1])
        top = out.topk(k, dim=-1).indices
        hit = top.eq(y[:, None])
        stats += torch.tensor([F.cross_entropy(out, y, reduction='sum').item(), hit[:, :1].sum().item(),
                               hit.sum().item(), y.numel()], dtype=torch.float64)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        stats = all_reduce_mean(stats) * torch.distributed.get_world_size()
    n = max(stats[3].item(), 1.0)
    return dict(loss=stats[0].item() / n, top1=100.0 * stats[1].item() / n, top5=100.0 * stats[2].item() / n,
                count=int(stats[3].item()))


def _shard(dataset: Dataset, env: DistEnv) -> Dataset:
    """This rank's interleaved share of ``dataset`` for evaluation (no padding, so nothing is counted twice)."""
    if not env.distributed:
        return dataset
    return Subset(dataset, list(range(env.rank, len(dataset), env.world_size)))


def _make_loader(dataset: Dataset, batch_size: int, workers: int, device: str, shuffle: bool = False,
                 sampler=None, generator: Optional[torch.Generator] = None, drop_last: bool = False) -> DataLoader:
    return DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle and sampler is None, sampler=sampler, num_workers=workers,
        collate_fn=collate_skip_none, pin_memory=device.startswith('cuda'), drop_last=drop_last,
        generator=generator, worker_init_fn=seed_worker if workers else None, persistent_workers=False)


# ----------------------------------------------------------------------------------------------- training

def train_classification(cfg: ClassificationConfig) -> Dict[str, Any]:
    """Train ``cfg.model`` on ``cfg.dataset``; write checkpoints, logs and a summary into ``cfg.output``.

    Outputs: ``last.pth`` (every epoch) and ``best.pth`` (best validation top-1), ``log.csv`` (one row per
    epoch), ``tb/`` (when TensorBoard is installed), ``config.yaml``, ``summary.json`` and ``summary.md``.

    Returns:
        The summary: model, params, best / final top-1 and top-5, losses, epochs, images seen, time and the
        per-epoch history.

    Raises:
        FloatingPointError: More than ``cfg.nan_tolerance`` non-finite training losses.
        FileNotFoundError / ValueError: Missing data, unknown model, bad config or checkpoint.
    """
    env = setup_distributed(cfg.device)
    try:
        return _train(cfg, env)
    finally:
        cleanup_distributed()


def _train(cfg: ClassificationConfig, env: DistEnv) -> Dict[str, Any]:
    from timm.data import Mixup
    from timm.data.distributed_sampler import RepeatAugSampler
    from timm.loss import BinaryCrossEntropy, LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
    from timm.optim import create_optimizer_v2
    from timm.scheduler import create_scheduler_v2
    from timm.utils import ModelEmaV3, dispatch_clip_grad
    from tqdm import tqdm

    device = env.device
    main = env.is_main
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    elif env.distributed and device == 'cpu':
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // env.world_size))
    os.makedirs(cfg.output, exist_ok=True)

    # ---- data
    dcfg = _data_cfg(cfg)
    train_set = build_dataset(cfg.dataset, cfg.data_dir, cfg.train_split, _transforms(cfg, dcfg, True),
                              img_size=dcfg['img_size'], skip_corrupt=cfg.skip_corrupt)
    val_set = build_dataset(cfg.dataset, cfg.data_dir, cfg.val_split, _transforms(cfg, dcfg, False),
                            img_size=dcfg['img_size'], skip_corrupt=cfg.skip_corrupt)
    if len(val_set.classes) != len(train_set.classes):
        raise ValueError(f'train split has {len(train_set.classes)} classes but val split has '
                         f'{len(val_set.classes)}; expected the same class folders in both')
    num_classes = cfg.num_classes or train_set.num_classes
    if num_classes < train_set.num_classes:
        raise ValueError(f'num_classes={num_classes} but the dataset has {train_set.num_classes} classes')

    generator = torch.Generator()
    if cfg.aug_repeats:
        sampler = RepeatAugSampler(train_set, num_replicas=env.world_size, rank=env.rank, shuffle=True,
                                   num_repeats=cfg.aug_repeats)
    elif env.distributed:
        sampler = torch.utils.data.DistributedSampler(train_set, num_replicas=env.world_size, rank=env.rank,
                                                      shuffle=True, seed=cfg.seed, drop_last=True)
    else:
        sampler = None
    train_loader = _make_loader(train_set, cfg.batch_size, cfg.workers, device, shuffle=True, sampler=sampler,
                                generator=generator, drop_last=True)
    val_loader = _make_loader(_shard(val_set, env), cfg.val_batch_size or cfg.batch_size, cfg.workers, device)
    updates_per_epoch = len(train_loader)
    if cfg.max_train_batches:
        updates_per_epoch = min(updates_per_epoch, cfg.max_train_batches)
    if updates_per_epoch < 1:
        raise ValueError(f'the training split has {len(train_set)} images, fewer than one batch of '
                         f'{cfg.batch_size} per process ({env.world_size} processes); lower batch_size')

    # ---- model
    _seed_all(cfg.seed)
    model = create_classifier(cfg.model, num_classes, dcfg['img_size'], cfg.drop_rate, cfg.drop_path,
                              **cfg.model_kwargs)
    if cfg.initial_checkpoint:
        init = load_checkpoint(cfg.initial_checkpoint, CHECKPOINT_KIND, required=('model',))
        model.load_state_dict(init['model'])
    if cfg.grad_checkpointing:
        model.set_grad_checkpointing(True)
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    num_params = sum(p.numel() for p in model.parameters())

    global_batch = cfg.batch_size * env.world_size
    lr = cfg.lr
    if lr is None:
        factor = global_batch / cfg.lr_base_size
        lr = cfg.lr_base * (math.sqrt(factor) if cfg.lr_base_scale == 'sqrt' else factor)
    opt_kwargs: Dict[str, Any] = {}
    if cfg.opt_eps is not None:
        opt_kwargs['eps'] = cfg.opt_eps
    if cfg.opt_betas is not None:
        opt_kwargs['betas'] = cfg.opt_betas
    optimizer = create_optimizer_v2(model, opt=cfg.opt, lr=lr, weight_decay=cfg.weight_decay,
                                    momentum=cfg.momentum, layer_decay=cfg.layer_decay, **opt_kwargs)
    scheduler, _ = create_scheduler_v2(
        optimizer, sched=cfg.sched, num_epochs=cfg.epochs, warmup_epochs=cfg.warmup_epochs,
        warmup_lr=cfg.warmup_lr, min_lr=cfg.min_lr, cooldown_epochs=cfg.cooldown_epochs,
        step_on_epochs=False, updates_per_epoch=updates_per_epoch)
    use_scaler = cfg.amp and cfg.amp_dtype == 'float16' and device.startswith('cuda')
    scaler = torch.amp.GradScaler('cuda') if use_scaler else None
    ema = ModelEmaV3(model, decay=cfg.model_ema_decay, use_warmup=cfg.model_ema_warmup) if cfg.model_ema else None

    # ---- resume
    start_epoch, num_updates, images_seen, best_top1, nonfinite = 0, 0, 0, -1.0, 0
    history: List[Dict[str, Any]] = []
    resume = cfg.resume
    if resume == 'auto':
        resume = os.path.join(cfg.output, 'last.pth')
        resume = resume if os.path.isfile(resume) else None
    if resume:
        ck = load_checkpoint(resume, CHECKPOINT_KIND, required=('model', 'optimizer', 'scheduler', 'epoch'))
        if ck.get('model_name') != cfg.model:
            raise ValueError(f'checkpoint {resume!r} is for model {ck.get("model_name")!r}; the run trains '
                             f'{cfg.model!r}')
        if ck.get('num_classes') != num_classes:
            raise ValueError(f'checkpoint {resume!r} has {ck.get("num_classes")} classes; the dataset has '
                             f'{num_classes}')
        model.load_state_dict(ck['model'])
        optimizer.load_state_dict(ck['optimizer'])
        scheduler.load_state_dict(ck['scheduler'])
        if ema is not None and ck.get('ema') is not None:
            ema.module.load_state_dict(ck['ema'])
        if scaler is not None and ck.get('scaler'):
            scaler.load_state_dict(ck['scaler'])
        start_epoch = int(ck['epoch']) + 1
        num_updates, images_seen = int(ck['num_updates']), int(ck['images_seen'])
        best_top1, nonfinite = float(ck['best_top1']), int(ck.get('nonfinite', 0))
        history = list(ck.get('history', []))
        scheduler.step_update(num_updates)
        if main:
            print(f'resumed from {resume} at epoch {start_epoch} ({num_updates} updates)')

    train_model: nn.Module = model
    if env.distributed:
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[env.local_rank] if device.startswith('cuda') else None)
    if cfg.compile:
        train_model = torch.compile(train_model)

    # ---- loss
    mixup_fn = None
    if cfg.mixup > 0 or cfg.cutmix > 0:
        mixup_fn = Mixup(mixup_alpha=cfg.mixup, cutmix_alpha=cfg.cutmix, prob=cfg.mixup_prob,
                         switch_prob=cfg.mixup_switch_prob, mode=cfg.mixup_mode, label_smoothing=cfg.smoothing,
                         num_classes=num_classes)
    if cfg.bce_loss:
        criterion: nn.Module = BinaryCrossEntropy(smoothing=0.0 if mixup_fn else cfg.smoothing,
                                                  target_threshold=cfg.bce_target_thresh)
    elif mixup_fn is not None:
        criterion = SoftTargetCrossEntropy()
    elif cfg.smoothing:
        criterion = LabelSmoothingCrossEntropy(smoothing=cfg.smoothing)
    else:
        criterion = nn.CrossEntropyLoss()

    writer = None
    if main:
        with open(os.path.join(cfg.output, 'config.yaml'), 'w') as f:
            import yaml
            yaml.safe_dump(_plain(cfg.to_dict()), f, sort_keys=False)
        writer = MetricWriter(cfg.output, tensorboard=cfg.tensorboard, step_key='epoch')
        writer.csv.truncate_after(start_epoch - 1)
        print(f'{cfg.model}: {num_params / 1e6:.3f}M params, {num_classes} classes, {len(train_set)} train / '
              f'{len(val_set)} val images at {dcfg["img_size"]}px, {env.world_size} process(es) on {device}, '
              f'global batch {global_batch}, lr {lr:.3g}, {updates_per_epoch} updates/epoch')

    t_start = time.time()
    epochs_run = 0
    for epoch in range(start_epoch, cfg.epochs):
        if cfg.stop_after_epochs is not None and epochs_run >= cfg.stop_after_epochs:
            break
        _seed_all(_epoch_seed(cfg, epoch, env.rank))
        generator.manual_seed(_epoch_seed(cfg, epoch, 0))
        if hasattr(sampler, 'set_epoch'):
            sampler.set_epoch(epoch)
        train_model.train()
        t0 = time.time()
        loss_sum, loss_n, epoch_images = 0.0, 0, 0
        bar = tqdm(total=updates_per_epoch, desc=f'epoch {epoch + 1}/{cfg.epochs}', disable=not (main and cfg.progress),
                   leave=False, dynamic_ncols=True)
        for i, batch in enumerate(train_loader):
            if i >= updates_per_epoch:
                break
            if batch is None:
                continue
            x, y = batch
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            if mixup_fn is not None:
                if x.shape[0] % 2:  # timm's Mixup needs an even batch (a skipped corrupt file can make it odd)
                    x, y = x[:-1], y[:-1]
                x, y = mixup_fn(x, y)
            if cfg.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with _autocast(device, cfg.amp, cfg.amp_dtype):
                out = train_model(x)
                loss = criterion(out, y)
            finite = torch.isfinite(loss.detach()).float()
            if env.distributed:  # every rank must take the same branch, or DDP's all-reduce would hang
                finite = all_reduce_mean(finite.cpu() if device == 'cpu' else finite)
            if finite.item() < 1.0:
                nonfinite += 1
                if main:
                    print(f'warning: non-finite loss {loss.item()} at epoch {epoch + 1}, step {i + 1}; update '
                          f'skipped ({nonfinite} so far, tolerance {cfg.nan_tolerance})')
                if nonfinite > cfg.nan_tolerance:
                    raise FloatingPointError(
                        f'non-finite training loss ({loss.item()}) at epoch {epoch + 1}, step {i + 1}, after '
                        f'{nonfinite} non-finite losses (nan_tolerance={cfg.nan_tolerance}); the last good '
                        f'checkpoint is {os.path.join(cfg.output, "last.pth")} (if one was written). Lower the '
                        'learning rate, enable clip_grad, or use amp_dtype=bfloat16.')
                optimizer.zero_grad(set_to_none=True)
                continue
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                if cfg.clip_grad:
                    scaler.unscale_(optimizer)
                    dispatch_clip_grad(model.parameters(), cfg.clip_grad, mode=cfg.clip_mode)
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                if cfg.clip_grad:
                    dispatch_clip_grad(model.parameters(), cfg.clip_grad, mode=cfg.clip_mode)
                optimizer.step()
            num_updates += 1
            scheduler.step_update(num_updates=num_updates)
            if ema is not None:
                ema.update(model, step=num_updates)
            loss_sum += loss.item()
            loss_n += 1
            epoch_images += x.shape[0] * env.world_size
            bar.update(1)
            bar.set_postfix(loss=f'{loss_sum / loss_n:.4f}', lr=f'{optimizer.param_groups[0]["lr"]:.2e}')
        bar.close()
        scheduler.step(epoch + 1)
        images_seen += epoch_images
        train_loss = loss_sum / max(loss_n, 1)
        if env.distributed:
            train_loss = all_reduce_mean(torch.tensor(train_loss, dtype=torch.float64)).item()
        train_time = time.time() - t0

        metrics = evaluate(model, val_loader, device, cfg.amp, cfg.amp_dtype, cfg.channels_last,
                           progress=main and cfg.progress)
        row: Dict[str, Any] = dict(
            epoch=epoch, lr=optimizer.param_groups[0]['lr'], train_loss=train_loss, val_loss=metrics['loss'],
            val_top1=metrics['top1'], val_top5=metrics['top5'], images_seen=images_seen,
            train_images_per_s=epoch_images / max(train_time, 1e-9), epoch_time=time.time() - t0)
        score = metrics['top1']
        if ema is not None:
            em = evaluate(ema.module, val_loader, device, cfg.amp, cfg.amp_dtype, cfg.channels_last)
            row.update(ema_val_loss=em['loss'], ema_val_top1=em['top1'], ema_val_top5=em['top5'])
            score = max(score, em['top1'])
        history.append(row)
        is_best = score > best_top1
        best_top1 = max(best_top1, score)
        if main:
            state = dict(
                model=_state_dict(model), optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                ema=_state_dict(ema.module) if ema is not None else None,
                scaler=scaler.state_dict() if scaler is not None else None,
                epoch=epoch, num_updates=num_updates, images_seen=images_seen, best_top1=best_top1,
                nonfinite=nonfinite, history=history, model_name=cfg.model, num_classes=num_classes,
                class_names=list(train_set.classes), data_config=_plain(dcfg), config=_plain(cfg.to_dict()))
            save_checkpoint(state, os.path.join(cfg.output, 'last.pth'), CHECKPOINT_KIND)
            if is_best:
                save_checkpoint(state, os.path.join(cfg.output, 'best.pth'), CHECKPOINT_KIND)
            writer.log(row)
            ema_txt = f' | ema top-1 {row["ema_val_top1"]:.2f}' if ema is not None else ''
            print(f'epoch {epoch + 1:>3}/{cfg.epochs}  train loss {train_loss:.4f}  val loss {metrics["loss"]:.4f}  '
                  f'top-1 {metrics["top1"]:.2f}  top-5 {metrics["top5"]:.2f}{ema_txt}  '
                  f'({row["train_images_per_s"]:.0f} img/s, {row["epoch_time"]:.1f}s)', flush=True)
        barrier()
        epochs_run += 1

    summary = _summary(cfg, num_params, history, time.time() - t_start)
    if main:
        writer.close()
        atomic_write_text(os.path.join(cfg.output, 'summary.json'), json.dumps(summary, indent=2))
        md = summary_markdown(summary)
        atomic_write_text(os.path.join(cfg.output, 'summary.md'), md)
        print(md)
    return summary


def _plain(obj: Any) -> Any:
    """Tuples to lists, recursively (YAML / JSON friendly)."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def _summary(cfg: ClassificationConfig, num_params: int, history: Sequence[Mapping[str, Any]],
             wall: float) -> Dict[str, Any]:
    last = history[-1] if history else {}
    best = max(history, key=lambda r: r['val_top1']) if history else {}
    return dict(
        model=cfg.model, dataset=cfg.dataset, params=num_params, epochs=len(history),
        final_top1=last.get('val_top1'), final_top5=last.get('val_top5'), final_val_loss=last.get('val_loss'),
        final_train_loss=last.get('train_loss'), best_top1=best.get('val_top1'),
        best_epoch=(best.get('epoch', -1) + 1) if best else None,
        final_ema_top1=last.get('ema_val_top1'), images_seen=last.get('images_seen', 0),
        train_seconds_this_session=round(wall, 2),
        train_seconds_total=round(sum(r.get('epoch_time', 0.0) for r in history), 2),
        output=cfg.output, history=[dict(r) for r in history])


def summary_markdown(summary: Mapping[str, Any]) -> str:
    """A short markdown report of a run."""
    def f(v, nd=2):
        return '-' if v is None else f'{v:.{nd}f}'
    lines = [
        f'## {summary["model"]} on {summary["dataset"]}', '',
        '| params | epochs | images seen | train time (s) | final top-1 | best top-1 (epoch) | final top-5 | '
        'val loss |',
        '|---|---|---|---|---|---|---|---|',
        f'| {summary["params"] / 1e6:.3f}M | {summary["epochs"]} | {summary["images_seen"]} | '
        f'{f(summary["train_seconds_total"], 1)} | {f(summary["final_top1"])} | {f(summary["best_top1"])} '
        f'({summary["best_epoch"]}) | {f(summary["final_top5"])} | {f(summary["final_val_loss"], 4)} |',
    ]
    if summary.get('final_ema_top1') is not None:
        lines += ['', f'EMA weights: final top-1 {f(summary["final_ema_top1"])}']
    return '\n'.join(lines) + '\n'


# ----------------------------------------------------------------------------------------------- validation

def validate_classification(
        checkpoint: Optional[str] = None,
        model: Optional[str] = None,
        dataset: str = 'digits',
        data_dir: Optional[str] = None,
        split: str = 'val',
        batch_size: int = 128,
        workers: int = 2,
        img_size: Optional[int] = None,
        crop_pct: Optional[float] = None,
        device: str = 'auto',
        amp: bool = False,
        amp_dtype: str = 'bfloat16',
        channels_last: bool = False,
        skip_corrupt: bool = False,
        use_ema: bool = False,
        progress: bool = True,
) -> Dict[str, Any]:
    """Top-1 / top-5 and loss of a checkpoint (or an untrained ``model``) on a dataset split.

    The input size, crop and normalisation default to those the checkpoint was trained with.

    Raises:
        FileNotFoundError: Missing checkpoint or dataset path.
        ValueError: The dataset's class count differs from the checkpoint's, a file is corrupt (unless
            ``skip_corrupt``), or neither ``checkpoint`` nor ``model`` is given.
    """
    if checkpoint is None and model is None:
        raise ValueError('validate needs a checkpoint (--checkpoint) or a model name (--model)')
    ck = None
    if checkpoint is not None:
        ck = load_checkpoint(checkpoint, CHECKPOINT_KIND, required=('model', 'model_name', 'num_classes'))
        if model is not None and model != ck['model_name']:
            raise ValueError(f'--model {model!r} does not match checkpoint {checkpoint!r}, which holds '
                             f'{ck["model_name"]!r}')
        model = ck['model_name']
    saved = dict(ck.get('data_config') or {}) if ck else {}
    overrides = dict(model=model, dataset=dataset, img_size=img_size or saved.get('img_size'),
                     crop_pct=crop_pct if crop_pct is not None else saved.get('crop_pct'))
    if saved.get('mean'):
        overrides.update(mean=saved['mean'], std=saved['std'], interpolation=saved.get('interpolation', 'bicubic'))
    cfg = load_config(None, overrides)
    dcfg = _data_cfg(cfg)
    if device == 'auto':
        device = 'cuda' if torch.cuda.is_available() else 'cpu'
    ds = build_dataset(dataset, data_dir, split, _transforms(cfg, dcfg, False), img_size=dcfg['img_size'],
                       skip_corrupt=skip_corrupt)
    num_classes = ck['num_classes'] if ck else ds.num_classes
    if ds.num_classes != num_classes:
        raise ValueError(
            f'dataset {dataset!r} split {split!r} ({data_dir or "embedded"}) has {ds.num_classes} classes, but '
            f'checkpoint {checkpoint!r} was trained for {num_classes}; expected the same class folders')
    # the run's construction overrides (e.g. a depth-scaled trunk) rebuild the architecture it trained
    model_kwargs = dict(((ck.get('config') or {}).get('model_kwargs') or {}) if ck else {})
    net = create_classifier(model, num_classes, dcfg['img_size'], **model_kwargs)
    if ck is not None:
        weights = ck['ema'] if use_ema and ck.get('ema') is not None else ck['model']
        if use_ema and ck.get('ema') is None:
            raise ValueError(f'checkpoint {checkpoint!r} has no EMA weights (trained without model_ema)')
        net.load_state_dict(weights)
    net.to(device)
    if channels_last:
        net.to(memory_format=torch.channels_last)
    loader = _make_loader(ds, batch_size, workers, device)
    t0 = time.time()
    m = evaluate(net, loader, device, amp, amp_dtype, channels_last, progress=progress, desc=f'validate {split}')
    return dict(model=model, checkpoint=checkpoint, dataset=dataset, split=split, images=m['count'],
                skipped=len(ds) - m['count'], top1=m['top1'], top5=m['top5'], loss=m['loss'],
                img_size=dcfg['img_size'], seconds=round(time.time() - t0, 2),
                params=sum(p.numel() for p in net.parameters()))


# ----------------------------------------------------------------------------------------------- comparison

def compare_classification(
        baseline: str,
        steps: str,
        config: Optional[ClassificationConfig] = None,
        output: str = 'runs/compare_cls',
        seeds: Sequence[int] = (0,),
        baseline_kwargs: Optional[Mapping[str, Any]] = None,
        steps_kwargs: Optional[Mapping[str, Any]] = None,
) -> Dict[str, Any]:
    """Train a baseline and its Steps twin on the same data, budget and seeds; write a report.

    Both models use ``config`` (recipe, epochs, batch size) with only the model changed, so they see the same
    images in the same order for a given seed. Each run has its own folder ``<output>/seed<k>/<role>``.
    Outputs in ``output``: ``report.md`` (table + difference), ``results.json`` and ``curves.png``
    (validation top-1 and training loss against images seen). ``results.json`` holds ``task``, ``config``,
    ``seeds`` and, for ``baseline`` and ``steps``: name, params, val_top1 (mean over seeds), val_top1_std,
    val_top5, val_loss, best_top1, images_seen, train_seconds, per_seed and curve (first seed); plus
    ``delta_val_top1`` (Steps - baseline, mean) and its per-seed values.

    Returns:
        The contents of ``results.json``.
    """
    config = config or default_cpu_config()
    if not seeds:
        raise ValueError('seeds must name at least one seed')
    t0 = time.time()
    runs: Dict[str, List[Dict[str, Any]]] = {'baseline': [], 'steps': []}
    for seed in seeds:
        for role, name, extra in (('baseline', baseline, baseline_kwargs), ('steps', steps, steps_kwargs)):
            run_cfg = dataclasses.replace(
                config, model=name, seed=int(seed), output=os.path.join(output, f'seed{seed}', role), resume=None,
                model_kwargs=dict(config.model_kwargs, **(extra or {})), stop_after_epochs=None)
            s = train_classification(run_cfg)
            runs[role].append(s)
            print(f'  seed {seed} {role:>8} {name}: val top-1 {s["final_top1"]:.2f}, loss {s["final_val_loss"]:.4f}, '
                  f'{s["images_seen"]} images, {s["train_seconds_total"]:.0f} s', flush=True)
    results: Dict[str, Any] = dict(task='cls', config=_plain(config.to_dict()), seeds=[int(x) for x in seeds],
                                   torch=torch.__version__, threads=torch.get_num_threads())
    for role, rs in runs.items():
        top1 = [r['final_top1'] for r in rs]
        results[role] = dict(
            name=rs[0]['model'], params=rs[0]['params'],
            model_kwargs=_plain(dict(baseline_kwargs if role == 'baseline' else steps_kwargs or {})),
            val_top1=float(np.mean(top1)), val_top1_std=float(np.std(top1, ddof=1)) if len(top1) > 1 else 0.0,
            val_top5=float(np.mean([r['final_top5'] for r in rs])),
            val_loss=float(np.mean([r['final_val_loss'] for r in rs])),
            best_top1=float(np.mean([r['best_top1'] for r in rs])),
            images_seen=int(rs[0]['images_seen']),
            train_seconds=float(np.mean([r['train_seconds_total'] for r in rs])),
            per_seed=[dict(seed=int(sd), val_top1=r['final_top1'], val_loss=r['final_val_loss'],
                           best_top1=r['best_top1']) for sd, r in zip(seeds, rs)],
            curve=[dict(epoch=h['epoch'], images_seen=h['images_seen'], val_top1=h['val_top1'],
                        val_loss=h['val_loss'], train_loss=h['train_loss']) for h in rs[0]['history']])
    diffs = [s['final_top1'] - b['final_top1'] for b, s in zip(runs['baseline'], runs['steps'])]
    results['delta_val_top1'] = float(np.mean(diffs))
    results['delta_val_top1_per_seed'] = diffs
    results['wall_time_s'] = round(time.time() - t0, 1)
    if int(os.environ.get('RANK', '0')) == 0:
        os.makedirs(output, exist_ok=True)
        atomic_write_text(os.path.join(output, 'results.json'), json.dumps(results, indent=2))
        _plot_curves(results, os.path.join(output, 'curves.png'))
        report = _compare_markdown(results)
        atomic_write_text(os.path.join(output, 'report.md'), report)
        print(report)
    return results


def _label(r: Mapping[str, Any]) -> str:
    """Model name with its construction overrides (a baseline may be a Steps entrypoint built with one step)."""
    extra = r.get('model_kwargs') or {}
    return r['name'] + (f' ({", ".join(f"{k}={v}" for k, v in extra.items())})' if extra else '')


def _compare_markdown(results: Mapping[str, Any]) -> str:
    b, s = results['baseline'], results['steps']
    cfg = results['config']
    n = len(results['seeds'])
    rows = ['| | model | params | val top-1 | best top-1 | val loss | images seen | train time (s) |',
            '|---|---|---|---|---|---|---|---|']
    for role, r in (('baseline', b), ('steps', s)):
        std = f' +- {r["val_top1_std"]:.2f}' if n > 1 else ''
        rows.append(f'| {role} | {_label(r)} | {r["params"] / 1e6:.3f}M | {r["val_top1"]:.2f}{std} | '
                    f'{r["best_top1"]:.2f} | {r["val_loss"]:.4f} | {r["images_seen"]} | {r["train_seconds"]:.1f} |')
    per_seed = ', '.join(f'{d:+.2f}' for d in results['delta_val_top1_per_seed'])
    return '\n'.join([
        f'# Classification comparison: {_label(s)} vs {_label(b)}', '',
        f'Dataset `{cfg["dataset"]}`, {cfg["epochs"]} epochs, batch {cfg["batch_size"]}, seed(s) '
        f'{results["seeds"]}, the same recipe and the same images for both models. Means over {n} seed(s); with '
        'one seed, differences of a few tenths of a point are within run-to-run noise.', '',
        *rows, '',
        f'Steps - baseline: {results["delta_val_top1"]:+.2f} top-1 points (per seed: {per_seed}); parameter '
        f'ratio {s["params"] / b["params"]:.4f}.', '',
        '![curves](curves.png)', ''])


DIGITS_CPU_RECIPE: Dict[str, Any] = dict(
    model='test_steps_resnet', dataset='digits', img_size=32, batch_size=64, workers=1, threads=1, epochs=30,
    opt='adamw', lr=3e-3, weight_decay=0.05, sched='cosine', warmup_epochs=2, warmup_lr=1e-5, min_lr=1e-5,
    scale=(0.7, 1.0), ratio=(0.9, 1.1), hflip=0.0, color_jitter=None, auto_augment=None, reprob=0.0, mixup=0.0,
    cutmix=0.0, smoothing=0.1, drop_path=0.0, model_ema=False, output='runs/cls/digits')


def default_recipe_path() -> Optional[str]:
    """``configs/cls/digits_cpu.yaml`` of a source checkout, or None when the package is installed without it."""
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    path = os.path.join(here, 'configs', 'cls', 'digits_cpu.yaml')
    return path if os.path.isfile(path) else None


def default_cpu_config(overrides: Optional[Mapping[str, Any]] = None) -> ClassificationConfig:
    """The CPU recipe for the embedded digits default (the YAML file when present, else the same values)."""
    path = default_recipe_path()
    if path is not None:
        return load_config(path, overrides)
    return load_config(None, dict(DIGITS_CPU_RECIPE, **(overrides or {})))


# ``stepsnet compare --task cls``: the plain twin of the tiny Steps-ResNet (one step per stage) is the default
# baseline, so the CPU comparison needs no other model family.
PLAIN_TWIN_KWARGS = dict(num_steps=(1, 1, 1, 1), steps_move=(0, 0, 0, 0))


def compare_add_arguments(parser) -> None:
    """Add the image-classification options to the ``compare`` parser."""
    g = parser.add_argument_group('image classification (--task cls; budget = the recipe\'s epochs, --minutes '
                                  'is not used)')
    g.add_argument('--cls-baseline', default='test_steps_resnet',
                   help='baseline timm model (default: test_steps_resnet built with one step per stage, i.e. '
                        'a plain ResNet of the same widths and depths; see --cls-baseline-kwargs)')
    g.add_argument('--cls-baseline-kwargs', type=json.loads, default=None, metavar='JSON',
                   help='model arguments for the baseline (default for the tiny pair: the plain twin, '
                        f'{json.dumps(PLAIN_TWIN_KWARGS)})')
    g.add_argument('--cls-steps', default='test_steps_resnet', help='Steps model (default test_steps_resnet)')
    g.add_argument('--cls-epochs', type=int, default=None, help='epochs for both models (default: the recipe)')
    g.add_argument('--cls-dataset', default=None, help='digits, imagefolder, cifar10, cifar100 (default: recipe)')
    g.add_argument('--cls-data-dir', default=None, help='dataset root for imagefolder / cifar')


def compare_from_args(args) -> Dict[str, Any]:
    """Run :func:`compare_classification` from parsed ``compare`` arguments."""
    overrides = dict(epochs=args.cls_epochs, dataset=args.cls_dataset, data_dir=args.cls_data_dir,
                     device=args.device, progress=not args.no_progress, tensorboard=False)
    cfg = load_config(args.config, overrides) if args.config else default_cpu_config(overrides)
    baseline_kwargs = args.cls_baseline_kwargs
    if baseline_kwargs is None and args.cls_baseline == args.cls_steps == 'test_steps_resnet':
        baseline_kwargs = PLAIN_TWIN_KWARGS
    return compare_classification(args.cls_baseline, args.cls_steps, cfg, output=args.out, seeds=args.seeds,
                                  baseline_kwargs=baseline_kwargs)


def _plot_curves(results: Mapping[str, Any], path: str) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for role in ('baseline', 'steps'):
        r = results[role]
        xs = [c['images_seen'] for c in r['curve']]
        axes[0].plot(xs, [c['val_top1'] for c in r['curve']], label=f'{role}: {r["name"]}')
        axes[1].plot(xs, [c['train_loss'] for c in r['curve']], label=f'{role}: {r["name"]}')
    axes[0].set(xlabel='images seen', ylabel='val top-1 (%)', title='validation accuracy')
    axes[1].set(xlabel='images seen', ylabel='train loss', title='training loss')
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    tmp = path + '.tmp.png'
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)
