"""The pieces of a training run below the loop: the process context, the model as it trains, AMP and the
optimizer, one update (:func:`train_step`), what is trained and saved (:class:`TrainState`, :class:`Progress`),
how the loop runs (:class:`Schedule`), and the resumable batches of the epoch-based tasks."""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.distributed as dist
import torch.nn as nn
from timm.optim import create_optimizer_v2, param_groups_weight_decay
from timm.utils import NativeScaler, dispatch_clip_grad, unwrap_model
from timm.utils.distributed import init_distributed_device_so
from torch.utils.data import DataLoader

from stepsnet.config.run import RunConfig
from stepsnet.data.sampler import epoch_batches
from stepsnet.utils.loading import load_weights
from stepsnet.utils.seeding import derive_seed

# ----------------------------------------------------------------------------------------------------------------
# Processes and devices


@dataclass
class DistEnv:
    """Where this process runs: ``rank`` of ``world_size``, its ``device``, and whether it is the main rank."""
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: str = 'cpu'

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(device: str = 'auto') -> str:
    """``auto`` -> ``cuda`` when a GPU is present, else ``cpu``; a CUDA request without a GPU is a clear error.

    Raises:
        ValueError: ``cuda`` asked for on a machine without a usable CUDA device, or an unknown device string.
    """
    if device in (None, '', 'auto'):
        return 'cuda' if torch.cuda.is_available() else 'cpu'
    kind = device.split(':', 1)[0]
    if kind == 'cuda':
        if not torch.cuda.is_available():
            raise ValueError(f'device {device!r} was asked for, but no CUDA device is available on this machine '
                             '(torch.cuda.is_available() is False); use --device cpu or --device auto')
        index = int(device.split(':', 1)[1]) if ':' in device else 0
        if index >= torch.cuda.device_count():
            raise ValueError(f'device {device!r} does not exist: this machine has {torch.cuda.device_count()} '
                             'CUDA device(s)')
        return device
    if kind in ('cpu', 'mps', 'xpu'):
        return device
    raise ValueError(f"unknown device {device!r}; expected 'auto', 'cpu', 'cuda' or 'cuda:N'")


@contextlib.contextmanager
def distributed(device: str = 'auto', threads: Optional[int] = None) -> Iterator[DistEnv]:
    """The process context of a run: joins the process group under ``torchrun`` and leaves it at the end.

    Args:
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``; under torchrun each rank takes ``cuda:LOCAL_RANK``.
        threads: ``torch.set_num_threads`` for this process; None keeps torch's choice, except that CPU ranks
            of a multi-process run share the cores.
    """
    device = resolve_device(device)
    joined = False
    if int(os.environ.get('WORLD_SIZE', '1')) > 1 and not (dist.is_available() and dist.is_initialized()):
        info = init_distributed_device_so(device=device.split(':', 1)[0])
        joined = True
        env = DistEnv(info['global_rank'], info['local_rank'], info['world_size'], str(info['device']))
    elif dist.is_available() and dist.is_initialized():
        local = int(os.environ.get('LOCAL_RANK', '0'))
        dev = f'cuda:{local}' if device.startswith('cuda') else device
        env = DistEnv(dist.get_rank(), local, dist.get_world_size(), dev)
    else:
        env = DistEnv(device=device)
    if env.device.startswith('cuda'):
        torch.cuda.set_device(env.device)
    if threads:
        torch.set_num_threads(int(threads))
    elif env.distributed and env.device == 'cpu':
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // env.world_size))
    try:
        yield env
    finally:
        if joined and dist.is_initialized():
            dist.destroy_process_group()


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_reduce_sum(value: torch.Tensor) -> torch.Tensor:
    """Sum of ``value`` over ranks, on ``value``'s device (unchanged when not distributed).

    NCCL reduces CUDA tensors only, so under it a CPU tensor (a loss sum kept on the host) is reduced on this
    rank's GPU and brought back.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return value
    reduced = value.to(torch.cuda.current_device()) if dist.get_backend() == 'nccl' else value.clone()
    dist.all_reduce(reduced, op=dist.ReduceOp.SUM)
    return reduced.to(value.device)


def all_reduce_mean(value: torch.Tensor) -> torch.Tensor:
    """Mean of ``value`` over ranks (unchanged when not distributed), on ``value``'s device."""
    if dist.is_available() and dist.is_initialized():
        return all_reduce_sum(value) / dist.get_world_size()
    return value


# ----------------------------------------------------------------------------------------------------------------
# The model as it trains


