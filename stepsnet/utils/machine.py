"""What this machine offers a run, without loading torch: the cores this process may use (and so how many data
loader workers are worth starting) and whether an optional package is installed."""
from __future__ import annotations

import importlib.util
import os
from typing import Optional, Tuple

__all__ = ['available_cores', 'local_processes', 'cap_workers', 'installed']


def available_cores() -> int:
    """The CPU cores this process may run on: its affinity mask where the system has one (a container or a batch
    job limited to a few cores), else every core of the machine."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # macOS and Windows have no affinity mask
        return max(1, os.cpu_count() or 1)


def local_processes() -> int:
    """Training processes on this machine: torchrun's ``LOCAL_WORLD_SIZE``, else 1."""
    try:
        return max(1, int(os.environ.get('LOCAL_WORLD_SIZE', '1')))
    except ValueError:
        return 1


def cap_workers(requested: int, cores: Optional[int] = None, processes: Optional[int] = None) -> Tuple[int, str]:
    """``requested`` data-loader workers capped at the cores each training process of this machine has, and the
    phrase that says so for the run's header (``''`` when nothing was capped).

    A recipe's worker count is written for the machine it was tuned on (10 on an ImageNet node); on a 2-core laptop
    10 worker processes only compete with the training for the same cores (and torch warns about it on every
    loader), so the run starts as many as there are cores, and says so once.

    Args:
        requested: The recipe's ``workers`` (0: load in the training process).
        cores: Cores this process may use (default :func:`available_cores`).
        processes: Training processes sharing them (default :func:`local_processes`).
    """
    cores = available_cores() if cores is None else cores
    processes = local_processes() if processes is None else processes
    limit = max(1, cores // processes)
    if requested <= limit:
        return requested, ''
    shared = f' shared by {processes} processes' if processes > 1 else ''
    return limit, (f'{limit} data-loader worker{"" if limit == 1 else "s"} (the recipe\'s {requested}, capped at '
                   f'this machine\'s {cores} core{"" if cores == 1 else "s"}{shared})')


def installed(package: str) -> bool:
    """Whether ``package`` can be imported, found without importing it (and so without loading torch)."""
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):  # a parent package missing, or a module set to None in sys.modules
        return False
