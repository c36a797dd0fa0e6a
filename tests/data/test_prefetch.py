"""utils.data.prefetch: the threaded pipeline gives exactly the one-by-one arrays, in order; errors name files."""
import os
import shutil
import threading

import cv2
import numpy as np
import pytest

from utils.data import synthetic_vigor as sv
from utils.data.dataset import load_vigor
from utils.data.prefetch import ImageLoader, Prefetcher, scan_grd, scan_pairs, scan_sat
from utils.data.sampler import TrainSampler, make_batch
from utils.errors import DataError

SMALL = dict(seed=3, cities=4, tiles_per_side=4, pano_size=(64, 32), panos_per_tile=1.0, margin=128)
SAT, GRD = (32, 32), (32, 64)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return sv.ensure_synthetic(tmp_path_factory.getbasetemp() / "synthetic_small", **SMALL)


@pytest.fixture(scope="module")
def splits(root):
    return load_vigor(root)


def original_style(path, size):
    """The original get_by_idx preprocessing, one image at a time."""
    img = cv2.imread(path).astype(np.float32)
    img = cv2.resize(img, (size[1], size[0]), interpolation=cv2.INTER_AREA)
    img[:, :, 0] -= 103.939
    img[:, :, 1] -= 116.779
    img[:, :, 2] -= 123.6
    return img


def test_loader_matches_the_original_preprocessing(splits):
    train, _ = splits
    loader = ImageLoader(SAT, GRD)
    assert np.array_equal(loader.load_sat(train.sat_paths[0]), original_style(train.sat_paths[0], SAT))
    assert np.array_equal(loader.load_grd(train.grd_paths[0]), original_style(train.grd_paths[0], GRD))
    polar = ImageLoader((16, 64), GRD, polar=True).load_sat(train.sat_paths[0])
    assert polar.shape == (16, 64, 3) and polar.dtype == np.float32


def test_tile_cache_serves_the_same_bytes_within_its_memory_bound(splits, tmp_path):
    train, _ = splits
    tile_bytes = SAT[0] * SAT[1] * 3 * 4
    loader = ImageLoader(SAT, GRD, sat_cache_mb=3.5 * tile_bytes / 2 ** 20)   # room for 3 tiles
    first = [loader.load_sat(p).copy() for p in train.sat_paths[:5]]
    for path, image in zip(train.sat_paths[:5], first):
        assert np.array_equal(image, original_style(path, SAT))
    cache = loader._sat_cache
    assert list(cache._images) == [str(p) for p in train.sat_paths[2:5]]   # least recently used left first
    assert cache._bytes == 3 * tile_bytes <= cache.capacity
    # a cached tile is served from memory (the file is not read again), bit for bit
    moved = tmp_path / "tile.png"
    shutil.copy(train.sat_paths[4], moved)
    loader.load_sat(str(moved))
    os.remove(moved)
    assert np.array_equal(loader.load_sat(str(moved)), first[4])
    # 0 turns it off: every call reads the file
    uncached = ImageLoader(SAT, GRD, sat_cache_mb=0)
    shutil.copy(train.sat_paths[4], moved)
    uncached.load_sat(str(moved))
    os.remove(moved)
    with pytest.raises(DataError, match="is missing"):
        uncached.load_sat(str(moved))


def test_prefetcher_equals_one_by_one_in_order(splits):
    train, _ = splits
    loader = ImageLoader(SAT, GRD)
    batches = [b for b in TrainSampler(train, 4, with_semi=True, seed=1).epoch(5)]
    with Prefetcher(loader, train, iter(batches), workers=2, depth=2) as prefetch:
        items = list(prefetch)
    assert len(items) == len(batches)
    for item, batch in zip(items, batches):
        assert item["batch"] is batch
        assert np.array_equal(item["delta"], batch.delta) and np.array_equal(item["delta_semi"], batch.delta_semi)
        for b in range(len(batch)):
            assert np.array_equal(item["sat"][b], original_style(train.sat_paths[batch.sat[b]], SAT))
            assert np.array_equal(item["sat_semi"][b], original_style(train.sat_paths[batch.semi[b]], SAT))
            assert np.array_equal(item["grd"][b], original_style(train.grd_paths[batch.grd[b]], GRD))


