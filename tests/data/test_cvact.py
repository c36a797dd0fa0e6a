"""CVACT: the tiny CVACT-format generator, Samples_on_CVACT.py, and training on its output."""
import os
import re

import numpy as np
import pytest

import Samples_on_CVACT
from utils.data import geo
from utils.data.cvact import AERIAL_SIDE, crop_offset_640, locate_cvact, read_act_mat, sample_crops, utm_to_gps
from utils.data.dataset import load_index_from_root, load_vigor
from utils.data.prefetch import ImageLoader, Prefetcher
from utils.data.sampler import TrainSampler
from utils.data.synthetic_cvact import make_tiny_cvact

CENTER_LINE = re.compile(r"^(?P<base>.+)_sampled_(?P<k>[0-3])\.jpg: \((?P<x>\d+\.0), (?P<y>\d+\.0)\)$")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cvact")
    ids = make_tiny_cvact(folder, n=6, seed=2)
    return folder, ids


@pytest.fixture(scope="module")
def resampled(tiny, tmp_path_factory):
    folder, _ = tiny
    out = tmp_path_factory.mktemp("cvact_out") / "tree"
    assert Samples_on_CVACT.main(["--cvact", str(folder), "--out", str(out), "--seed", "4"]) == 0
    return out


def test_tiny_cvact_has_the_real_layout(tiny):
    folder, ids = tiny
    mat, sat_dir, grd_dir = locate_cvact(folder)
    act = read_act_mat(mat)
    assert act["pano_ids"] == ids
    assert act["utm"].shape == (6, 2) and 600000 < act["utm"][0, 0] < 800000 and act["utm"][0, 1] > 6e6
    assert sorted(np.concatenate([act["train"], act["val"]]).tolist()) == list(range(6))
    import cv2
    assert cv2.imread(os.path.join(sat_dir, f"{ids[0]}_satView_polish.jpg")).shape == (AERIAL_SIDE, AERIAL_SIDE, 3)
    assert os.path.exists(os.path.join(grd_dir, f"{ids[0]}_grdView.jpg"))
    lat, lng = utm_to_gps(act["utm"])[0]
    assert -36 < lat < -35 and 149 < lng < 150


def test_utm_round_trip():
    lat = np.array([-35.3, -35.25, 40.7])
    lng = np.array([149.1, 149.2, -74.0])
    for a, b in zip(lat, lng):
        e, n, zone, south = geo.latlon_to_utm(a, b)
        back = geo.utm_to_latlon(e, n, zone, south)
        assert np.allclose(back, (a, b), atol=1e-8)
    assert np.allclose(geo.latlon_to_utm(0.0, 3.0)[:2], (500000.0, 0.0))


def test_utm_is_wgs84_transverse_mercator():
    # on the equator, 0.01 degrees east of zone 31's central meridian: x = k0 * a * dlambda (A^3 terms < 1 um)
    easting, northing, zone, south = geo.latlon_to_utm(0.0, 3.01)
    assert (zone, south) == (31, False) and float(northing) == pytest.approx(0.0, abs=1e-6)
    assert float(easting) - 500000.0 == pytest.approx(0.9996 * 6378137.0 * np.radians(0.01), abs=1e-3)
    assert geo.latlon_to_utm(-35.3, 149.1)[2:] == (55, True)   # Canberra: CVACT's zone


def test_crop_scheme_is_the_originals():
    rng = np.random.RandomState(11)
    starts, centers = sample_crops(rng)
    replay = np.random.RandomState(11)
    x, y = replay.randint(150, 450), replay.randint(150, 450)
    assert starts[0] == (x, y) and centers[0] == (600.0 - x, 600.0 - y)
    for (x0, y0), (cx, cy) in zip(starts[1:], centers[1:]):
        assert x0 < 150 or x0 > 450 or y0 < 150 or y0 > 450
        assert 0 < cx <= 600 and 0 < cy <= 600
    assert np.allclose(crop_offset_640((300.0, 300.0)), [0, 0])
    assert np.allclose(crop_offset_640((450.0, 150.0)), [-160.0, -160.0])


def test_centers_txt_format_and_quarters(resampled, tiny):
    _, ids = tiny
    lines = open(resampled / "sampled_CVACT_dataset" / "centers.txt").read().splitlines()
    assert len(lines) == 4 * len(ids)
    for n, line in enumerate(lines):
        m = CENTER_LINE.match(line)
        assert m, line
        assert m["base"] == f"{ids[n // 4]}_satView_polish" and int(m["k"]) == n % 4
        offset = np.abs(np.array([float(m["x"]), float(m["y"])]) - 300.0)
        if n % 4 == 0:
            assert offset.max() <= 150.0                          # camera inside the central quarter
        else:
            assert offset.max() > 150.0


def test_resampled_tree_loads_and_trains(resampled):
    train, test = load_index_from_root(resampled)
    assert train.num_grd + test.num_grd == 6 and train.num_sat == 24
    same, _ = load_vigor(resampled, resolution="auto")        # what a config with dataset: cvact does
    assert same.cities == ("CVACT",) and np.array_equal(same.labels, train.labels)
    assert np.allclose(train.meters_per_pixel, 0.12 * 600 / 640)
    assert np.abs(train.deltas[:, 0]).max() <= 160.0 and (np.abs(train.deltas[:, 1:]).max(axis=2) > 159).all()
    for index in (train, test):
        tiles = index.sat_gps[index.labels]
        lat, lng = geo.delta_to_gps(tiles[..., 0], tiles[..., 1], index.deltas, index.meters_per_pixel[index.labels])
        assert geo.gps2distance(lat, lng, index.grd_gps[:, None, 0], index.grd_gps[:, None, 1]).max() < 1.0
    sampler = TrainSampler(train, 2, with_semi=True, seed=0)
    loader = ImageLoader((32, 32), (32, 64))
    with Prefetcher(loader, train, sampler.epoch(2)) as prefetch:
        items = list(prefetch)
    assert len(items) == 2 and items[0]["sat_semi"].shape == (2, 32, 32, 3)
    assert np.isfinite(items[0]["grd"]).all()
