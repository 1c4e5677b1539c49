"""Image classification: training and validation for any timm model name.

The pipeline is timm's own: ``create_transform`` (RandAugment, random erasing, random resized crop), ``Mixup`` /
CutMix, label smoothing or binary cross-entropy, ``create_optimizer_v2``, ``create_scheduler_v2`` (stepped per
update), ``ModelEmaV3`` and ``accuracy``. The loop, AMP, ``channels_last``, ``torch.compile``, DDP, checkpoints
and the non-finite policy are the shared engine's (:mod:`stepsnet.engine`). One :class:`ClassificationConfig`
describes a run; the YAML recipes in ``configs/cls`` are its fields.

Resuming is exact: the batches of every epoch are a permutation seeded by ``(seed, epoch)``
(:func:`stepsnet.data.sampler.epoch_batches`) and the augmentation streams (torch, numpy, ``random``, the
loader's workers) are re-seeded from ``(seed, epoch, rank)`` at the start of each epoch, so a run killed after
epoch ``k`` and resumed from its checkpoint logs the same losses as a run that never stopped.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import sys
import time
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import timm
import torch
import torch.nn as nn
from timm.data import Mixup, create_transform
from timm.loss import BinaryCrossEntropy, LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from timm.models import load_state_dict
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from timm.utils import ModelEmaV3, accuracy
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from stepsnet.config.classification import ClassificationConfig, load_config
from stepsnet.data.images import (
    SIGNAL_DATASETS,
    build_dataset,
    check_class_names,
    collate_skip_none,
    dataset_mean_std,
    safe_augmentations,
    seed_worker,
)
from stepsnet.data.layouts import dry_run_data_dir, dry_run_sets
from stepsnet.data.mnist1d import INPUT_SIZE as SIGNAL_INPUT_SIZE
from stepsnet.data.sampler import steps_per_epoch
from stepsnet.engine import (
    DistEnv,
    Progress,
    RunFolder,
    Schedule,
    all_reduce_sum,
    amp_context,
    config_dict,
    distributed,
    epoch_loader_batches,
    fit,
    loader_errors,
    prepare,
    resolve_device,
    seed_all,
)
from stepsnet.models.factory import CLS_KIND, classifier_from_checkpoint, create_classifier
from stepsnet.utils.checkpoint import load_checkpoint
from stepsnet.utils.logging import interactive
from stepsnet.utils.names import plural

__all__ = ['ClassificationConfig', 'load_config', 'data_config', 'train_classification', 'validate_classification',
           'evaluate']


# ----------------------------------------------------------------------------------------------- data

# recipe fields that only the image pipeline reads (timm's create_transform; CutMix's boxes, which have no area on an
# image one pixel high) and the values that leave them off; a 1-D signal set refuses any other value but the default
_IMAGE_ONLY: Dict[str, Tuple[Any, ...]] = {
    'img_size': (None, SIGNAL_INPUT_SIZE[-1]), 'crop_pct': (None, 1.0), 'interpolation': (), 'mean': (None,),
    'std': (None,), 'scale': (), 'ratio': (), 'hflip': (0.0,), 'color_jitter': (None, 0.0),
    'auto_augment': (None, ''), 'reprob': (0.0,), 'cutmix': (0.0,),
}


def _is_signal(dataset: str) -> bool:
    return dataset.lower() in SIGNAL_DATASETS


def _signal_data_config(cfg: ClassificationConfig) -> Dict[str, Any]:
    """The input of a 1-D signal set (MNIST-1D: ``(1, 1, 40)``, standardised by its generator, so mean 0, std 1).

    An image-only field set to anything but its default or "off" is refused rather than ignored: a recipe asking for
    RandAugment on signals would otherwise train without it and say nothing.
    """
    defaults = {f.name: f.default for f in dataclasses.fields(ClassificationConfig)}
    bad = [f'{name}={getattr(cfg, name)!r}' for name, off in _IMAGE_ONLY.items()
           if getattr(cfg, name) not in off and getattr(cfg, name) != defaults[name]]
    if bad:
        raise ValueError(f'dataset {cfg.dataset!r} holds 1-D signals, which image options do not apply to: '
                         f'{", ".join(bad)}; expected them unset or off (no image augmentation for this set)')
    pcfg = timm.models.get_pretrained_cfg(cfg.model) if timm.is_model(cfg.model) else None
    chans = cfg.model_kwargs.get('in_chans', pcfg.input_size[0] if pcfg is not None and pcfg.input_size else None)
    if chans is not None and chans != SIGNAL_INPUT_SIZE[0]:
        raise ValueError(f'model {cfg.model!r} takes {chans}-channel input, but {cfg.dataset!r} signals have '
                         f'{SIGNAL_INPUT_SIZE[0]} channel; expected a 1-D model (mnist1d_*) or model_kwargs in_chans=1')
    return dict(input_size=SIGNAL_INPUT_SIZE, mean=(0.0,), std=(1.0,))


def data_config(cfg: ClassificationConfig) -> Dict[str, Any]:
    """timm's preprocessing keys for the run: ``input_size``, ``interpolation``, ``mean``, ``std``, ``crop_pct``.

    ``timm.data.create_transform(**data_config(cfg))`` is the evaluation transform; a checkpoint stores this dict.
    A 1-D signal set (``mnist1d``) has ``input_size`` ``(1, 1, 40)``, ``mean`` and ``std`` only, and no transform.
    """
    if _is_signal(cfg.dataset):
        return _signal_data_config(cfg)
    pcfg = timm.models.get_pretrained_cfg(cfg.model) if timm.is_model(cfg.model) else None
    small = cfg.dataset in ('digits', 'cifar10', 'cifar100')
    img_size = cfg.img_size or (32 if cfg.dataset == 'digits' else
                                int(pcfg.input_size[-1]) if pcfg is not None and pcfg.input_size else 224)
    mean, std = (pcfg.mean, pcfg.std) if pcfg is not None else ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    mean, std = dataset_mean_std(cfg.dataset) or (mean, std)
    crop_pct = cfg.crop_pct if cfg.crop_pct is not None else (1.0 if small else getattr(pcfg, 'crop_pct', 0.875))
    return dict(input_size=(3, int(img_size), int(img_size)), interpolation=cfg.interpolation,
                mean=tuple(cfg.mean or mean), std=tuple(cfg.std or std), crop_pct=float(crop_pct))


def train_transform(cfg: ClassificationConfig, dcfg: Mapping[str, Any]):
    """timm's training transform of the recipe, its auto-augmentation made safe on the installed Pillow
    (:func:`stepsnet.data.images.safe_augmentations`); None (the signals as they are) for a 1-D signal set."""
    if _is_signal(cfg.dataset):
        return None
    return safe_augmentations(create_transform(
        **dcfg, is_training=True, scale=cfg.scale, ratio=cfg.ratio, hflip=cfg.hflip,
        color_jitter=cfg.color_jitter or 0.0, auto_augment=cfg.auto_augment, re_prob=cfg.reprob, re_mode=cfg.remode,
        re_count=cfg.recount))


def _eval_transform(dataset: str, dcfg: Mapping[str, Any]):
    """timm's evaluation transform of ``dcfg``; None (the signals as they are) for a 1-D signal set."""
    return None if _is_signal(dataset) else create_transform(**dcfg)