def test_scans_cover_the_split_in_order(splits):
    _, test = splits
    loader = ImageLoader(SAT, GRD)
    sats = list(scan_sat(loader, test, 10))
    assert [len(s) for s in sats][:-1] == [10] * (len(sats) - 1) and sum(map(len, sats)) == test.num_sat
    stacked = np.concatenate(sats)
    for j in (0, 17, test.num_sat - 1):
        assert np.array_equal(stacked[j], original_style(test.sat_paths[j], SAT))
    grds = np.concatenate(list(scan_grd(loader, test, 7)))
    assert len(grds) == test.num_grd
    assert np.array_equal(grds[-1], original_style(test.grd_paths[-1], GRD))
    order = test.labels[:, 1]
    pairs = list(scan_pairs(loader, test, order, 6))
    assert all(isinstance(p, tuple) and len(p) == 2 for p in pairs)
    sat = np.concatenate([p[0] for p in pairs])
    grd = np.concatenate([p[1] for p in pairs])
    assert np.array_equal(sat[3], original_style(test.sat_paths[order[3]], SAT))
    assert np.array_equal(grd, grds)


def disjoint_partners(index, first, count=2):
    used, chosen = set(index.labels[first].tolist()), []
    for i in range(index.num_grd):
        if len(chosen) < count and used.isdisjoint(index.labels[i].tolist()):
            chosen.append(i)
            used.update(index.labels[i].tolist())
    return chosen


@pytest.fixture
def broken(root, tmp_path):
    """A copy of the dataset with one training panorama deleted; returns (train, its index)."""
    copy = tmp_path / "broken"
    shutil.copytree(root, copy)
    train, _ = load_vigor(copy)
    victim = 3
    os.remove(train.grd_paths[victim])
    return train, victim


def test_missing_image_error_names_file_and_split_line(broken):
    train, victim = broken
    loader = ImageLoader(SAT, GRD)
    sampler = TrainSampler(train, 3, seed=0)
    sampler.exclude(victim)
    good = [sampler.next_batch(), sampler.next_batch()]
    others = disjoint_partners(train, victim)
    bad = make_batch(train, [victim, *others])
    threads_before = threading.active_count()
    prefetch = Prefetcher(loader, train, iter([good[0], bad, good[1]]), workers=2, depth=3)
    next(prefetch)
    with pytest.raises(DataError) as err:
        next(prefetch)
    text = str(err.value)
    assert train.grd_paths[victim] in text and train.grd_source[victim] in text
    assert prefetch.closed
    assert threading.active_count() <= threads_before
    with pytest.raises(DataError, match=os.path.basename(train.grd_paths[victim])):
        list(scan_grd(loader, train, 8))


def test_skip_mode_replaces_the_bad_sample(broken, capsys):
    train, victim = broken
    loader = ImageLoader(SAT, GRD)
    sampler = TrainSampler(train, 3, seed=0)
    others = disjoint_partners(train, victim)
    bad = make_batch(train, [victim, *others])
    with Prefetcher(loader, train, iter([bad]), workers=2, on_bad_sample="skip", sampler=sampler) as prefetch:
        item = next(prefetch)
    batch = item["batch"]
    assert victim not in batch.grd.tolist() and batch.grd.tolist()[1:] == others
    assert victim in sampler.excluded
    assert np.array_equal(item["grd"][0], original_style(train.grd_paths[batch.grd[0]], GRD))
    assert len(set(train.labels[batch.grd].ravel().tolist())) == 12
    assert len(prefetch.skips.items) == 1
    out = capsys.readouterr().out
    assert out.count("skipped 1 unreadable") == 1
    grds = np.concatenate(list(scan_grd(loader, train, 8, on_bad_sample="skip")))
    assert len(grds) == train.num_grd and not grds[victim].any()