def wrap_model(model: nn.Module, env: DistEnv, compile: bool = False, channels_last: bool = False) -> nn.Module:
    """Move ``model`` to the rank's device and wrap it for training.

    The returned module is what the loop calls; checkpoints always hold :func:`unwrap_model` of it, so a run
    trained with DDP or ``torch.compile`` loads into a plain model.

    Args:
        model: The raw model (moved in place).
        env: From :func:`distributed`.
        compile: ``torch.compile`` (inductor) the training module.
        channels_last: NHWC memory format (convolutional models).

    Several CUDA ranks train with SyncBatchNorm (BatchNorm statistics over the global batch).
    """
    model.to(env.device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    out: nn.Module = model
    if env.distributed:
        if env.device.startswith('cuda'):
            out = nn.SyncBatchNorm.convert_sync_batchnorm(out)
        out = nn.parallel.DistributedDataParallel(
            out, device_ids=[env.local_rank] if env.device.startswith('cuda') else None)
    if compile:
        out = torch.compile(out)
    return out


def amp_context(amp: bool, amp_dtype: str, device: str) -> Tuple[Callable[[], Any], Optional[NativeScaler]]:
    """Autocast factory and gradient scaler of a run.

    Returns:
        ``(autocast, scaler)``: ``autocast()`` gives a fresh context (a no-op without ``amp``); ``scaler`` is a
        :class:`timm.utils.NativeScaler` for float16 on CUDA, else None.

    Raises:
        ValueError: ``amp_dtype`` is not ``bfloat16`` or ``float16``.
    """
    if amp_dtype not in ('bfloat16', 'float16'):
        raise ValueError(f"amp_dtype must be 'bfloat16' or 'float16', got {amp_dtype!r}")
    if not amp:
        return contextlib.nullcontext, None
    kind = torch.device(device).type
    dtype = getattr(torch, amp_dtype)

    def autocast():
        return torch.autocast(device_type=kind, dtype=dtype)
    scaler = NativeScaler(device=kind) if dtype == torch.float16 and kind == 'cuda' else None
    return autocast, scaler


def no_weight_decay_names(model: nn.Module) -> List[str]:
    """Full parameter names listed by the ``no_weight_decay()`` of ``model`` and of every submodule.

    timm's optimizer factory asks only the top module; a detector or segmenter wraps a timm backbone whose
    position embeddings and relative-position tables must not decay either.
    """
    names: List[str] = []
    for prefix, module in model.named_modules():
        fn = getattr(module, 'no_weight_decay', None)
        if callable(fn):
            names += [f'{prefix}.{n}' if prefix else n for n in fn()]
    return names


def create_optimizer(model: nn.Module, opt: str, lr: float, weight_decay: float,
                     momentum: float = 0.9) -> torch.optim.Optimizer:
    """timm's optimizer without decay on biases, norms and every ``no_weight_decay()`` parameter of any submodule.

    For models that wrap a timm backbone (detectors, segmenters): position embeddings, class tokens and
    relative-position tables of the backbone do not decay, as in mmdetection's Swin recipe. ``opt='momentum'`` is
    SGD with momentum (timm's ``sgd`` is Nesterov).
    """
    groups = param_groups_weight_decay(model, weight_decay, no_weight_decay_list=no_weight_decay_names(model))
    return create_optimizer_v2(groups, opt=opt, lr=lr, weight_decay=weight_decay, momentum=momentum)


# ----------------------------------------------------------------------------------------------------------------
# One update


@dataclass
class StepResult:
    """What one call of :func:`train_step` did."""
    loss: torch.Tensor  # mean loss over the micro-batches, detached, on the device (not reduced over ranks)
    finite: bool
    grad_norm: Optional[float] = None
    parts: Dict[str, torch.Tensor] = field(default_factory=dict)


def _finite_everywhere(loss: torch.Tensor, env: DistEnv) -> bool:
    ok = torch.isfinite(loss.detach()).all().to(torch.float32)
    if env.distributed:  # every rank must take the same branch, or DDP's all-reduce would hang
        ok = all_reduce_mean(ok)
    return bool(ok.item() == 1.0)


def train_step(
        train_model: nn.Module,
        optimizer: torch.optim.Optimizer,
        micro_batches: Sequence[Any],
        loss_fn: Callable[[nn.Module, Any], Union[torch.Tensor, Tuple[torch.Tensor, Dict[str, torch.Tensor]]]],
        env: DistEnv,
        autocast: Callable[[], Any] = contextlib.nullcontext,
        scaler: Optional[NativeScaler] = None,
        clip_grad: Optional[float] = None,
        clip_mode: str = 'norm',
) -> StepResult:
    """One optimizer update: forward and backward of each micro-batch, then clipping and the step.

    ``loss_fn(train_model, micro_batch)`` returns the loss (or ``(loss, parts)``, parts being named loss terms to
    log). Each micro-batch's loss is scaled by ``1 / len(micro_batches)``; under DDP gradients are synchronised on
    the last micro-batch only. A loss that is not finite on some rank skips the whole update on every rank
    (gradients cleared, nothing stepped) and is reported with ``finite=False``.
    """
    n = len(micro_batches)
    if n < 1:
        raise ValueError('train_step needs at least one micro-batch')
    model = unwrap_model(train_model)
    params = [p for p in model.parameters() if p.requires_grad] if clip_grad else None  # only clipping reads them
    total = None
    parts: Dict[str, torch.Tensor] = {}
    grad_norm: Optional[float] = None
    for i, batch in enumerate(micro_batches):
        last = i == n - 1
        sync = contextlib.nullcontext()
        if not last and isinstance(train_model, nn.parallel.DistributedDataParallel):
            sync = train_model.no_sync()
        with sync:
            with autocast():
                out = loss_fn(train_model, batch)
                loss, terms = out if isinstance(out, tuple) else (out, {})
                loss = loss / n
            if not _finite_everywhere(loss, env):
                optimizer.zero_grad(set_to_none=True)
                return StepResult(loss.detach().float() * n, False)
            if scaler is not None:
                scaler(loss, optimizer, clip_grad=clip_grad or None, clip_mode=clip_mode, parameters=params,
                       need_update=last)
            else:
                loss.backward()
                if last:
                    if clip_grad:
                        if clip_mode == 'norm':
                            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, clip_grad))
                        else:
                            dispatch_clip_grad(params, clip_grad, mode=clip_mode)
                    optimizer.step()
        loss = loss.detach().float()
        total = loss if total is None else total + loss
        for k, v in terms.items():
            parts[k] = parts.get(k, 0.0) + v.detach().float() / n
    optimizer.zero_grad(set_to_none=True)
    return StepResult(total, True, grad_norm, parts)


