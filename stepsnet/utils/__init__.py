"""Helpers shared by the training tasks: atomic checkpoints, CSV/TensorBoard logs, torchrun/DDP setup."""
from .checkpoint import CheckpointError, atomic_write_bytes, atomic_write_text, load_checkpoint, save_checkpoint
from .distributed import DistEnv, all_reduce_mean, barrier, cleanup_distributed, setup_distributed, unwrap_model
from .logging import CSVLogger, MetricWriter

__all__ = [
    'CheckpointError', 'atomic_write_bytes', 'atomic_write_text', 'load_checkpoint', 'save_checkpoint',
    'DistEnv', 'all_reduce_mean', 'barrier', 'cleanup_distributed', 'setup_distributed', 'unwrap_model',
    'CSVLogger', 'MetricWriter',
]
