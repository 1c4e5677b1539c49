"""Building models on the meta device without running their weight initialisers.

A model built on the meta device has shapes and no data, so its initialisers (``trunc_normal_``, ``uniform_``,
``zero_``, ...) have nothing to write; PyTorch still runs each of them through its Python meta kernels, which for a
full-size Swin or ConvNeXt costs about as much as counting its forward pass. Inside :func:`skip_meta_init` the
in-place tensor methods that initialisers use to write values return their meta tensor at once. Shapes, dtypes and
parameters are what they would be; a tensor with data is never affected. :func:`on_meta` is the context every model
the package builds on the meta device is built in: the meta device and :func:`skip_meta_init` together.

Both are for building a model only, never for running one: an in-place method skipped in a forward pass would also
skip the errors autograd raises for it.
"""
import contextlib
from typing import Iterator

import torch
from torch.overrides import TorchFunctionMode

__all__ = ['VALUE_ONLY_INPLACE', 'skip_meta_init', 'on_meta']

# the in-place methods initialisers write values with (torch.nn.init and timm's trunc_normal_ / lecun_normal_); none
# of them changes a tensor's shape, dtype or storage
VALUE_ONLY_INPLACE = frozenset(f'{name}_' for name in (
    'uniform', 'normal', 'random', 'exponential', 'log_normal', 'cauchy', 'geometric', 'bernoulli', 'fill', 'zero',
    'erfinv', 'clamp', 'clamp_min', 'clamp_max', 'mul', 'add'))


class _SkipMetaInit(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        if (getattr(func, '__name__', None) in VALUE_ONLY_INPLACE and args and isinstance(args[0], torch.Tensor)
                and args[0].is_meta):
            return args[0]
        return func(*args, **(kwargs or {}))


def skip_meta_init() -> TorchFunctionMode:
    """A context in which value-only in-place methods (:data:`VALUE_ONLY_INPLACE`) on meta tensors do nothing.

    Use it around building a model on the meta device to skip its weight initialisation (see the module
    docstring); :func:`on_meta` also selects the device.
    """
    return _SkipMetaInit()


@contextlib.contextmanager
def on_meta() -> Iterator[None]:
    """Build on the meta device (``torch.device('meta')``) without running weight initialisers
    (:func:`skip_meta_init`): shapes and parameters, no memory, no arithmetic."""
    with torch.device('meta'), _SkipMetaInit():
        yield
