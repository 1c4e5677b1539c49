"""One writer per folder: an advisory lock that a second writer meets at once and that dies with its holder.

:func:`lock_folder` takes ``fcntl.flock`` on a ``.lock`` file inside the folder and writes the holder's process id,
host and start time into it. The kernel drops a ``flock`` when its process ends, however it ends (SIGKILL and power
loss included), so a lock is never held by a process that is gone; the file it leaves behind only tells the next
writer whose lock it takes over. A clean release removes the file. ``flock`` is local to one machine on some network
file systems, so two hosts sharing a folder are told apart by the host name written in the file.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from typing import Any, Dict, Iterator

__all__ = ['FolderInUse', 'lock_folder', 'LOCK_NAME']

LOCK_NAME = '.lock'


class FolderInUse(ValueError):
    """Another process holds the folder's lock."""


def _read(fd: int) -> Dict[str, Any]:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 4096).decode('utf-8', 'replace')
        info = json.loads(text) if text.strip() else {}
        return info if isinstance(info, dict) else {}
    except (OSError, ValueError):
        return {}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a process of another user
        return True
    return True


@contextlib.contextmanager
def lock_folder(path: str, purpose: str = 'a run') -> Iterator[Dict[str, Any]]:
    """Hold ``path``'s lock for the ``with`` block (the folder must exist).

    Args:
        path: The folder.
        purpose: What the holder writes there, for the messages (``'a run'``, ``'a comparison'``).

    Yields:
        The lock record: ``pid``, ``host``, ``started``.

    Raises:
        FolderInUse: Another process holds the lock; the message names its process id and host.
    """
    lock_path = os.path.join(path, LOCK_NAME)
    host = socket.gethostname()
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(fd)
            os.close(fd)
            since = f' since {holder["started"]}' if holder.get('started') else ''
            raise FolderInUse(
                f'{path!r} is in use: process {holder.get("pid", "?")} on host {holder.get("host", "?")} is writing '
                f'{holder.get("purpose", purpose)} there{since}; wait for it to end, or choose another folder'
            ) from None
        try:  # the holder before us may have removed the file after we opened it: lock the file that is there
            same = os.path.samestat(os.fstat(fd), os.stat(lock_path))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        previous = _read(fd)
        pid = previous.get('pid')
        if isinstance(pid, int) and pid != os.getpid():
            gone = 'is no longer running' if previous.get('host') == host and not _alive(pid) else 'holds no lock'
            print(f'{path}: taking over the lock left by process {pid} on host {previous.get("host", "?")}, which '
                  f'{gone}', file=sys.stderr, flush=True)
        record = dict(pid=os.getpid(), host=host, started=time.strftime('%Y-%m-%d %H:%M:%S'), purpose=purpose)
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, json.dumps(record).encode('utf-8'))
        yield record
    finally:
        with contextlib.suppress(OSError):  # removed while we hold it: only our own file is ours to remove
            if os.path.samestat(os.fstat(fd), os.stat(lock_path)):
                os.unlink(lock_path)
        os.close(fd)
