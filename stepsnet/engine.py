"""What every training loop of stepsnet shares, written once.

The four tasks (language modelling, classification, detection, segmentation) keep only what is theirs: a config,
the data, the model, the loss and the evaluation. Everything else is here, as a handful of functions:

* :func:`distributed`: the process context. Single process on a CPU or GPU, or one rank of ``torchrun`` (DDP; NCCL
  on CUDA, gloo on CPU), through :func:`timm.utils.init_distributed_device_so`.
* :func:`wrap_model`: the model as it trains: ``channels_last``, SyncBatchNorm and DDP when distributed,
  ``torch.compile``.
* :func:`amp_context`: autocast and, for float16 on CUDA, timm's :class:`~timm.utils.NativeScaler`.
* :func:`train_step`: one optimizer update over one or more micro-batches (gradient accumulation, autocast, the
  scaler, clipping) with the one non-finite policy: a non-finite loss skips the update; more than
  ``nan_tolerance`` of them stop the run with :class:`FloatingPointError` and the last good checkpoint stays.
* :class:`RunFolder`: the run's folder, owned by the engine: locked against a second writer, made only when the
  run starts and removed again when the start fails; the one checkpoint / resume convention (``last.pth`` and
  ``best.pth``, written atomically and read with ``weights_only=True``; a folder that holds a run is continued
  only when asked, and only with the settings it was trained with), ``config.json``, the metric log
  (``log.csv``, TensorBoard) and the final ``results.json``, the same keys for every task.
* :class:`TrainState` and :func:`prepare`: what trains and is saved (model, training module, optimizer,
  scheduler, scaler, EMA, progress), restored from the checkpoint the run folder found.
* :func:`fit`: the loop: steps from a task's batch iterator, learning rate from a timm scheduler stepped per
  update, EMA, logging (CSV, TensorBoard, a progress bar on a terminal and plain lines elsewhere), evaluation,
  best-checkpoint tracking, checkpoints at an interval, an optional time limit.
* :func:`epoch_loader_batches`: the resumable batches of the epoch-based tasks.

Learning-rate schedules, optimizers with weight-decay groups, EMA and gradient clipping are timm's
(``timm.scheduler``, ``timm.optim``, ``timm.utils``).
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.distributed as dist
import torch.nn as nn
from timm.optim import create_optimizer_v2, param_groups_weight_decay
from timm.utils import NativeScaler, dispatch_clip_grad, unwrap_model
from timm.utils.distributed import init_distributed_device_so
from torch.utils.data import DataLoader
from tqdm import tqdm

from stepsnet.config.run import RunConfig
from stepsnet.data.sampler import epoch_batches
from stepsnet.utils.checkpoint import (
    STORAGE_ERRNOS,
    CheckpointError,
    StorageError,
    atomic_write_text,
    load_checkpoint,
    save_checkpoint,
    storage_error,
)
from stepsnet.utils.dryrun import DryRunMeter, DryRunReport, a100_floor, count_flops, dry_run_amp, task_of_kind
from stepsnet.utils.errors import DataError, TrainingError
from stepsnet.utils.loading import load_weights
from stepsnet.utils.lock import LOCK_NAME, FolderInUse, lock_folder
from stepsnet.utils.logging import MetricWriter, interactive
from stepsnet.utils.names import plural
from stepsnet.utils.seeding import derive_seed

__all__ = [
    'RunConfig', 'DistEnv', 'distributed', 'resolve_device', 'all_reduce_mean', 'barrier', 'wrap_model', 'unwrap_model',
    'amp_context', 'no_weight_decay_names', 'create_optimizer', 'StepResult', 'train_step', 'RunFolder', 'RunError',
    'Progress', 'TrainState', 'prepare', 'Schedule', 'fit', 'config_dict', 'loader_errors', 'epoch_loader_batches',
    'lock_folder', 'FolderInUse', 'RESULTS', 'RESULT_KEYS', 'FORMAT_VERSION',
]

# Version of the checkpoint layout written by RunFolder; files without it come from an earlier layout.
FORMAT_VERSION = 2


class RunError(ValueError):
    """A run folder or resume request that cannot be honoured (existing run, settings that differ)."""


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


def prepare(
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        run: RunFolder,
        cfg: RunConfig,
        ema: Optional[Callable[[nn.Module], nn.Module]] = None,
        channels_last: bool = False,
) -> TrainState:
    """The :class:`TrainState` of a run: the model on the rank's device, AMP, EMA (``ema(model)`` builds it), the
    checkpoint that ``run.open`` found restored, and the training module (:func:`wrap_model`).

    A dry run on a CPU runs in float32 where the recipe asks for autocast (:func:`~stepsnet.utils.dryrun.dry_run_amp`:
    CPUs emulate bfloat16 / float16 slowly), and says so."""
    amp, run.precision_note = dry_run_amp(cfg.amp, cfg.amp_dtype, run.env.device, run.dry_run)
    run.amp_ran = cfg.amp_dtype if amp else ''
    if run.precision_note and run.env.is_main:
        print(f'note: {run.precision_note}', flush=True)
    autocast, scaler = amp_context(amp, cfg.amp_dtype, run.env.device)
    model.to(run.env.device)
    state = TrainState(model, optimizer, scheduler, scaler, ema(model) if ema is not None else None, autocast)
    if run.checkpoint is not None:
        state.restore(run.checkpoint, run.resumed_from)
        run.checkpoint = None  # the tensors now live in the model; free the copy
    state.train_model = wrap_model(model, run.env, compile=cfg.compile, channels_last=channels_last)
    run.workers_note = getattr(cfg, 'workers_note', '')  # the config capped its workers: the header says so once
    return state


class RunFolder:
    """A run's folder: the checkpoint convention, the policy for folders that already hold a run, the lock, the
    logs and the final results.

    Files: ``last.pth`` (the latest state: model, optimizer, scaler, EMA, progress, config, the task's
    metadata), ``best.pth`` (the state at the best evaluation), ``config.json`` (the run's settings and every
    change made on resume), ``log.csv``, ``tb/`` and, at the end, ``results.json`` (:data:`RESULTS`).

    Policy:

    * ``resume=None``: a folder holding ``last.pth`` is refused (:class:`RunError` naming the folder and what to
      do); the run starts fresh otherwise.
    * ``resume='auto'``: continue ``last.pth`` when it exists, else start fresh (for harnesses that re-run).
    * ``resume='last'`` (the CLI's ``--resume``): as ``auto``, but the folder must exist.
    * ``resume=PATH``: continue that checkpoint (it must exist), writing into this folder.

    A resumed run must have the stored settings, except for the fields the task lists as ``mutable`` (e.g. the
    length of training, evaluation intervals, workers); differing settings are refused with the fields named,
    and a change of a mutable field is recorded in ``config.json``.

    A dry run (``dry_run`` > 0) neither reads nor makes nor locks the folder: :meth:`open` finds no run, :meth:`save`
    and :meth:`finish` write nothing (``finish`` writes the report to ``dry_run_report`` when one is named).

    Used as a context manager (``with RunFolder(...) as run:``) the folder is made and locked on entry
    (:func:`stepsnet.utils.lock.lock_folder`: a second writer is refused with the holder's process id and host),
    and on exit the lock is released; a run that fails before its first checkpoint removes what it made (the
    whole folder when it made the folder), and a file-system failure becomes one line naming the path.
    """

    LAST = 'last.pth'
    BEST = 'best.pth'
    CONFIG = 'config.json'
    LOG = 'log.csv'
    UNRECORDED = ('resume', 'progress')  # how a run is started or shown, not what it computes

    def __init__(self, out_dir: str, kind: str, resume: Optional[str], env: DistEnv,
                 tensorboard: Optional[bool] = False,
                 dry_run: int = 0, dry_run_report: Optional[str] = None):
        if not out_dir:
            raise ValueError('out_dir must name a folder')
        self.dry_run, self.dry_run_report = int(dry_run or 0), dry_run_report
        self.report: Optional[Any] = None  # the DryRunReport of a dry run, once fit has made it
        self.precision_note, self.amp_ran = '', None  # set by prepare: a dry run on a CPU runs in float32
        if self.dry_run:
            resume = None  # a dry run reads nothing from the folder and writes nothing into it
        if os.path.exists(out_dir) and not os.path.isdir(out_dir):
            raise RunError(f'out_dir {out_dir!r} exists and is not a folder; expected a run folder')
        if resume in ('', 'none', 'no', False):
            resume = None
        if resume in (True, 'true', 'yes'):
            resume = 'auto'
        if resume == 'last' and not os.path.isdir(out_dir):
            raise RunError(f'--resume: {out_dir!r} does not exist, so there is no run to continue; check --out-dir, '
                           'or start a new run without --resume')
        self.out_dir, self.kind, self.resume, self.env, self.tensorboard = out_dir, kind, resume, env, tensorboard
        self.last = os.path.join(out_dir, self.LAST)
        self.best = os.path.join(out_dir, self.BEST)
        self.resumed_from: Optional[str] = None
        self.changes: Dict[str, Tuple[Any, Any]] = {}
        self.config: Dict[str, Any] = {}
        self.meta: Dict[str, Any] = {}
        self.checkpoint: Optional[Dict[str, Any]] = None
        self.header = ''
        self.workers_note = ''  # data-loader workers capped at this machine's cores (set by prepare)
        self.info: Dict[str, Any] = {}
        self.writer: Optional[MetricWriter] = None
        self.saved = False  # a checkpoint was written in this session
        self.trained = False  # this session trained (fit began)
        self._made: Optional[bool] = None
        self._before: set = set()
        self._lock: Optional[contextlib.AbstractContextManager] = None

    # -- the folder's life: checked, made and locked on entry; released and tidied on exit

    def _check_location(self) -> None:
        """The folder, or the nearest existing folder above it, must be writable (checked before anything is made)."""
        path = os.path.abspath(self.out_dir)
        while not os.path.exists(path):
            path = os.path.dirname(path)
        if not os.path.isdir(path):
            raise RunError(f'cannot make run folder {self.out_dir!r}: {path!r} is a file')
        if not os.access(path, os.W_OK | os.X_OK):
            raise StorageError(f'cannot write run folder {self.out_dir!r}: {path!r} is not writable (read-only '
                               'file system or no permission); choose another --out-dir')

    def __enter__(self) -> RunFolder:
        if not self.env.is_main or self.dry_run:
            return self
        self._check_location()
        self._made = not os.path.isdir(self.out_dir)
        try:
            os.makedirs(self.out_dir, exist_ok=True)
        except OSError as e:
            raise storage_error(e, self.out_dir) from e
        self._before = set(os.listdir(self.out_dir))
        lock = lock_folder(self.out_dir, f'a {self.kind} run')
        try:
            lock.__enter__()
        except BaseException as e:
            self._tidy()
            if isinstance(e, OSError) and not isinstance(e, StorageError):
                raise storage_error(e, os.path.join(self.out_dir, LOCK_NAME)) from e
            raise
        self._lock = lock
        return self

    def __exit__(self, kind, error, tb) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        if self._lock is not None:
            lock, self._lock = self._lock, None
            lock.__exit__(None, None, None)
        if isinstance(error, Exception) and not self.saved and self.env.is_main:
            self._tidy()  # a start that failed: leave the folder as it was (a Ctrl-C keeps it to be resumed)
        if isinstance(error, OSError) and not isinstance(error, StorageError) and error.errno in STORAGE_ERRNOS:
            raise storage_error(error, error.filename or self.out_dir) from error

    def _tidy(self) -> None:
        if self._made is None or not os.path.isdir(self.out_dir):
            return
        if self._made:
            shutil.rmtree(self.out_dir, ignore_errors=True)
            return
        for name in set(os.listdir(self.out_dir)) - self._before - {LOCK_NAME}:
            path = os.path.join(self.out_dir, name)
            shutil.rmtree(path, ignore_errors=True) if os.path.isdir(path) else os.unlink(path)

    # -- the policy

    def open(self, config: Dict[str, Any], mutable: Iterable[str] = (),
             meta: Optional[Dict[str, Any]] = None) -> Optional[Dict[str, Any]]:
        """Apply the policy; return the checkpoint to continue from (also kept as ``self.checkpoint``), or None.

        ``config`` and ``meta`` (the task's metadata: class names, model arguments) go into every checkpoint.

        Raises:
            RunError: The folder holds a run and no resume was asked for; the stored settings differ.
            FileNotFoundError: ``resume`` names a missing file.
            CheckpointError: The checkpoint is unreadable, of another kind, or of an earlier layout.
        """
        self.config, self.meta = config, dict(meta or {})
        path: Optional[str] = None
        if self.dry_run:
            return None
        if self.resume is None:
            if os.path.isfile(self.last):
                raise RunError(
                    f'{self.out_dir!r} already holds a run ({self.last}{self._where(self.last)}); pass --resume to '
                    'continue it, or choose another output folder (--out-dir) for a new run')
        elif self.resume in ('auto', 'last'):
            path = self.last if os.path.isfile(self.last) else None
            if path is None and self.resume == 'last' and self.env.is_main:
                print(f'{self.out_dir}: no checkpoint to continue yet; starting at step 0', flush=True)
        else:
            path = self.resume
            if os.path.isdir(path):
                raise RunError(f'resume path {path!r} is a folder; expected a checkpoint file such as '
                               f'{os.path.join(path, self.LAST)!r} (or --resume alone for {self.last!r})')
            if not os.path.isfile(path):
                raise FileNotFoundError(f'checkpoint {path!r} to resume from does not exist')
            here = os.path.isdir(self.out_dir) and os.path.samefile(os.path.dirname(os.path.abspath(path)),
                                                                    self.out_dir)
            if os.path.isfile(self.last) and not here:
                raise RunError(f'{self.out_dir!r} holds another run ({self.last}); resuming {path!r} into it would '
                               'overwrite it; choose another --out-dir')
        if path is None:
            return None
        state = self.load(path)
        stored = state.get('config') or {}
        differ = {k: (stored[k], v) for k, v in config.items()
                  if k in stored and stored[k] != v and k not in self.UNRECORDED}
        mutable = set(mutable)
        fixed = {k: d for k, d in differ.items() if k not in mutable}
        if fixed:
            lines = ', '.join(f'{k}: {a!r} -> {b!r}' for k, (a, b) in fixed.items())
            raise RunError(
                f'cannot resume {path!r} with other settings ({lines}); these fields must match the stored run. '
                f'Resume with the stored values, or start a new run in another output folder')
        self.changes = {k: d for k, d in differ.items() if k in mutable}
        self.resumed_from = path
        self.checkpoint = state
        return state

    def _where(self, path: str) -> str:
        try:
            state = torch.load(path, map_location='cpu', weights_only=True)
            return f', step {state["progress"]["step"]}'
        except Exception:  # only a hint for the message
            return ''

    def load(self, path: str) -> Dict[str, Any]:
        try:
            state = load_checkpoint(path, self.kind, required=('model', 'progress', 'config'))
        except CheckpointError as e:
            if os.path.abspath(path) != os.path.abspath(self.last) or not os.path.isfile(self.best):
                raise
            step = self._where(self.best)
            if not step:
                raise
            raise CheckpointError(f'{e}. {self.best!r} is intact ({step[2:]}): continue from it with --resume '
                                  f'{self.best} (the damaged {self.LAST} is replaced at the next checkpoint)') from e
        if state.get('version') != FORMAT_VERSION:
            raise CheckpointError(
                f'checkpoint {path!r} has layout version {state.get("version")!r}; this stepsnet reads version '
                f'{FORMAT_VERSION} (it was written by an earlier stepsnet); start a new run')
        return state

    # -- what a run writes

    def describe(self, header: str = '', **info: Any) -> None:
        """The line printed when training begins, and facts recorded in ``config.json`` (params, device, ...)."""
        self.header = header
        self.info.update(info)

    def begin(self, progress: Progress, schedule: Schedule) -> bool:
        """Start writing: ``config.json``, the log (cut back to the checkpoint's step), the header and the resume
        line. A finished run is reported as such and nothing is written; returns whether there is work to do."""
        main = self.env.is_main
        total = schedule.total_steps
        if progress.step >= total:
            if main:
                print(f'{self.out_dir}: the run is finished ({progress.step} of {plural(total, "step")}); nothing '
                      'to do', flush=True)
            return False
        self.trained = True
        header = '; '.join(p for p in (self.header, self.workers_note) if p)
        if main and self.dry_run:
            print(f'{header + "; " if header else ""}dry run: {min(self.dry_run, total)} of the recipe\'s '
                  f'{plural(total, "step")} and one evaluation batch; nothing is written into {self.out_dir}',
                  flush=True)
        elif main:
            self.write_config(self.config, self.info)
            self.writer = MetricWriter(self.out_dir, tensorboard=self.tensorboard, step_key='step')
            self.writer.csv.truncate_after(progress.step)
            epochs = f' ({plural(total / schedule.steps_per_epoch, "epoch")})' if schedule.steps_per_epoch else ''
            print(f'{header + "; " if header else ""}{plural(total, "step")}{epochs} into {self.out_dir}', flush=True)
            if self.resumed_from:
                spe = schedule.steps_per_epoch
                epoch = f' (epoch {progress.step // spe + 1})' if spe and progress.step % spe == 0 else ''
                print(f'resumed from {self.resumed_from} at step {progress.step} of {total}{epoch}', flush=True)
        return True

    def write_config(self, config: Dict[str, Any], extra: Optional[Dict[str, Any]] = None) -> None:
        """``config.json``: the settings, plus the history of changes made on resume (main rank only)."""
        if not self.env.is_main:
            return
        path = os.path.join(self.out_dir, self.CONFIG)
        record: Dict[str, Any] = {}
        if self.resumed_from and os.path.isfile(path):
            try:
                with open(path, encoding='utf-8') as f:
                    record = json.load(f)
            except (OSError, ValueError):
                record = {}
        resumes = list(record.get('resumes', []))
        if self.resumed_from:
            resumes.append({'from': self.resumed_from, 'time': time.strftime('%Y-%m-%d %H:%M:%S'),
                            'changed': {k: {'stored': a, 'now': b} for k, (a, b) in self.changes.items()}})
        out = {'config': config if not self.resumed_from else record.get('config', config), **(extra or {})}
        if self.resumed_from:
            out['config_now'] = config
        out['resumes'] = resumes
        atomic_write_text(path, json.dumps(out, indent=2, default=str))

    def save(self, state: Dict[str, Any], best: bool = False) -> None:
        """Write ``last.pth`` (and ``best.pth``) atomically on the main rank; every rank waits for it.

        Raises:
            StorageError: The file system refused the write (full disk, read-only); the old file is unchanged.
        """
        if self.env.is_main and not self.dry_run:
            payload = dict(state, config=self.config, meta=self.meta, version=FORMAT_VERSION)
            save_checkpoint(payload, self.last, self.kind)
            self.saved = True
            if best:
                save_checkpoint(payload, self.best, self.kind)
        barrier()

    def results(self, state: TrainState, schedule: Schedule, final: Mapping[str, Any],
                **extra: Any) -> Dict[str, Any]:
        """The run's results, the same keys for every task (see :data:`RESULT_KEYS`); ``extra`` adds the task's."""
        p = state.progress
        spe = schedule.steps_per_epoch
        return dict(
            kind=self.kind, out_dir=self.out_dir, steps=p.step, total_steps=schedule.total_steps,
            epochs=round(p.step / spe, 4) if spe else None, items_seen=p.items, item_name=schedule.item_name,
            train_time_s=round(p.train_time, 3), metric=schedule.metric, higher_is_better=schedule.higher_is_better,
            best=p.best, best_step=p.best_step, final=dict(final), stopped_early=p.step < schedule.total_steps,
            last_checkpoint=self.last, best_checkpoint=self.best if os.path.isfile(self.best) else None, **extra,
            **({'dry_run': self.report.to_dict()} if self.report is not None else {}))

    def stored_results(self) -> Dict[str, Any]:
        """The ``results.json`` an earlier session of this run wrote ({} when there is none or it is unreadable)."""
        try:
            with open(os.path.join(self.out_dir, RESULTS), encoding='utf-8') as f:
                stored = json.load(f)
            return stored if isinstance(stored, dict) else {}
        except (OSError, ValueError):
            return {}

    def finish(self, results: Mapping[str, Any]) -> None:
        """Write ``results.json`` (main rank) when this session trained or the file is missing."""
        if self.dry_run:
            if self.env.is_main and self.dry_run_report and self.report is not None:
                self.report.write_json(self.dry_run_report)
            return
        path = os.path.join(self.out_dir, RESULTS)
        if self.env.is_main and (self.trained or not os.path.isfile(path)) and os.path.isfile(self.last):
            atomic_write_text(path, json.dumps(results, indent=2, default=str))


RESULTS = 'results.json'
# the keys of every run's results.json (and of the dict a task's train function returns under 'results')
RESULT_KEYS = ('kind', 'out_dir', 'steps', 'total_steps', 'epochs', 'items_seen', 'item_name', 'train_time_s',
               'metric', 'higher_is_better', 'best', 'best_step', 'final', 'stopped_early', 'last_checkpoint',
               'best_checkpoint', 'model', 'params')


# ----------------------------------------------------------------------------------------------------------------
# The loop


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


def _due(step: int, every: int) -> bool:
    return every > 0 and step % every == 0


@contextlib.contextmanager
def loader_errors() -> Iterator[None]:
    """An error raised in a ``DataLoader`` worker, re-raised with its own message (torch prepends the worker's
    traceback, which a one-line report would flatten into kilobytes with the useful sentence at the end)."""
    try:
        yield
    except Exception as e:
        text = str(e)
        if 'DataLoader worker' not in text or 'Original Traceback' not in text:
            raise
        lines = text.splitlines()
        # the worker's last line names the type, bare or with its module (``stepsnet.utils.errors.DataError: ``)
        heads = (f'{type(e).__name__}: ', f'{type(e).__module__}.{type(e).__qualname__}: ')
        start = max((i for i, line in enumerate(lines) if line.startswith(heads)), default=len(lines) - 1)
        message = '\n'.join(lines[start:])
        for head in heads:
            if message.startswith(head):
                message = message[len(head):]
                break
        try:
            clean = type(e)(message)
        except Exception:  # an exception type that wants other arguments: keep torch's
            raise e from None
        raise clean from None


@contextlib.contextmanager
def _internal_errors(where: str) -> Iterator[None]:
    """Inside the loop, an exception that is not the user's (:class:`DataError`), an interrupt or a stop on a
    non-finite loss is ours: re-raised as :class:`TrainingError` naming where it happened, with its cause."""
    try:
        yield
    except (DataError, FloatingPointError, StopIteration, TrainingError):
        raise
    except Exception as e:
        raise TrainingError(f'{type(e).__name__} at {where}: {" ".join(str(e).split())}') from e


def _format_metrics(metrics: Mapping[str, Any]) -> str:
    return '  '.join(f'{k} {v:.4g}' for k, v in metrics.items() if isinstance(v, (int, float)))


def fit(
        state: TrainState,
        *,
        run: RunFolder,
        batches: Iterator[Sequence[Any]],
        loss_fn: Callable[[nn.Module, Any], Any],
        evaluate: Callable[[], Dict[str, Any]],
        schedule: Schedule,
        count: Optional[Callable[[Sequence[Any]], int]] = None,
        eval_line: Optional[Callable[[int, Dict[str, Any]], str]] = None,
) -> Progress:
    """Train ``state`` from ``state.progress.step`` to ``schedule.total_steps``; returns the final :class:`Progress`.

    Each item of ``batches`` holds the micro-batches of one step (a one-element sequence without accumulation;
    ``None`` entries, batches whose every sample was skipped, are dropped);
    the iterator starts at ``progress.step`` (the task makes it so, which is how a resumed run sees the batches
    the uninterrupted run would have seen). ``scheduler.step_update(step)`` sets the learning rate before each
    step. After a step: EMA update, logging every ``log_every``, evaluation every ``eval_every`` (``best.pth``
    when ``schedule.metric`` improves), ``last.pth`` every ``checkpoint_every``; at the end (or the time limit)
    an evaluation and a checkpoint. A finished run trains nothing and writes nothing (:meth:`RunFolder.begin`).

    Output: a progress bar on a terminal; elsewhere (a file, a pipe) one plain line every ``log_every`` steps.
    Every evaluation prints a line: ``eval_line(step, metrics)``, or the metrics by name.

    Checkpoints hold the :meth:`TrainState.state_dict` and the run's config and metadata. The learning rate is a
    function of the step and the config, so a resumed run rebuilds its scheduler from the config: a run extended
    on resume (a longer run length) follows the schedule of its new length from the step it resumes at.

    A dry run (``run.dry_run`` = N): N steps, the training MACs of the first counted, one evaluation at the end,
    nothing saved; then ``run.report`` (:class:`~stepsnet.utils.dryrun.DryRunReport`) is printed and kept.

    Raises:
        FloatingPointError: More than ``schedule.nan_tolerance`` non-finite losses.
    """
    env, progress = run.env, state.progress
    main = env.is_main
    total = schedule.total_steps
    if not run.begin(progress, schedule):
        return progress
    dry = DryRunMeter(env.device) if run.dry_run else None
    stop = min(total, progress.step + run.dry_run) if dry is not None else total
    before = [p.detach().clone() for p in state.model.parameters() if p.requires_grad] if dry is not None else []
    model, train_model, optimizer, scheduler, ema = (state.model, state.train_model, state.optimizer,
                                                     state.scheduler, state.ema)

    def say(line: str) -> None:
        if main:
            (bar.write(line) if bar is not None else print(line, flush=True))

    def evaluate_now(step: int) -> Tuple[Dict[str, Any], bool]:
        if dry is not None:
            dry.start_eval()
        with loader_errors():
            metrics = evaluate()
        if dry is not None:
            dry.stop_eval()
        score = metrics.get(schedule.metric)
        better = score is not None and math.isfinite(score) and (
            progress.best is None or (score > progress.best if schedule.higher_is_better else score < progress.best))
        if better:
            progress.best, progress.best_step = float(score), step
        say(eval_line(step, metrics) if eval_line is not None else
            f'step {step}/{total}  val {_format_metrics(metrics)}')
        return metrics, better

    bar = tqdm(total=total, initial=progress.step, desc=schedule.desc, dynamic_ncols=True,
               leave=False) if main and interactive(schedule.progress) and dry is None else None
    interval_loss, interval_steps, interval_items, t_interval = 0.0, 0, 0, time.perf_counter()
    result: Optional[StepResult] = None
    train_model.train()
    step = progress.step
    try:
        while step < stop:
            t0 = time.perf_counter()
            if scheduler is not None:
                scheduler.step_update(num_updates=step)
            with _internal_errors(f'step {step + 1}'):
                with loader_errors():
                    micro = [b for b in next(batches) if b is not None]
                if micro:
                    args = (train_model, optimizer, micro, loss_fn, env, state.autocast, state.scaler,
                            schedule.clip_grad, schedule.clip_mode)
                    if dry is not None and not dry.step_times and not run.config.get("compile"):
                        result, dry.flops = count_flops(train_step, *args)
                    else:
                        result = train_step(*args)
                else:  # every sample of the step was skipped (unreadable files under skip_corrupt)
                    say(f'warning: step {step + 1} has no data (every sample was skipped); no update')
            step += 1
            progress.step = step
            if micro and not result.finite:
                progress.nonfinite += 1
                value = float(result.loss.item())
                kept = (f'the last good checkpoint {run.last!r} is kept' if os.path.isfile(run.last)
                        else 'no checkpoint was written yet')
                if progress.nonfinite > schedule.nan_tolerance:
                    raise FloatingPointError(
                        f'training loss is {value} at step {step} ({progress.nonfinite} non-finite so far, '
                        f'nan_tolerance={schedule.nan_tolerance}); stopped before the update; {kept}. Lower the '
                        'learning rate, clip gradients (clip_grad) or use amp_dtype=bfloat16')
                say(f'warning: non-finite loss {value} at step {step}; update skipped '
                    f'({progress.nonfinite} of {schedule.nan_tolerance} tolerated)')
            elif micro:
                if ema is not None:
                    ema.update(model, step=step)
                interval_loss += float(result.loss)  # a host sync per step: the finiteness check synced already
                interval_steps += 1
                items = count(micro) * env.world_size if count is not None else 0
                interval_items += items
                progress.items += items
            progress.train_time += time.perf_counter() - t0
            if dry is not None:
                dry.sync()
                dry.step_times.append(time.perf_counter() - t0)
                if micro:
                    dry.losses.append(float(result.loss))
                    dry.items, dry.micro = count(micro) if count is not None else 0, len(micro)
            if bar is not None:
                bar.update(1)
            out_of_time = schedule.time_limit is not None and progress.train_time >= schedule.time_limit
            last = step >= stop or out_of_time
            row: Dict[str, Any] = {}
            if _due(step, schedule.log_every) or last or dry is not None:
                dt = time.perf_counter() - t_interval
                mean = all_reduce_mean(torch.tensor(interval_loss / max(interval_steps, 1), dtype=torch.float64))
                row.update(lr=optimizer.param_groups[0]['lr'], train_loss=float(mean))
                if result is not None:
                    if result.grad_norm is not None:
                        row['grad_norm'] = result.grad_norm
                    row.update({f'train_{k}': float(all_reduce_mean(v)) for k, v in result.parts.items()})
                rate = ''
                if count is not None and dt > 0:
                    row[f'{schedule.item_name}_per_s'] = interval_items / dt
                    per_s = interval_items / dt
                    rate = f'  {per_s:,.0f} {schedule.item_name}/s' if per_s >= 10 else \
                        f'  {per_s:.2g} {schedule.item_name}/s'
                if bar is not None:
                    bar.set_postfix(loss=f'{row["train_loss"]:.4f}', lr=f'{row["lr"]:.2e}')
                else:
                    epoch = f' (epoch {step / schedule.steps_per_epoch:.2f})' if schedule.steps_per_epoch else ''
                    say(f'step {step}/{total}{epoch}  loss {row["train_loss"]:.4f}  lr {row["lr"]:.3g}{rate}')
                interval_loss, interval_steps, interval_items = 0.0, 0, 0
            better = False
            if (_due(step, schedule.eval_every) and dry is None) or last:
                metrics, better = evaluate_now(step)
                row.update({f'val_{k}': v for k, v in metrics.items() if isinstance(v, (int, float))})
                train_model.train()
            if row:
                head = {'step': step}
                if schedule.steps_per_epoch:
                    head['epoch'] = round(step / schedule.steps_per_epoch, 4)
                if count is not None:
                    head[f'{schedule.item_name}_seen'] = progress.items
                progress.history.append({**head, **row, 'time': round(progress.train_time, 3)})
                if run.writer is not None:
                    run.writer.log(progress.history[-1])
                t_interval = time.perf_counter()
            if _due(step, schedule.checkpoint_every) or last or better:
                run.save(state.state_dict(), best=better)
                t_interval = time.perf_counter()
            if out_of_time:
                break
    finally:
        if bar is not None:
            bar.close()
    if dry is not None:
        run.report = _dry_run_report(dry, state, run, schedule, before)
        if main:
            print('\n'.join(run.report.lines()), flush=True)
    return progress


def _dry_run_report(dry: DryRunMeter, state: TrainState, run: RunFolder, schedule: Schedule,
                    before: List[torch.Tensor]) -> DryRunReport:
    env, cfg = run.env, run.config
    after = [p for p in state.model.parameters() if p.requires_grad]
    changed = any(not torch.equal(a.detach().cpu(), b.cpu()) for a, b in zip(after, before))
    total = schedule.total_steps
    evaluations = math.ceil(total / schedule.eval_every) if schedule.eval_every else 1
    memory, memory_kind = dry.peak_memory()
    micro = dry.micro or 1
    items_per_micro = (dry.items or 0) / micro
    items_per_step = (dry.items or 0) * env.world_size
    recipe_amp = cfg.get('amp_dtype', '') if cfg.get('amp') else ''
    task = task_of_kind(run.kind)
    floor = None
    if task is not None and dry.flops is not None and items_per_micro > 0:
        floor = a100_floor(task, cfg, dry.flops / (items_per_micro * micro), items_per_step, total)
    return DryRunReport(
        kind=run.kind, model=schedule.model_name or schedule.desc, device=env.device, processes=env.world_size,
        params=sum(p.numel() for p in state.model.parameters()), train_flops_per_step=dry.flops,
        item_name=schedule.item_name, items_per_micro_batch=items_per_micro, accumulation=micro,
        items_per_step=items_per_step, steps=len(dry.step_times),
        first_step_s=dry.step_times[0], step_s=dry.step_median(), eval_batch_s=dry.eval_s,
        eval_batches=schedule.eval_batches, evaluations=evaluations, total_steps=total, peak_memory_bytes=memory,
        peak_memory_kind=memory_kind, amp=recipe_amp if run.amp_ran is None else run.amp_ran,
        compiled=bool(cfg.get("compile")), losses=dry.losses, params_changed=changed,
        notes=[run.precision_note] if run.precision_note else [], recipe_amp=recipe_amp,
        a100_floor_h=None if floor is None else floor.hours, a100_floor_items='' if floor is None else floor.counted)


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
            ``epoch_batches`` options ``drop_last`` / ``repeats``.
    """
    sampling = {k: loader_kwargs.pop(k) for k in ('drop_last', 'repeats') if k in loader_kwargs}
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