# ----------------------------------------------------------------------------------------------------------------
# Run folders, checkpoints and resume


def config_dict(cfg: Any) -> Dict[str, Any]:
    """A config dataclass (or mapping) as plain JSON types: tuples become lists. The dry-run switches are left out:
    they say how a command runs, not what a run computes, and a dry run records nothing."""
    raw = dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else dict(cfg)
    return json.loads(json.dumps({k: v for k, v in raw.items() if k not in RunConfig.DRY_RUN_FIELDS}))



@dataclass
class Progress:
    """Where a run stands; saved in every checkpoint."""
    step: int = 0
    best: Optional[float] = None
    best_step: Optional[int] = None
    nonfinite: int = 0
    items: int = 0
    train_time: float = 0.0
    history: List[Dict[str, Any]] = field(default_factory=list)

    def state_dict(self) -> Dict[str, Any]:
        return dict(step=self.step, best=self.best, best_step=self.best_step, nonfinite=self.nonfinite,
                    items=self.items, train_time=self.train_time, history=self.history)

    @classmethod
    def from_state(cls, d: Mapping[str, Any]) -> Progress:
        return cls(int(d['step']), d.get('best'), d.get('best_step'), int(d.get('nonfinite', 0)),
                   int(d.get('items', 0)), float(d.get('train_time', 0.0)), list(d.get('history', [])))

    def last_eval(self, key: str) -> Dict[str, Any]:
        """The metrics of the latest logged evaluation holding ``key`` (``val_`` prefixes removed); {} if none."""
        row = next((h for h in reversed(self.history) if f'val_{key}' in h), {})
        return {k[4:]: v for k, v in row.items() if k.startswith('val_')}