def _loader(dataset: Dataset, batches: Sequence[Sequence[int]], workers: int, device: str) -> DataLoader:
    return DataLoader(dataset, batch_sampler=batches, num_workers=workers, collate_fn=collate_skip_none,
                      pin_memory=device.startswith('cuda'), worker_init_fn=seed_worker if workers else None)


def _train_batches(dataset: Dataset, cfg: ClassificationConfig, spe: int, start: int, env: DistEnv) -> Iterator[List]:
    """The batches of steps ``start, start + 1, ...``, epoch by epoch, each epoch re-seeded."""
    return epoch_loader_batches(
        dataset, cfg.batch_size, cfg.seed, spe, start, env, cfg.workers,
        repeats=max(1, cfg.aug_repeats),
        collate_fn=collate_skip_none, worker_init_fn=seed_worker if cfg.workers else None)


def _loss_fn(cfg: ClassificationConfig, num_classes: int):
    """The training loss of a batch: timm's Mixup / CutMix, then the criterion."""
    mixup = None
    if cfg.mixup > 0 or cfg.cutmix > 0:
        mixup = Mixup(mixup_alpha=cfg.mixup, cutmix_alpha=cfg.cutmix, prob=cfg.mixup_prob,
                      switch_prob=cfg.mixup_switch_prob, mode=cfg.mixup_mode, label_smoothing=cfg.smoothing,
                      num_classes=num_classes)
    criterion = _criterion(cfg, mixup)

    def loss_fn(net: nn.Module, batch: Tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, y = batch
        if mixup is not None:
            if x.shape[0] % 2:  # timm's Mixup needs an even batch (a skipped file can make it odd)
                x, y = x[:-1], y[:-1]
            x, y = mixup(x, y)
        if cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return criterion(net(x), y)
    return loss_fn


def _criterion(cfg: ClassificationConfig, mixup: Optional[Mixup]) -> nn.Module:
    if cfg.bce_loss:
        return BinaryCrossEntropy(smoothing=0.0 if mixup else cfg.smoothing, target_threshold=cfg.bce_target_thresh)
    if mixup is not None:
        return SoftTargetCrossEntropy()
    return LabelSmoothingCrossEntropy(smoothing=cfg.smoothing) if cfg.smoothing else nn.CrossEntropyLoss()


@torch.no_grad()
def evaluate(
        model: nn.Module,
        loader: DataLoader,
        device: str,
        autocast=None,
        channels_last: bool = False,
        progress: bool = False,
        desc: str = 'val',
) -> Dict[str, float]:
    """Top-1 / top-5 accuracy (percent, ``timm.utils.accuracy``) and mean cross-entropy over ``loader``.

    Under DDP each rank evaluates its own share; the sums are reduced, so every rank returns the totals.
    """
    was_training = model.training
    model.eval()
    stats = torch.zeros(4, dtype=torch.float64)  # loss sum, top-1 hits, top-5 hits, count
    for batch in tqdm(loader, desc=desc, disable=not interactive(progress), leave=False, dynamic_ncols=True):
        if batch is None:
            continue
        x, y = (t.to(device) for t in batch)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with (autocast or contextlib.nullcontext)():
            out = model(x)
        out = out.float()
        top1, top5 = accuracy(out, y, topk=(1, min(5, out.shape[-1])))
        n = y.numel()
        stats += torch.tensor([nn.functional.cross_entropy(out, y, reduction='sum').item(), float(top1) * n / 100,
                               float(top5) * n / 100, n], dtype=torch.float64)
    stats = all_reduce_sum(stats)
    model.train(was_training)
    n = max(stats[3].item(), 1.0)
    return dict(loss=stats[0].item() / n, top1=100.0 * stats[1].item() / n, top5=100.0 * stats[2].item() / n,
                count=int(stats[3].item()))


def _shard(dataset: Dataset, env: DistEnv) -> Dataset:
    """This rank's interleaved share of ``dataset`` for evaluation (no padding, so nothing is counted twice)."""
    return Subset(dataset, list(range(env.rank, len(dataset), env.world_size))) if env.distributed else dataset


# ----------------------------------------------------------------------------------------------- training

def train_classification(cfg: ClassificationConfig) -> Dict[str, Any]:
    """Train ``cfg.model`` on ``cfg.dataset``; checkpoints, logs and the results go into ``cfg.out_dir``.

    Outputs: ``last.pth`` (every epoch), ``best.pth`` (best validation top-1), ``log.csv`` (one row per epoch),
    ``tb/`` (when TensorBoard is installed), ``config.json`` and ``results.json`` (:meth:`RunFolder.results`).

    Returns:
        The summary: model, params, best / final top-1 and top-5, losses, epochs, images seen, time, history, and
        ``results`` (the content of ``results.json``).

    Raises:
        FloatingPointError: More than ``cfg.nan_tolerance`` non-finite training losses.
        FileNotFoundError / ValueError: Missing data, unknown model, bad config, a run folder holding a run
            without ``resume``, a resume with other settings or other class names.
    """
    dcfg = data_config(cfg)
    img_size = dcfg['input_size'][-1]
    data_dir = dry_run_data_dir('cls', cfg)
    train_set = build_dataset(cfg.dataset, data_dir, cfg.train_split, train_transform(cfg, dcfg),
                              img_size=img_size, skip_corrupt=cfg.skip_corrupt)
    val_set = build_dataset(cfg.dataset, data_dir, cfg.val_split, _eval_transform(cfg.dataset, dcfg),
                            img_size=img_size, skip_corrupt=cfg.skip_corrupt)
    eval_batch = cfg.eval_batch_size or cfg.batch_size
    train_set, val_set, val_size = dry_run_sets('cls', cfg, train_set, val_set, eval_batch)
    check_class_names(train_set.class_names, val_set.class_names, f'the {cfg.train_split} split',
                      f'the {cfg.val_split} split')
    num_classes = cfg.num_classes or len(train_set.classes)
    if num_classes < len(train_set.classes):
        raise ValueError(f'num_classes={num_classes} but the dataset has {len(train_set.classes)} classes')
    model_args = dict(name=cfg.model, num_classes=num_classes, img_size=img_size, **cfg.model_kwargs)
    meta = dict(model_args=model_args, class_names=list(train_set.classes), data_config=dcfg, dataset=cfg.dataset)
    with distributed(cfg.device, cfg.threads) as env:
        if len(train_set) < cfg.batch_size * env.world_size:
            raise ValueError(f'the training split has {len(train_set)} images, fewer than one batch of '
                             f'{cfg.batch_size} per process ({env.world_size} processes); lower batch_size')
        spe = steps_per_epoch(len(train_set), cfg.batch_size, env.world_size)
        spe = min(spe, cfg.max_train_batches or spe)
        seed_all(cfg.seed)
        model = create_classifier(cfg.model, num_classes, img_size, drop_rate=cfg.drop_rate,
                                  **({'drop_path_rate': cfg.drop_path} if cfg.drop_path is not None else {}),
                                  **cfg.model_kwargs)
        with RunFolder.of(cfg, CLS_KIND, env) as run:
            if run.open(config_dict(cfg), ClassificationConfig.MUTABLE, meta) is not None:
                check_class_names(run.checkpoint['meta']['class_names'], train_set.class_names,
                                  f'checkpoint {run.resumed_from!r}',
                                  f'the {cfg.train_split} split of {cfg.data_dir or cfg.dataset!r}')
            elif cfg.initial_checkpoint:
                _load_initial(model, cfg.initial_checkpoint)
            if cfg.grad_checkpointing:
                model.set_grad_checkpointing(True)
            global_batch = cfg.batch_size * env.world_size
            ratio = global_batch / cfg.lr_base_size
            lr = cfg.lr or cfg.lr_base * (math.sqrt(ratio) if cfg.lr_base_scale == 'sqrt' else ratio)
            optimizer = create_optimizer_v2(
                model, opt=cfg.opt, lr=lr, weight_decay=cfg.weight_decay, momentum=cfg.momentum,
                layer_decay=cfg.layer_decay, **({'eps': cfg.opt_eps} if cfg.opt_eps is not None else {}),
                **({'betas': cfg.opt_betas} if cfg.opt_betas is not None else {}))
            scheduler, _ = create_scheduler_v2(
                optimizer, sched=cfg.sched, num_epochs=cfg.epochs, warmup_epochs=cfg.warmup_epochs,
                warmup_lr=cfg.warmup_lr, min_lr=cfg.min_lr, cooldown_epochs=cfg.cooldown_epochs,
                step_on_epochs=False, updates_per_epoch=spe)
            ema = (lambda m: ModelEmaV3(m, decay=cfg.model_ema_decay, use_warmup=cfg.model_ema_warmup)) \
                if cfg.model_ema else None
            state = prepare(model, optimizer, scheduler, run, cfg, ema=ema, channels_last=cfg.channels_last)
            val_shard = _shard(val_set, env)
            val_loader = _loader(val_shard, _eval_batches(len(val_shard), eval_batch), cfg.workers, env.device)

            def evaluate_run() -> Dict[str, Any]:
                m = evaluate(model, val_loader, env.device, state.autocast, cfg.channels_last,
                             cfg.progress and env.is_main)
                if state.ema is not None:
                    e = evaluate(state.ema.module, val_loader, env.device, state.autocast, cfg.channels_last)
                    m.update(ema_loss=e['loss'], ema_top1=e['top1'], ema_top5=e['top5'])
                m['score'] = max(m['top1'], m.get('ema_top1', -1.0))
                return m

            run.describe(f'{cfg.model}: {meta_params(model) / 1e6:.3f}M params, {num_classes} classes, '
                         f'{len(train_set)} train / {len(val_set)} val images at {img_size}px, '
                         f'{plural(env.world_size, "process", "processes")} on {env.device}, global batch '
                         f'{global_batch}, lr {lr:.3g}, {plural(spe, "step")} per epoch',
                         params=meta_params(model), world_size=env.world_size, device=env.device, lr=lr)
            schedule = Schedule(
                total_steps=cfg.epochs * spe, eval_every=spe, checkpoint_every=spe, log_every=spe, metric='score',
                higher_is_better=True, clip_grad=cfg.clip_grad, clip_mode=cfg.clip_mode,
                nan_tolerance=cfg.nan_tolerance, progress=cfg.progress, desc=cfg.model, item_name='images',
                steps_per_epoch=spe, eval_batches=math.ceil(val_size / (eval_batch * env.world_size)))
            fit(state, run=run, batches=_train_batches(train_set, cfg, spe, state.progress.step, env),
                loss_fn=_loss_fn(cfg, num_classes), evaluate=evaluate_run, schedule=schedule,
                count=lambda micro: sum(b[0].shape[0] for b in micro),
                eval_line=lambda step, m: _epoch_line(step, spe, cfg.epochs, m))
            summary = _summary(cfg, model, state.progress)
            summary['results'] = run.results(state, schedule, state.progress.last_eval('top1'), model=cfg.model,
                                             params=summary['params'])
            run.finish(summary['results'])
        return summary


def meta_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _eval_batches(n: int, batch_size: int) -> List[List[int]]:
    return [list(range(i, min(i + batch_size, n))) for i in range(0, n, batch_size)]


def _epoch_line(step: int, spe: int, epochs: int, m: Mapping[str, Any]) -> str:
    ema = f' | ema top-1 {m["ema_top1"]:.2f}' if 'ema_top1' in m else ''
    return (f'epoch {step // spe:>3}/{epochs}  val loss {m["loss"]:.4f}  top-1 {m["top1"]:.2f}  '
            f'top-5 {m["top5"]:.2f}{ema}')


def _load_initial(model: nn.Module, path: str) -> None:
    """Initial weights: a ``stepsnet train`` checkpoint, a plain state dict (timm's ``.pth``) or safetensors."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f'initial checkpoint {path!r} does not exist')
    try:
        state = load_checkpoint(path, CLS_KIND, required=('model',))['model']
    except ValueError:
        try:
            state = load_state_dict(path, weights_only=True)
        except Exception as e:  # noqa: BLE001 - any unreadable file becomes one clear message
            raise ValueError(f'cannot read initial checkpoint {path!r} ({type(e).__name__}: {e}); expected a '
                             'stepsnet checkpoint, a state dict (.pth) or a .safetensors file') from e
    head = [k for k, v in state.items() if k in model.state_dict() and v.shape != model.state_dict()[k].shape]
    for k in head:  # a classifier for another number of classes: keep the fresh head (fine-tuning)
        del state[k]
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or [k for k in missing if k not in head]:
        raise ValueError(f'initial checkpoint {path!r} does not fit {type(model).__name__}: missing '
                         f'{[k for k in missing if k not in head][:5]}, unexpected {unexpected[:5]}')


def _summary(cfg: ClassificationConfig, model: nn.Module, progress: Progress) -> Dict[str, Any]:
    evals = [h for h in progress.history if 'val_top1' in h]
    last = evals[-1] if evals else {}
    best = max(evals, key=lambda r: r['val_top1']) if evals else {}
    return dict(
        model=cfg.model, dataset=cfg.dataset, params=meta_params(model), epochs=round(last.get('epoch', 0)),
        final_top1=last.get('val_top1'), final_top5=last.get('val_top5'), final_val_loss=last.get('val_loss'),
        final_train_loss=last.get('train_loss'), best_top1=best.get('val_top1'),
        best_epoch=round(best['epoch']) if best else None, final_ema_top1=last.get('val_ema_top1'),
        images_seen=progress.items, train_seconds_total=round(progress.train_time, 2), out_dir=cfg.out_dir,
        history=[dict(r) for r in evals])


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
    """Top-1 / top-5 and loss of a checkpoint, an exported weights folder or an untrained model on a split.

    ``checkpoint`` is a ``stepsnet train`` checkpoint; ``model`` alone is a timm name (untrained) or a folder in
    timm's layout (``local-dir:PATH``, written by ``stepsnet export-weights``). The input size, crop and
    normalisation default to those the model was trained with; the split's class names must be the model's.

    Raises:
        FileNotFoundError: Missing checkpoint or dataset path.
        ValueError: The split's classes differ from the checkpoint's, a file is corrupt (unless
            ``skip_corrupt``), or neither ``checkpoint`` nor ``model`` is given.
    """
    if checkpoint is None and model is None:
        raise ValueError('validate needs a checkpoint (--checkpoint) or a model (--model)')
    if batch_size < 1:
        raise ValueError(f'batch_size must be >= 1, got {batch_size}')
    device = resolve_device(device)
    class_names: Optional[List[str]] = None
    if checkpoint is not None:
        net, info = classifier_from_checkpoint(checkpoint, model, device, use_ema)
        name, dcfg, class_names, source = info['model_name'], info['data_config'], info['class_names'], checkpoint
    elif ':' in model:  # weights in timm's layout (local-dir:PATH) or a Hub id: the model keeps its own head
        name, source = model, model
        net = create_classifier(model).to(device).eval()
        dcfg = timm.data.resolve_data_config({}, model=net)
        class_names = (getattr(net, 'pretrained_cfg', None) or {}).get('label_names')
    else:  # an untrained model: a baseline for the pipeline, with the split's class count
        name, source = model, model
        classes = build_dataset(dataset, data_dir, split, None).classes
        dcfg = data_config(load_config(model=model, dataset=dataset, img_size=img_size))
        net = create_classifier(model, len(classes), dcfg['input_size'][-1]).to(device).eval()
    dcfg = dict(dcfg)
    if _is_signal(dataset) and (img_size not in (None, dcfg['input_size'][-1]) or crop_pct is not None):
        raise ValueError(f'dataset {dataset!r} holds 1-D signals of length {dcfg["input_size"][-1]}: img_size and '
                         f'crop_pct do not apply (got img_size={img_size}, crop_pct={crop_pct})')
    if img_size and not _is_signal(dataset):
        dcfg['input_size'] = (3, img_size, img_size)
    if crop_pct is not None:
        dcfg['crop_pct'] = crop_pct
    ds = build_dataset(dataset, data_dir, split, _eval_transform(dataset, dcfg), img_size=dcfg['input_size'][-1],
                       skip_corrupt=skip_corrupt)
    if class_names:
        check_class_names(class_names, ds.class_names, f'checkpoint {source!r}' if checkpoint else f'{source!r}',
                          f'split {split!r} of {data_dir or dataset!r}')
    elif getattr(net, 'num_classes', len(ds.classes)) != len(ds.classes):
        raise ValueError(f'split {split!r} of {data_dir or dataset!r} has {len(ds.classes)} classes, but '
                         f'{source!r} predicts {net.num_classes}; expected the same classes')
    if channels_last:
        net.to(memory_format=torch.channels_last)
    autocast, _ = amp_context(amp, amp_dtype, device)
    loader = _loader(ds, _eval_batches(len(ds), batch_size), workers, device)
    print(f'validate {name} on {data_dir or dataset}/{split}: {len(ds)} images at {dcfg["input_size"][-1]}px on '
          f'{device}', file=sys.stderr, flush=True)
    t0 = time.time()
    with loader_errors():
        m = evaluate(net, loader, device, autocast, channels_last, progress=progress, desc=f'validate {split}')
    return dict(model=name, checkpoint=checkpoint, dataset=dataset, split=split, images=m['count'],
                skipped=len(ds) - m['count'], top1=m['top1'], top5=m['top5'], loss=m['loss'],
                img_size=dcfg['input_size'][-1], seconds=round(time.time() - t0, 2), params=meta_params(net))

