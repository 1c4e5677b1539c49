"""Small helpers under the engine: atomic checkpoints, CSV/TensorBoard logs, YAML configs, figures.

The names below are imported on first use (PEP 562), so that a light module of this package (the YAML configs) does
not load torch with them.
"""
import importlib

__all__ = [
    'CheckpointError', 'atomic_write_bytes', 'atomic_write_text', 'load_checkpoint', 'save_checkpoint',
    'CSVLogger', 'MetricWriter', 'load_weights', 'save_figure',
]

_LAZY = {
    'CheckpointError': 'checkpoint', 'atomic_write_bytes': 'checkpoint', 'atomic_write_text': 'checkpoint',
    'load_checkpoint': 'checkpoint', 'save_checkpoint': 'checkpoint', 'CSVLogger': 'logging',
    'MetricWriter': 'logging', 'load_weights': 'loading', 'save_figure': 'figures',
}


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(f'{__name__}.{_LAZY[name]}'), name)
        globals()[name] = value
        return value
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
