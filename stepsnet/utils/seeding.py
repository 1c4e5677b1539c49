"""Every random stream of a run derived from its seed, one way: :func:`derive_seed`.

A run draws from several streams: the order of each epoch's samples, its augmentations, its dropout, an LM's
batches. Each is seeded by ``derive_seed(seed, purpose, *keys)`` (keys such as the epoch, the step, the rank), which
hashes all of them together through :class:`numpy.random.SeedSequence`. Two runs of different seeds therefore share
no stream: seed ``s + 1`` in epoch ``e`` does not see seed ``s``'s order of epoch ``e + 1``, as it would with a sum
such as ``seed + epoch``. Paired tests over seeds assume the seeds are independent draws; this is what makes them so.
A stream depends only on its seed and keys, so a run resumed at step ``k`` draws exactly what an uninterrupted run
draws from step ``k`` on.
"""
from __future__ import annotations

import zlib

import numpy as np

__all__ = ['derive_seed', 'SEED_BITS']

SEED_BITS = 63  # what torch.Generator.manual_seed and friends take without wrapping


def derive_seed(seed: int, purpose: str, *keys: int) -> int:
    """A 63-bit seed for the stream ``purpose`` of run ``seed`` at ``keys`` (e.g. epoch, rank).

    Args:
        seed: The run's seed (any integer; negative seeds are allowed and distinct from their absolute values).
        purpose: Names the stream (``'order'``, ``'augment'``, ``'dropout'``, ``'batch'``, ...): two purposes with
            the same keys give unrelated seeds.
        keys: Non-negative integers that index the draw within the stream.

    Returns:
        An integer in ``[0, 2**63)``.

    Raises:
        ValueError: A key is negative.
    """
    if any(int(k) < 0 for k in keys):
        raise ValueError(f'derive_seed keys must be >= 0, got {keys}')
    seed = int(seed)
    # SeedSequence takes non-negative entropy: the sign becomes a word of its own
    words = [abs(seed), int(seed < 0), zlib.crc32(purpose.encode()), len(keys), *map(int, keys)]
    state = np.random.SeedSequence(words).generate_state(2, np.uint32)
    return ((int(state[0]) << 32) | int(state[1])) >> (64 - SEED_BITS)
