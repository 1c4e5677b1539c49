"""Small helpers under the engine: atomic checkpoints, CSV/TensorBoard logs, YAML configs."""
from .checkpoint import CheckpointError, atomic_write_bytes, atomic_write_text, load_checkpoint, save_checkpoint
from .logging import CSVLogger, MetricWriter

__all__ = [
    'CheckpointError', 'atomic_write_bytes', 'atomic_write_text', 'load_checkpoint', 'save_checkpoint',
    'CSVLogger', 'MetricWriter',
]
