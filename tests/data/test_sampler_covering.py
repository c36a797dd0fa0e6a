"""data.positives covering in utils.data.sampler: the positive drawn among the tiles holding the
panorama, with that tile's offset; central (the default) draws the original's batches."""
import os

import numpy as np
import pytest

from tests.data.test_sampler import SMALL, ready_pool
from utils.data import synthetic_vigor as sv
from utils.data.dataset import load_vigor
from utils.data.sampler import TrainSampler

# made by the sampler as it was before covering existed (commit 103b925) on the SMALL city:
# 12 batches each of plain (6, seed 1), semi (5, seed 2) and mined (4, seed 4) sampling, then a replace_sample
CENTRAL_BATCHES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "sampler_central_batches.npz")


@pytest.fixture(scope="module")
def train(tmp_path_factory):
    root = sv.ensure_synthetic(tmp_path_factory.getbasetemp() / "synthetic_small", **SMALL)
    return load_vigor(root)[0]


def test_central_draws_the_batches_it_drew_before_covering_existed(train):
    stored = np.load(CENTRAL_BATCHES)
    np.testing.assert_array_equal(train.labels, stored["labels"], err_msg="the SMALL city itself changed")
    runs = {"plain": dict(batch_size=6, with_semi=False, seed=1), "semi": dict(batch_size=5, with_semi=True, seed=2),
            "mined": dict(batch_size=4, with_semi=True, seed=4, mining=ready_pool(train))}
    for name, kwargs in runs.items():
        sampler = TrainSampler(train, **kwargs)
        batches = [sampler.next_batch() for _ in range(12)]
        assert all(b.positive_choice is None for b in batches)
        np.testing.assert_array_equal(np.stack([b.grd for b in batches]), stored[f"{name}_grd"], err_msg=name)
        np.testing.assert_array_equal(np.stack([b.delta for b in batches]), stored[f"{name}_delta"], err_msg=name)
        np.testing.assert_array_equal(np.stack([b.mined for b in batches]), stored[f"{name}_mined"], err_msg=name)
        if kwargs["with_semi"]:
            np.testing.assert_array_equal(np.stack([b.semi_choice for b in batches]), stored[f"{name}_semi_choice"])
        np.testing.assert_array_equal(sampler.replace_sample(batches[-1], 1).grd, stored[f"{name}_replaced_grd"])
    assert stored["mined_mined"].any()     # the mined half was exercised


@pytest.mark.parametrize("mining", [False, True])
def test_covering_draws_every_holding_tile_and_only_those(train, mining):
    sampler = TrainSampler(train, 4, with_semi=True, mining=ready_pool(train) if mining else None, seed=7,
                           covering=True)
    chosen = {}                       # panorama -> positive tiles drawn for it
    columns = np.zeros(4, int)
    for _ in range(600):
        batch = sampler.next_batch()
        rows = train.labels[batch.grd]
        assert (batch.sat == rows[np.arange(len(batch)), batch.positive_choice]).all()
        np.testing.assert_array_equal(batch.delta, train.deltas[batch.grd, batch.positive_choice])
        assert (batch.semi_choice != batch.positive_choice).all()     # the semi-positive: another holding tile
        assert (batch.semi == train.labels[batch.grd, batch.semi_choice]).all()
        np.testing.assert_array_equal(batch.delta_semi, train.deltas[batch.grd, batch.semi_choice])
        tiles = rows.ravel()
        assert len(set(tiles.tolist())) == len(tiles)                # the overlap rule still holds
        columns += np.bincount(batch.positive_choice, minlength=4)
        for g, s in zip(batch.grd.tolist(), batch.sat.tolist()):
            chosen.setdefault(g, set()).add(s)
    assert set(chosen) == set(range(train.num_grd))
    for g, tiles in chosen.items():
        assert tiles == set(train.labels[g].tolist()), g
    # each column about a quarter of the positives (mined rows favour the hard tile's column a little)
    assert (columns / columns.sum() > 0.15).all(), columns
    assert np.abs(train.deltas[:, 1:]).max() > 160 >= np.abs(train.deltas[:, 0]).max()  # offsets out to the edges


def test_covering_resumes_exactly_and_replaces_with_a_holding_tile(train):
    a = TrainSampler(train, 4, with_semi=True, seed=5, covering=True)
    a.next_batch()
    state = {k: np.asarray(v) for k, v in a.state_dict().items()}
    expected = [a.next_batch() for _ in range(4)]
    b = TrainSampler(train, 4, with_semi=True, seed=999, covering=True)
    b.load_state_dict(state)
    for want in expected:
        got = b.next_batch()
        for field in ("grd", "sat", "positive_choice", "semi_choice", "delta"):
            np.testing.assert_array_equal(getattr(got, field), getattr(want, field), err_msg=field)
    replaced = b.replace_sample(expected[0], 2)
    assert replaced.sat[2] == train.labels[replaced.grd[2], replaced.positive_choice[2]]
    assert replaced.semi_choice[2] != replaced.positive_choice[2]
    np.testing.assert_array_equal(replaced.positive_choice[[0, 1, 3]], expected[0].positive_choice[[0, 1, 3]])
