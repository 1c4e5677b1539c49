"""Batches of sample indices that depend only on ``(seed, epoch, rank)``: what makes a resumed run exact.

A run that stops after step ``s`` and resumes asks for the batches from step ``s`` on and gets exactly those the
uninterrupted run would have trained on. Each epoch is a permutation of the dataset seeded by
``derive_seed(seed, 'order', epoch)`` (:mod:`stepsnet.utils.seeding`: seeds share no epoch order), dealt out to
the ranks by stride (rank ``r`` of ``w`` takes positions ``r, r + w, ...``), as
``torch.utils.data.DistributedSampler`` does. Given the samples' groups (e.g. detection images by orientation,
:func:`stepsnet.data.coco.aspect_groups`), each rank then batches its samples within their group, in the order of the
permutation, as mmdetection's aspect-ratio grouping does, so that a batch pads its images less.
"""
import math
from typing import Dict, List, Optional, Sequence

import torch

from stepsnet.utils.seeding import derive_seed

__all__ = ['steps_per_epoch', 'epoch_batches']


def steps_per_epoch(num_samples: int, batch_size: int, world_size: int = 1, drop_last: bool = True) -> int:
    """Batches per rank in one epoch (at least one: a dataset smaller than a global batch is repeated)."""
    if num_samples < 1:
        raise ValueError('the dataset is empty; expected at least one sample')
    if batch_size < 1 or world_size < 1:
        raise ValueError(f'batch_size and world_size must be >= 1, got {batch_size} and {world_size}')
    per_step = batch_size * world_size
    return max(1, num_samples // per_step if drop_last else math.ceil(num_samples / per_step))


def epoch_batches(
        num_samples: int,
        batch_size: int,
        epoch: int,
        seed: int = 0,
        world_size: int = 1,
        rank: int = 0,
        start: int = 0,
        drop_last: bool = True,
        shuffle: bool = True,
        repeats: int = 1,
        groups: Optional[Sequence[int]] = None,
) -> List[List[int]]:
    """This rank's batches of one epoch, from batch ``start`` on.

    Args:
        num_samples: Dataset length.
        batch_size: Samples per batch per rank.
        epoch: Epoch index; with ``seed`` it fixes the permutation.
        seed: Run seed.
        world_size: Number of ranks.
        rank: This rank.
        start: First batch to return (a run resumed in the middle of an epoch).
        drop_last: Leave out the samples that do not fill a last global batch; otherwise the permutation is
            topped up from its start so every batch is full.
        shuffle: Permute (training) or keep the dataset order.
        repeats: Repeated augmentation (DeiT): each drawn sample appears this many times in a row, spread over
            ranks, and an epoch still holds about ``num_samples`` samples per step count.
        groups: The group of each sample (``num_samples`` ints), or None. A batch is taken from one group: this
            rank's samples fill their group's batch in permutation order and a batch is emitted when it is full;
            what is left of the groups at the end is batched in the same order, mixed. The rank still trains on
            the same samples, in as many batches.
    """
    if groups is not None and len(groups) != num_samples:
        raise ValueError(f'groups has {len(groups)} entries for {num_samples} samples')
    n_steps = steps_per_epoch(num_samples, batch_size, world_size, drop_last)
    if shuffle:
        generator = torch.Generator().manual_seed(derive_seed(seed, 'order', epoch))
        order = torch.randperm(num_samples, generator=generator).tolist()
    else:
        order = list(range(num_samples))
    if repeats > 1:
        order = [i for i in order for _ in range(repeats)]
    need = n_steps * batch_size * world_size
    while len(order) < need:  # fewer samples than the batches need: top up from the start
        order += order[:need - len(order)]
    mine = order[rank:need:world_size]
    if groups is None:
        return [mine[b * batch_size:(b + 1) * batch_size] for b in range(start, n_steps)]
    return _grouped(mine, groups, batch_size)[start:]


def _grouped(samples: List[int], groups: Sequence[int], batch_size: int) -> List[List[int]]:
    """``samples`` in batches of one group each, in the order each batch fills; the groups' remainders last."""
    batches: List[List[int]] = []
    filling: Dict[int, List[int]] = {}  # group -> positions in ``samples`` of its batch being filled
    for pos, i in enumerate(samples):
        batch = filling.setdefault(groups[i], [])
        batch.append(pos)
        if len(batch) == batch_size:
            batches.append([samples[p] for p in batch])
            filling[groups[i]] = []
    rest = [samples[p] for p in sorted(p for batch in filling.values() for p in batch)]
    return batches + [rest[b:b + batch_size] for b in range(0, len(rest), batch_size)]
