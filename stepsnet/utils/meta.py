"""Building models on the meta device without running their weight initialisers.

A model built on the meta device has shapes and no data, so its initialisers (``trunc_normal_``, ``uniform_``,
``zero_``, ...) have nothing to write; PyTorch still runs each of them through its Python meta kernels, which for a
full-size Swin or ConvNeXt costs about as much as counting its forward pass. Inside :func:`skip_meta_init` the
in-place tensor methods that only change values return their meta tensor at once. Shapes, dtypes and parameters are
what they would be; a tensor with data is never affected.
"""
import contextlib
from typing import Iterator

import torch
from torch.overrides import TorchFunctionMode

__all__ = ['VALUE_ONLY_INPLACE', 'skip_meta_init']

# in-place methods that write values and never change a tensor's shape, dtype or storage
VALUE_ONLY_INPLACE = frozenset(f'{name}_' for name in (
    'uniform', 'normal', 'random', 'exponential', 'log_normal', 'cauchy', 'geometric', 'bernoulli', 'fill', 'zero',
    'copy', 'erfinv', 'clamp', 'clamp_min', 'clamp_max', 'mul', 'add', 'sub', 'div', 'sqrt', 'neg', 'abs', 'exp',
    'log', 'fmod', 'remainder'))


class _SkipMetaInit(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        if (getattr(func, '__name__', None) in VALUE_ONLY_INPLACE and args and isinstance(args[0], torch.Tensor)
                and args[0].is_meta):
            return args[0]
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def skip_meta_init() -> Iterator[None]:
    """Inside the context, value-only in-place methods (:data:`VALUE_ONLY_INPLACE`) on meta tensors do nothing.

    Use it around building a model on the meta device (``timm.create_model(name, device='meta')``,
    ``with torch.device('meta'): ...``) to skip its weight initialisation; see the module docstring.
    """
    with _SkipMetaInit():
        yield
