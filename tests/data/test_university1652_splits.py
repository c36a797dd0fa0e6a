"""University-1652 through the project's SplitIndex: query-view images as "grd" rows, their
building's satellite image as the positive, building ids kept; batches never hold one building twice."""
import numpy as np
import pytest

from utils.config import load_config
from utils.data import synthetic_university1652 as su
from utils.data import university1652 as u
from utils.data.sampler import TrainSampler
from utils.data.splits import load_splits, load_university1652_tree
from utils.data.university1652_splits import building_classes, satellite_to_drone_index, split_indexes

TINY = dict(places=16, views=3, size=32, map_metres=400.0, meters_per_pixel=1.0, radius=60.0,
            satellite_metres=60.0, streets=1, spacing=20.0)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return su.generate(tmp_path_factory.mktemp("u1652") / "synthetic_university1652", seed=0, **TINY)


def _building_of(path):
    return path.split("/")[-2]


def test_drone_rows_point_at_their_buildings_satellite(tree):
    index = u.load_university1652(tree, images="none")
    train, test = split_indexes(index, "drone")
    assert list(train.grd_paths) == list(index.train["drone"].paths)
    assert list(test.grd_paths) == list(index.query["drone"].paths)
    assert list(test.sat_paths) == list(index.gallery["satellite"].paths)   # distractors included
    for split in (train, test):
        assert split.labels.shape == (split.num_grd, 4) and np.all(split.labels == split.labels[:, :1])
        assert np.all(split.deltas == 0)
        assert [_building_of(p) for p in split.grd_paths] == list(split.grd_building)
        assert [_building_of(p) for p in split.sat_paths] == list(split.sat_building)
        assert np.array_equal(split.sat_building[split.labels[:, 0]], split.grd_building)
        assert all(p.endswith(".jpeg") and "drone" in p for p in split.grd_paths)
    assert test.num_sat > len(np.unique(test.grd_building))
    classes = building_classes(train)
    assert sorted(classes) == list(range(train.num_sat)) and train.num_sat == len(index.train["satellite"])


def test_street_queries_and_the_config_route(tree):
    cfg = load_config(None, ["data.dataset=synthetic_university1652", f"data.root={tree}", "data.query_view=street"])
    train, test = load_splits(cfg)
    assert all("street" in p for p in np.concatenate([train.grd_paths, test.grd_paths]))
    assert np.array_equal(test.sat_building[test.labels[:, 0]], test.grd_building)


def test_satellite_to_drone_index_queries_first_then_the_whole_drone_gallery(tree):
    cfg = load_config(None, ["data.dataset=synthetic_university1652", f"data.root={tree}"])
    index = load_university1652_tree(cfg)
    reverse, queries = satellite_to_drone_index(index)
    assert queries == len(index.query["satellite"])
    assert list(reverse.sat_paths[:queries]) == list(index.query["satellite"].paths)
    assert list(reverse.grd_paths) == list(index.gallery["drone"].paths)
    assert np.array_equal(reverse.sat_building[reverse.labels[:, 0]], reverse.grd_building)
    assert len(set(reverse.sat_building)) == reverse.num_sat


def test_the_sampler_never_puts_one_building_twice_in_a_batch(tree):
    train, _ = split_indexes(u.load_university1652(tree, images="none"), "drone")
    buildings = len(np.unique(train.grd_building))
    assert train.num_grd > buildings          # several drone images per building: a repeat is possible
    for batch_size in (4, buildings):
        sampler = TrainSampler(train, batch_size, with_semi=False, seed=3)
        for _ in range(50):
            batch = sampler.next_batch()
            assert len(set(train.grd_building[batch.grd])) == batch_size
            assert np.array_equal(train.sat_building[batch.sat], train.grd_building[batch.grd])
