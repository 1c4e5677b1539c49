"""``torchrun`` / DDP set-up: the same training script runs single-process or as one of N ranks."""
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ['DistEnv', 'setup_distributed', 'cleanup_distributed', 'barrier', 'all_reduce_mean', 'unwrap_model']


@dataclass
class DistEnv:
    """Where this process runs: ``rank`` of ``world_size``, its ``device``, and whether it is the main rank."""
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: str = 'cpu'

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str = 'auto') -> DistEnv:
    """Join the process group when launched by ``torchrun`` (``WORLD_SIZE > 1``); pick this rank's device.

    Args:
        device: ``'auto'`` (CUDA when available, else CPU), ``'cpu'``, ``'cuda'`` or ``'cuda:N'``.
            Under torchrun each rank uses ``cuda:LOCAL_RANK``; the backend is NCCL on CUDA and gloo on CPU.
    """
    if device == 'auto':
        device = 'cuda' if torch.cuda.is_available() else 'cpu'
    world = int(os.environ.get('WORLD_SIZE', '1'))
    if world <= 1:
        return DistEnv(device=device)
    rank = int(os.environ['RANK'])
    local = int(os.environ.get('LOCAL_RANK', '0'))
    if device.startswith('cuda'):
        device = f'cuda:{local}'
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend='nccl' if device.startswith('cuda') else 'gloo')
    return DistEnv(rank=rank, local_rank=local, world_size=world, device=device)


def cleanup_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_reduce_mean(value: torch.Tensor) -> torch.Tensor:
    """Mean of ``value`` over ranks (unchanged when not distributed)."""
    if dist.is_available() and dist.is_initialized():
        value = value.clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        value /= dist.get_world_size()
    return value


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside a DistributedDataParallel (or similar ``.module``) wrapper; the model itself otherwise."""
    return model.module if hasattr(model, 'module') else model
