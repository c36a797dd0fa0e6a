"""utils.data.sampler: the original's batch rules, mining halves, exact resume, scanners."""
import numpy as np
import pytest

from utils.data import synthetic_vigor as sv
from utils.data.dataset import load_vigor
from utils.data.sampler import MiningPool, TrainSampler, steps_per_epoch
from utils.errors import DataError

SMALL = dict(seed=3, cities=4, tiles_per_side=4, pano_size=(64, 32), panos_per_tile=1.0, margin=128)


@pytest.fixture(scope="module")
def train(tmp_path_factory):
    root = sv.ensure_synthetic(tmp_path_factory.getbasetemp() / "synthetic_small", **SMALL)
    return load_vigor(root)[0]


def assert_no_shared_reference(index, batch):
    tiles = index.labels[batch.grd].ravel()
    assert len(set(tiles.tolist())) == len(tiles)


def ready_pool(index, keep=5, pool_size=40, seed=0):
    rng = np.random.default_rng(seed)
    pool = MiningPool(index.num_sat, index.num_grd, dim=8, pool_size=pool_size, keep=keep)
    pool.update(np.arange(index.num_grd), index.labels[:, 0], rng.normal(size=(index.num_grd, 8)),
                rng.normal(size=(index.num_grd, 8)))
    pool.sat_desc[:] = rng.normal(size=pool.sat_desc.shape)
    pool.refresh(rng)
    pool.ready = True
    return pool


def test_plain_batches_have_no_overlapping_references(train):
    sampler = TrainSampler(train, 6, with_semi=False, seed=1)
    for _ in range(30):
        batch = sampler.next_batch()
        assert len(batch) == 6 and batch.semi is None and batch.semi_choice is None
        assert_no_shared_reference(train, batch)
        assert (batch.sat == train.labels[batch.grd, 0]).all()
        assert np.array_equal(batch.delta, train.deltas[batch.grd, 0])


def test_semi_columns(train):
    sampler = TrainSampler(train, 5, with_semi=True, seed=2)
    seen = set()
    for _ in range(40):
        batch = sampler.next_batch()
        assert_no_shared_reference(train, batch)
        assert set(batch.semi_choice.tolist()) <= {1, 2, 3}
        seen.update(batch.semi_choice.tolist())
        assert (batch.semi == train.labels[batch.grd, batch.semi_choice]).all()
        assert np.array_equal(batch.delta_semi, train.deltas[batch.grd, batch.semi_choice])
    assert seen == {1, 2, 3}


def test_sampling_goes_through_covered_tiles(train):
    sampler = TrainSampler(train, 1, seed=3)
    counts = np.bincount([sampler.next_batch().sat[0] for _ in range(3000)], minlength=train.num_sat)
    covered = np.unique(train.labels[:, 0])
    assert set(np.flatnonzero(counts)) <= set(covered.tolist())
    # a random covered tile first: tiles are drawn about equally often, whatever their panorama count
    share = counts[covered] / counts.sum()
    assert share.min() > 0.3 / len(covered) and share.max() < 2.5 / len(covered)


def test_mining_pool_keeps_the_most_similar_tiles(train):
    pool = ready_pool(train, keep=5, pool_size=40)
    rng = np.random.default_rng(7)
    chosen = pool.refresh(rng)
    assert len(chosen) == 40 and len(set(chosen.tolist())) == 40
    product = pool.grd_desc.astype(np.float64) @ pool.sat_desc[chosen].T.astype(np.float64)
    expected = chosen[np.argsort(product, axis=1)[:, -5:]]
    assert np.array_equal(pool.kept, expected)                 # ascending, most similar last
    big = MiningPool(train.num_sat, train.num_grd, 8, pool_size=10 * train.num_sat, keep=3)
    assert sorted(big.refresh(0).tolist()) == list(range(train.num_sat))


def test_mining_second_half_comes_from_kept_tiles(train):
    pool = ready_pool(train, keep=4)
    sampler = TrainSampler(train, 6, with_semi=True, mining=pool, seed=4)
    mined_total = 0
    for _ in range(30):
        batch = sampler.next_batch()
        assert len(batch) == 6
        assert_no_shared_reference(train, batch)
        assert not batch.mined[:3].any()
        for b in range(3, 6):
            anchor = batch.grd[b - 3]
            if batch.mined[b]:
                mined_total += 1
                assert batch.sat[b] in set(pool.kept[anchor].tolist())
    assert mined_total > 30
    pool.ready = False
    assert not sampler.next_batch().mined.any()


def test_state_round_trip_gives_the_same_batches(train):
    pool = ready_pool(train)
    a = TrainSampler(train, 4, with_semi=True, mining=pool, seed=5)
    for _ in range(3):
        a.next_batch()
    state = {k: np.asarray(v) for k, v in a.state_dict().items()}      # as saved in an .npz
    pool_state = {k: np.array(v) for k, v in pool.state_dict().items()}
    expected = [a.next_batch() for _ in range(5)]
    pool2 = MiningPool(train.num_sat, train.num_grd, dim=8, pool_size=40, keep=5)
    pool2.load_state_dict(pool_state)
    b = TrainSampler(train, 4, with_semi=True, mining=pool2, seed=999)
    b.load_state_dict(state)
    for want in expected:
        got = b.next_batch()
        assert np.array_equal(got.grd, want.grd) and np.array_equal(got.semi_choice, want.semi_choice)
        assert np.array_equal(got.mined, want.mined)
    assert pool2.ready and np.array_equal(pool2.kept, pool.kept)


def test_epoch_length_is_the_original_break_iter(train):
    n = train.num_grd
    assert steps_per_epoch(n, 14) == int(n / 14)  # also where the continuous batch holds 10
    assert steps_per_epoch(n, 4) == int(n / 4) and steps_per_epoch(n, 4, configured=3) == 3
    with pytest.raises(ValueError, match="no full batch"):
        steps_per_epoch(n, n + 1)
    sampler = TrainSampler(train, 4, seed=1)
    assert len(list(sampler.epoch(int(n / 4)))) == int(n / 4)


def test_too_large_batches_fail_instead_of_hanging(train):
    sampler = TrainSampler(train, train.num_sat, max_tries=2000)
    with pytest.raises(DataError, match="batch size"):
        sampler.next_batch()


def test_exclude_and_replace(train):
    sampler = TrainSampler(train, 4, with_semi=True, seed=8)
    batch = sampler.next_batch()
    sampler.exclude(batch.grd[0])
    for _ in range(200):
        assert batch.grd[0] not in sampler.next_batch().grd.tolist()
    replaced = sampler.replace_sample(batch, 0)
    assert replaced.grd[0] != batch.grd[0] and np.array_equal(replaced.grd[1:], batch.grd[1:])
    assert_no_shared_reference(train, replaced)