@dataclass
class TrainState:
    """What a run trains and saves: the model, the module that trains (DDP / compiled), the optimizer, the
    learning-rate scheduler, the gradient scaler, the EMA and the progress; ``autocast`` gives the AMP context."""
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any = None
    scaler: Optional[NativeScaler] = None
    ema: Optional[nn.Module] = None
    autocast: Callable[[], Any] = contextlib.nullcontext
    train_model: Optional[nn.Module] = None
    progress: Progress = field(default_factory=Progress)

    def __post_init__(self):
        if self.train_model is None:
            self.train_model = self.model

    def state_dict(self) -> Dict[str, Any]:
        """The checkpoint's training part: tensors on the CPU, the unwrapped model."""
        return dict(
            model={k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            optimizer=self.optimizer.state_dict(),
            scaler=self.scaler.state_dict() if self.scaler is not None else None,
            ema=({k: v.detach().cpu() for k, v in self.ema.module.state_dict().items()}
                 if self.ema is not None else None),
            progress=self.progress.state_dict())

    def restore(self, state: Mapping[str, Any], source: str) -> None:
        """Load a ``last.pth`` state into the model, optimizer, scaler and EMA, and take its progress."""
        load_weights(self.model, state['model'], source)
        self.optimizer.load_state_dict(state['optimizer'])
        if self.scaler is not None and state.get('scaler'):
            self.scaler.load_state_dict(state['scaler'])
        if self.ema is not None and state.get('ema') is not None:
            self.ema.module.load_state_dict(state['ema'])
        self.progress = Progress.from_state(state['progress'])



@dataclass
class Schedule:
    """How :func:`fit` runs: length, intervals (in steps; 0 = only at the end) and the policies.

    Attributes:
        total_steps: Steps of the whole run (one step = one optimizer update).
        eval_every: Evaluate every this many steps (and at the end).
        checkpoint_every: Save ``last.pth`` every this many steps (and at the end).
        log_every: Log the training loss every this many steps.
        metric: Key of the evaluation's result that decides ``best.pth``.
        higher_is_better: Direction of ``metric``.
        clip_grad: Gradient clipping threshold (None or 0: off).
        clip_mode: ``norm``, ``value`` or ``agc`` (timm's :func:`dispatch_clip_grad`).
        nan_tolerance: Non-finite losses skipped before the run stops.
        time_limit: Stop (with an evaluation and a checkpoint) after this many seconds of training.
        progress: Show a progress bar (on a terminal; elsewhere plain lines at ``log_every``).
        desc: Progress-bar label.
        item_name: What ``count`` counts (``images``, ``tokens``), for throughput in the log.
        steps_per_epoch: Steps in one pass over the data, to log the epoch (None: no epochs).
        eval_batches: Batches one evaluation takes on each process (for a dry run's projection; a dry run evaluates
            only the first of them).
        model_name: The model, as a dry run's report names it.
    """
    total_steps: int
    eval_every: int = 0
    checkpoint_every: int = 0
    log_every: int = 10
    metric: str = 'loss'
    higher_is_better: bool = False
    clip_grad: Optional[float] = None
    clip_mode: str = 'norm'
    nan_tolerance: int = 0
    time_limit: Optional[float] = None
    progress: bool = True
    desc: str = 'train'
    item_name: str = 'items'
    steps_per_epoch: Optional[int] = None
    eval_batches: int = 1
    model_name: str = ''



# ----------------------------------------------------------------------------------------------------------------
# The batches of epoch-based tasks


def seed_all(seed: int) -> None:
    """Seed torch, numpy and ``random`` (the global streams a model's initialisation and augmentations draw from)."""
    import random

    import numpy as np
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


def seed_epoch(seed: int, epoch: int, rank: int) -> None:
    """Seed the augmentation streams of one epoch of one rank from ``derive_seed(seed, 'augment', epoch, rank)``:
    the one rule of every epoch-based task (:mod:`stepsnet.utils.seeding`)."""
    seed_all(derive_seed(seed, 'augment', epoch, rank))


def epoch_loader_batches(
        dataset: Any,
        batch_size: int,
        seed: int,
        steps_per_epoch: int,
        start: int,
        env: DistEnv,
        workers: int = 0,
        to_device: Optional[Callable[[Any], Any]] = None,
        **loader_kwargs: Any,
) -> Iterator[List[Any]]:
    """The one-micro-batch steps ``start, start + 1, ...`` of an epoch-based task, epoch by epoch.

    Each epoch's batches are a permutation seeded by ``(seed, epoch)`` split over the ranks
    (:func:`stepsnet.data.sampler.epoch_batches`); before each epoch the augmentation streams (torch, numpy,
    ``random``) are re-seeded from ``(seed, epoch, rank)`` (:func:`seed_epoch`), so a run resumed at an epoch
    boundary sees exactly the batches and augmentations of an uninterrupted one.

    Args:
        dataset: The training set.
        batch_size: Per-process batch.
        seed: The run's seed.
        steps_per_epoch: Steps taken from each epoch (at most the epoch's batches).
        start: The first step.
        env: The process context.
        workers: ``DataLoader`` workers.
        to_device: Moves one loaded batch to the device (default: every tensor of a tuple).
        loader_kwargs: More ``DataLoader`` arguments (``collate_fn``, ``worker_init_fn``, ...) and the
            ``epoch_batches`` options ``drop_last`` / ``repeats`` / ``groups``.
    """
    sampling = {k: loader_kwargs.pop(k) for k in ('drop_last', 'repeats', 'groups') if k in loader_kwargs}
    move = to_device or (lambda b: tuple(t.to(env.device, non_blocking=True) for t in b))
    epoch, offset = divmod(start, steps_per_epoch)
    while True:
        seed_epoch(seed, epoch, env.rank)
        batches = epoch_batches(len(dataset), batch_size, epoch, seed, env.world_size, env.rank, start=offset,
                                **sampling)[:steps_per_epoch - offset]
        loader = DataLoader(dataset, batch_sampler=batches, num_workers=workers,
                            pin_memory=env.device.startswith('cuda'), **loader_kwargs)
        for batch in loader:
            yield [None if batch is None else move(batch)]
        epoch, offset = epoch + 1, 0
