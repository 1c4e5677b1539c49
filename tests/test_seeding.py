"""Independent seeds: every stream derived from (seed, purpose, keys), none shared between seeds."""
import pytest

from stepsnet.data.sampler import epoch_batches
from stepsnet.utils.seeding import derive_seed


def _order(seed, epoch, n=64):
    return [i for b in epoch_batches(n, 8, epoch, seed=seed) for i in b]


def test_neighbouring_seeds_share_no_epoch_order():
    # with seed + epoch, seed 1 in epoch e saw seed 0's order of epoch e + 1; no two (seed, epoch) coincide now
    orders = {(s, e): tuple(_order(s, e)) for s in range(4) for e in range(10)}
    assert len(set(orders.values())) == len(orders)
    assert _order(1, 3) != _order(0, 4) and _order(0, 0) != _order(1, 0)


def test_resume_reproduces_the_uninterrupted_order():
    full = [b for e in range(3) for b in epoch_batches(50, 4, e, seed=7)]
    spe = 50 // 4
    resumed = epoch_batches(50, 4, 1, seed=7, start=5) + epoch_batches(50, 4, 2, seed=7)
    assert resumed == full[spe + 5:]
    assert _order(7, 2) == _order(7, 2)  # a function of (seed, epoch) only


def test_derive_seed_separates_purposes_keys_and_signs():
    seeds = {derive_seed(s, p, *k) for s in (-1, 0, 1, 2) for p in ('order', 'augment')
             for k in [(), (0,), (1,), (0, 1), (1, 0)]}
    assert len(seeds) == 4 * 2 * 5
    assert all(0 <= x < 2 ** 63 for x in seeds)
    assert derive_seed(3, 'order', 5) == derive_seed(3, 'order', 5)
    with pytest.raises(ValueError, match='>= 0'):
        derive_seed(0, 'order', -1)


def test_ranks_of_one_epoch_partition_one_order():
    ranks = [epoch_batches(16, 2, 3, seed=1, world_size=2, rank=r) for r in (0, 1)]
    dealt = sorted(i for r in ranks for b in r for i in b)
    assert dealt == list(range(16))


def test_grouped_batches_hold_one_group_and_the_same_samples_resumable():
    groups = [int(i % 3 == 0) for i in range(50)]  # every third sample portrait, as the generated COCO images
    plain = epoch_batches(50, 4, 2, seed=5, drop_last=False)
    grouped = epoch_batches(50, 4, 2, seed=5, drop_last=False, groups=groups)
    assert len(grouped) == len(plain)
    assert sorted(i for b in grouped for i in b) == sorted(i for b in plain for i in b)
    mixed = [b for b in grouped if len({groups[i] for i in b}) > 1]
    assert all(b in grouped[-2:] for b in mixed)  # only the two groups' remainders, at the end
    assert any(len({groups[i] for i in b}) > 1 for b in plain)  # the plain order mixes them
    assert epoch_batches(50, 4, 2, seed=5, drop_last=False, groups=groups, start=3) == grouped[3:]
    for rank in (0, 1):  # each rank groups its own share of the order
        share = epoch_batches(50, 4, 2, seed=5, world_size=2, rank=rank, groups=groups)
        assert share and all(len({groups[i] for i in b}) == 1 for b in share[:-2])
    with pytest.raises(ValueError, match='groups has 3 entries for 50 samples'):
        epoch_batches(50, 4, 2, groups=[0, 1, 0])
