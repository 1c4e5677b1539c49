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

The package holds them by job: :mod:`~stepsnet.engine.core` (processes, the model, the update, the state, the
schedule, the batches), :mod:`~stepsnet.engine.run_folder` (:class:`RunFolder`) and :mod:`~stepsnet.engine.loop`
(:func:`prepare`, :func:`fit`, and the :class:`~stepsnet.engine.loop.StepMeter` that measures a dry run and
nothing else).
Everything public is importable from ``stepsnet.engine``.

Learning-rate schedules, optimizers with weight-decay groups, EMA and gradient clipping are timm's
(``timm.scheduler``, ``timm.optim``, ``timm.utils``).
"""
from timm.utils import unwrap_model

from stepsnet.config.run import RunConfig
from stepsnet.engine.core import (
    DistEnv,
    Progress,
    Schedule,
    StepResult,
    TrainState,
    all_reduce_mean,
    all_reduce_sum,
    amp_context,
    barrier,
    config_dict,
    create_optimizer,
    distributed,
    epoch_loader_batches,
    no_weight_decay_names,
    resolve_device,
    seed_all,
    seed_epoch,
    train_step,
    wrap_model,
)
from stepsnet.engine.loop import DryRun, StepMeter, fit, loader_errors, prepare, step_meter
from stepsnet.engine.run_folder import FORMAT_VERSION, RESULT_KEYS, RESULTS, RunError, RunFolder
from stepsnet.utils.lock import FolderInUse, lock_folder

__all__ = [
    'RunConfig', 'DistEnv', 'distributed', 'resolve_device', 'all_reduce_mean', 'all_reduce_sum', 'barrier',
    'wrap_model', 'unwrap_model', 'amp_context', 'no_weight_decay_names', 'create_optimizer', 'StepResult',
    'train_step', 'RunFolder', 'RunError', 'Progress', 'TrainState', 'prepare', 'Schedule', 'fit', 'StepMeter',
    'DryRun', 'step_meter', 'config_dict', 'loader_errors', 'epoch_loader_batches', 'seed_all', 'seed_epoch',
    'lock_folder', 'FolderInUse', 'RESULTS', 'RESULT_KEYS', 'FORMAT_VERSION',
]
