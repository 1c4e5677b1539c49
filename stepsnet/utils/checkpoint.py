"""Checkpoints that are never half-written and never executed on load.

``save_checkpoint`` writes to a temporary file in the target's directory, flushes it to disk and renames it over
the target (``os.replace`` is atomic on POSIX and Windows), so a crash leaves either the old or the new file.
``load_checkpoint`` reads with ``torch.load(weights_only=True)`` (tensors, containers and primitives only) and
checks a format tag and the keys a task needs, so a truncated file or another program's checkpoint fails with a
clear message instead of a pickle traceback.
"""
import contextlib
import errno
import os
import re
import tempfile
import warnings
from typing import TYPE_CHECKING, Any, Dict, Iterable, Iterator, Optional, Union

if TYPE_CHECKING:
    import torch

__all__ = ['CheckpointError', 'StorageError', 'storage_error', 'atomic_write_bytes', 'atomic_write_text',
           'save_checkpoint', 'load_checkpoint', 'load_failure', 'quiet_safe_load', 'new_file_mode',
           'temporary_beside']

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


def new_file_mode() -> int:
    """The permission bits a plain ``open(path, 'w')`` gives a new file: ``0o666`` less the umask (``0o644`` under
    the usual ``022``). A temporary file is made ``0o600``; the file renamed into place must not keep that."""
    return 0o666 & ~_umask()


@contextlib.contextmanager
def temporary_beside(path: PathLike, suffix: str = '.tmp') -> Iterator[str]:
    """A hidden temporary file in ``path``'s folder (so a rename onto ``path`` is atomic), with the mode a plain
    ``open()`` would give the final file; removed on exit unless it was renamed away.

    Raises:
        StorageError: The folder cannot be made or written; the message names the folder the user gave (the
            temporary name is ours, not theirs).
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix='.' + os.path.basename(path) + '.', suffix=suffix, dir=directory)
    except OSError as e:
        reason = _HINTS.get(e.errno) or e.strerror or type(e).__name__
        folder = os.path.dirname(path) or '.'
        err = StorageError(f'cannot write {path!r}: the folder {folder!r} is not writable ({reason})')
        err.errno = e.errno
        raise err from e
    try:
        try:
            os.fchmod(fd, new_file_mode())  # mkstemp makes 0600
        finally:
            os.close(fd)
        yield tmp
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _atomic_write(path: PathLike, write) -> None:
    """Write through a temporary file and a rename; a failure (full disk, ...) leaves the old file as it was.

    Raises:
        StorageError: The file system refused the write (the message names ``path``, or its folder when no file can
            be made there).
    """
    path = os.fspath(path)
    kept = path if os.path.isfile(path) else None
    with temporary_beside(path) as tmp:
        try:
            with open(tmp, 'wb') as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except OSError as e:
            e.filename = e.filename2 = None  # the temporary name means nothing to the user: name the target
            raise storage_error(e, path, kept) from e


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
    import torch  # here, so the atomic writers and storage errors load no torch
    _atomic_write(path, lambda f: torch.save(payload, f))


def load_failure(e: BaseException) -> str:
    """Why ``torch.load(weights_only=True)`` refused a file, in a few words of ours.

    torch's message for a file its safe loader cannot read advises loading it with ``weights_only=False`` (which
    runs whatever code the file carries), in several paragraphs with terminal bold codes; a one-line error of ours
    must not pass that advice on, so it keeps only what the loader met (``Unsupported global: GLOBAL
    __main__.Foo``, ``Unsupported operand 149``: a pickle protocol above torch's 2).
    """
    text = re.sub(r'\x1b\[[0-9;]*m', '', str(e))  # no terminal codes in a one-line error
    if 'weights only load failed' in text.lower():
        found = re.search(r'WeightsUnpickler error:\s*(.+)', text)
        what = re.split(r'(?<=[^.])\.\s', found.group(1).strip())[0].rstrip('.') if found else ''
        return ('stepsnet reads tensors, containers and numbers only, without running code from the file'
                + (f'; it stopped at: {what}' if what else ''))
    first = text.splitlines()[0].strip() if text.strip() else ''
    return f'{type(e).__name__}: {first}' if first else type(e).__name__


@contextlib.contextmanager
def quiet_safe_load() -> Iterator[None]:
    """Around ``torch.load(weights_only=True)``: drop torch's warning about a pickle protocol other than its own.

    That warning asks the reader to file an issue with PyTorch; for a file the loader then reads, it is noise, and
    for one it refuses, the error says what is wrong (:func:`load_failure`). Only that warning is dropped.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', message=r'Detected pickle protocol \d+ in the checkpoint',
                                category=UserWarning)
        yield


def load_checkpoint(
        path: PathLike,
        kind: str,
        required: Iterable[str] = (),
        map_location: Optional[Union[str, 'torch.device']] = 'cpu',
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
    import torch
    try:
        with quiet_safe_load():
            state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises RuntimeError, EOFError, UnpicklingError, ... for bad files
        raise CheckpointError(f'cannot read checkpoint {path!r} ({load_failure(e)}); expected a complete file '
                              'written by stepsnet (it may be truncated or from another program)') from e
    if not isinstance(state, dict) or state.get('format') != kind:
        found = state.get('format') if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f'checkpoint {path!r} has format {found!r}; expected a {kind!r} checkpoint')
    missing = [k for k in required if k not in state]
    if missing:
        raise CheckpointError(f'checkpoint {path!r} lacks {missing}; expected a complete {kind!r} checkpoint')
    return state
