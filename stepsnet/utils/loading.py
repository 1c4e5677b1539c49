"""Loading a run's checkpoint into a model: the checks every task and the engine share.

:func:`load_weights` puts a state dict into a model with a one-line error naming the file; :func:`checkpoint_kind`
reads which task wrote a checkpoint (its format tag, e.g. ``stepsnet-lm``) without loading its tensors, so
``stepsnet eval`` can hand the file to the right task.
"""
import os
from typing import Mapping, Union

import torch
import torch.nn as nn

from stepsnet.utils.checkpoint import CheckpointError, load_failure, quiet_safe_load

__all__ = ['load_weights', 'checkpoint_kind']


def load_weights(model: nn.Module, weights: Mapping[str, torch.Tensor], source: str) -> None:
    """``load_state_dict(strict=True)`` with a one-line error that names the file and the architecture.

    Raises:
        CheckpointError: The weights do not fit (missing, unexpected or mis-shaped tensors; the first few named).
    """
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        detail = ' '.join(lines[1:3]) if len(lines) > 1 else (lines[0] if lines else '')
        if len(detail) > 300:
            detail = detail[:300] + ' ...'
        raise CheckpointError(
            f'the weights in {source!r} do not fit {type(model).__name__} ({detail}); expected weights of the same '
            'architecture and settings') from e


def checkpoint_kind(path: Union[str, os.PathLike]) -> str:
    """The format tag of a stepsnet checkpoint (``stepsnet-cls``, ``-lm``, ``-det``, ``-seg``).

    The file is memory-mapped, so its tensors are not read. A path that is not a file is for
    :func:`stepsnet.utils.checkpoint.load_checkpoint` to explain.

    Raises:
        CheckpointError: Not a readable checkpoint, or one without a stepsnet format tag.
    """
    path = os.fspath(path)
    try:
        with quiet_safe_load():
            state = torch.load(path, map_location='cpu', weights_only=True, mmap=True)
    except Exception as e:  # torch raises RuntimeError, EOFError, UnpicklingError, ... for bad files
        raise CheckpointError(f'cannot read checkpoint {path!r} ({load_failure(e)}); expected a complete file '
                              'written by stepsnet') from e
    kind = state.get('format') if isinstance(state, dict) else None
    if not isinstance(kind, str) or not kind.startswith('stepsnet-'):
        raise CheckpointError(f'checkpoint {path!r} has no stepsnet format tag (found {kind!r}); expected a file '
                              'written by a stepsnet training command')
    return kind
