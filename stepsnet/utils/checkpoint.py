"""Checkpoints that are never half-written and never executed on load.

``save_checkpoint`` writes to a temporary file in the target's directory, flushes it to disk and renames it over
the target (``os.replace`` is atomic on POSIX and Windows), so a crash leaves either the old or the new file.
``load_checkpoint`` reads with ``torch.load(weights_only=True)`` (tensors, containers and primitives only) and
checks a format tag and the keys a task needs, so a truncated file or another program's checkpoint fails with a
clear message instead of a pickle traceback.
"""
import errno
import os
import tempfile
from typing import Any, Dict, Iterable, Optional, Union

import torch

__all__ = ['CheckpointError', 'StorageError', 'storage_error', 'atomic_write_bytes', 'atomic_write_text',
           'save_checkpoint', 'load_checkpoint']

PathLike = Union[str, os.PathLike]


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used (truncated, corrupt, foreign or for another architecture)."""


class StorageError(OSError, ValueError):
    """A file that cannot be written (read-only file system, full disk, no permission): one line naming the path.

    Both an ``OSError`` (what it is) and a ``ValueError`` (a condition the user can fix, reported in one line).
    """


# the errors of a file system that refuses a write, and how a message names them
_HINTS = {errno.ENOSPC: 'the disk is full', errno.EDQUOT: 'the disk quota is used up',
          errno.EROFS: 'the file system is read-only', errno.EACCES: 'no permission to write there',
          errno.EPERM: 'no permission to write there'}
STORAGE_ERRNOS = frozenset(_HINTS)


def storage_error(e: OSError, path: PathLike, kept: Optional[str] = None) -> StorageError:
    """``e`` as a :class:`StorageError` naming ``path`` (and ``kept``, a file that the failure left intact)."""
    if isinstance(e, StorageError):
        return e
    reason = _HINTS.get(e.errno) or e.strerror or type(e).__name__
    where = e.filename if e.filename and os.fspath(e.filename) != os.fspath(path) else None
    text = f'cannot write {os.fspath(path)!r}: {reason}' + (f' ({where!r})' if where else '')
    if kept:
        text += f'; {kept!r} is unchanged'
    err = StorageError(text)
    err.errno = e.errno
    return err


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _atomic_write(path: PathLike, write) -> None:
    """Write through a temporary file and a rename; a failure (full disk, ...) leaves the old file as it was.

    Raises:
        StorageError: The file system refused the write (the message names ``path``).
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    kept = path if os.path.isfile(path) else None
    tmp = None
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix='.' + os.path.basename(path) + '.', suffix='.tmp', dir=directory)
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the mode open() would
        with os.fdopen(fd, 'wb') as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise storage_error(e, path, kept) from e
        raise


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    _atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: PathLike, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` through a temporary file and a rename."""
    atomic_write_bytes(path, text.encode('utf-8'))


def save_checkpoint(state: Dict[str, Any], path: PathLike, kind: str) -> None:
    """Atomically save ``state`` (tensors, containers, primitives) tagged with ``kind`` (e.g. ``'stepsnet-lm'``)."""
    payload = dict(state)
    payload['format'] = kind
    _atomic_write(path, lambda f: torch.save(payload, f))


def load_checkpoint(
        path: PathLike,
        kind: str,
        required: Iterable[str] = (),
        map_location: Optional[Union[str, torch.device]] = 'cpu',
) -> Dict[str, Any]:
    """Load a checkpoint saved by :func:`save_checkpoint` and check it.

    Args:
        path: The file.
        kind: Format tag the file must carry.
        required: Keys the state must contain.
        map_location: Where tensors are loaded.

    Raises:
        FileNotFoundError: No such file.
        IsADirectoryError: ``path`` is a folder.
        CheckpointError: The file is truncated, not a PyTorch checkpoint, unsafe to load, or of another kind.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise IsADirectoryError(f'checkpoint {path!r} is a folder; expected a checkpoint file in it, such as '
                                f'{os.path.join(path, "last.pth")!r} or {os.path.join(path, "best.pth")!r}')
    if not os.path.isfile(path):
        raise FileNotFoundError(f'checkpoint {path!r} does not exist')
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises RuntimeError, EOFError, UnpicklingError, ... for bad files
        raise CheckpointError(
            f'cannot read checkpoint {path!r} ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ""}); '
            'expected a complete file written by stepsnet (it may be truncated or from another program)') from e
    if not isinstance(state, dict) or state.get('format') != kind:
        found = state.get('format') if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f'checkpoint {path!r} has format {found!r}; expected a {kind!r} checkpoint')
    missing = [k for k in required if k not in state]
    if missing:
        raise CheckpointError(f'checkpoint {path!r} lacks {missing}; expected a complete {kind!r} checkpoint')
    return state
