"""The synthetic VIGOR city: determinism, file formats, label geometry, views that correspond."""
import filecmp
import json
import os

import cv2
import numpy as np
import pytest

from tests import paths
from utils.data import geo
from utils.data import synthetic_vigor as sv
from utils.data.dataset import (
    PANO_LABELS,
    SAME_AREA_TEST,
    SAME_AREA_TRAIN,
    SAT_LIST,
    load_vigor,
    parse_pano_name,
    parse_sat_name,
)

SMALL = dict(seed=3, cities=4, tiles_per_side=4, pano_size=(64, 32), panos_per_tile=1.0, margin=128)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return sv.ensure_synthetic(tmp_path_factory.getbasetemp() / "synthetic_small", **SMALL)


def tiny(path, seed):
    return sv.generate(path, seed=seed, cities=1, tiles_per_side=2, pano_size=(32, 16), panos_per_tile=1.0,
                       margin=64)


def test_same_seed_same_files_other_seed_differs(tmp_path):
    a, b, c = tiny(tmp_path / "a", 5), tiny(tmp_path / "b", 5), tiny(tmp_path / "c", 6)
    names_a = sorted(os.path.relpath(os.path.join(d, f), a) for d, _, fs in os.walk(a) for f in fs)
    names_b = sorted(os.path.relpath(os.path.join(d, f), b) for d, _, fs in os.walk(b) for f in fs)
    assert names_a == names_b
    for name in names_a:
        if name != sv.MANIFEST:   # holds the generation time
            assert filecmp.cmp(os.path.join(a, name), os.path.join(b, name), shallow=False), name
    assert (open(os.path.join(a, "splits", "NewYork", PANO_LABELS)).read()
            != open(os.path.join(c, "splits", "NewYork", PANO_LABELS)).read())


def test_ensure_synthetic_reuses_and_regenerates(tmp_path):
    root = tiny(tmp_path / "d", 1)
    manifest = os.path.join(root, sv.MANIFEST)
    stamp = os.path.getmtime(manifest)
    params = dict(seed=1, cities=1, tiles_per_side=2, pano_size=(32, 16), panos_per_tile=1.0, margin=64)
    assert sv.ensure_synthetic(root, **params) == root
    assert os.path.getmtime(manifest) == stamp
    sv.ensure_synthetic(root, **dict(params, seed=2))
    assert json.load(open(manifest))["parameters"]["seed"] == 2
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("not ours")
    with pytest.raises(FileExistsError):
        sv.generate(foreign, cities=1, tiles_per_side=2, pano_size=(32, 16), margin=64)
    assert (foreign / "keep.txt").exists()


def test_layout_and_formats(synth):
    for city in ("NewYork", "Seattle", "SanFrancisco", "Chicago"):
        split = os.path.join(synth, "splits", city)
        tiles = open(os.path.join(split, SAT_LIST)).read().split()
        assert sorted(tiles) == sorted(os.listdir(os.path.join(synth, city, "satellite")))
        assert len(tiles) == 16
        for tile in tiles[:2]:
            parse_sat_name(tile)
            image = cv2.imread(os.path.join(synth, city, "satellite", tile))
            assert image.shape == (640, 640, 3)
        everything = open(os.path.join(split, PANO_LABELS)).read().splitlines()
        train = open(os.path.join(split, SAME_AREA_TRAIN)).read().splitlines()
        test = open(os.path.join(split, SAME_AREA_TEST)).read().splitlines()
        assert sorted(train + test) == sorted(everything) and not set(train) & set(test)
        assert abs(len(train) - len(test)) <= 1
        for line in everything:
            fields = line.split(" ")
            assert len(fields) == 13
            assert all(fields[i] in tiles for i in (1, 4, 7, 10))
            [float(fields[i]) for i in (2, 3, 5, 6, 8, 9, 11, 12)]
            parse_pano_name(fields[0])
            assert fields[0].endswith(",.jpg")
        pano = cv2.imread(os.path.join(synth, city, "panorama", everything[0].split(" ")[0]))
        assert pano.shape == (32, 64, 3)
    resolutions = json.load(open(os.path.join(synth, "meters_per_pixel.json")))
    assert resolutions == {c: 0.114 for c in ("NewYork", "Seattle", "SanFrancisco", "Chicago")}


def test_label_geometry(synth):
    train, test = load_vigor(synth)
    for index in (train, test):
        tiles = index.sat_gps[index.labels]                                     # (N, 4, 2)
        lat, lng = geo.delta_to_gps(tiles[..., 0], tiles[..., 1], index.deltas, 0.114)
        error = geo.gps2distance(lat, lng, index.grd_gps[:, None, 0], index.grd_gps[:, None, 1])
        assert error.max() < 1.0
        positive = index.deltas[:, 0]
        assert np.abs(positive).max() <= 160.0
        semis = index.deltas[:, 1:]
        assert np.abs(semis).max() <= 320.0
        assert (np.abs(semis).max(axis=2) > 160.0).all()                     # not in their central quarter
        steps = np.abs(semis - positive[:, None, :]) / 320.0                  # one grid step apart
        assert np.abs(steps - np.round(steps)).max() < 1e-3
        for row in np.round(steps).astype(int).tolist():
            assert sorted(map(tuple, row)) == [(0, 1), (1, 0), (1, 1)]
        assert all(len(set(row)) == 4 for row in index.labels.tolist())


def test_vigor_gps_functions_match_reference_formula():
    lat, lng = 40.7, -74.0
    radius = 6371004.0
    span = 320 * 0.114
    expected_lng = np.degrees(np.arccos((np.cos(span / radius) - np.sin(np.radians(lat)) ** 2)
                                        / np.cos(np.radians(lat)) ** 2))
    assert np.allclose(geo.Lat_Lng(lat, lng), [np.degrees(span / radius), expected_lng], rtol=1e-9)
    assert np.allclose(geo.degrees_per_half_tile(np.array([lat, lat])), geo.Lat_Lng(lat, lng)[None, :])
    assert np.allclose(geo.gps2distance(lat, lng, lat + np.degrees(100 / radius), lng), 100.0, atol=0.2)
    p_lat, p_lng = geo.delta_to_gps(lat, lng, [100.0, -50.0])
    assert np.allclose(geo.gps_to_delta(lat, lng, p_lat, p_lng), [100.0, -50.0])
    assert np.allclose(geo.tile_centre_for_offset(p_lat, p_lng, [100.0, -50.0]), (lat, lng), atol=1e-12)


def flat_city(size=200, mpp=0.5):
    """A bare square of grey ground with one tall wall 10 m north of the centre."""
    color = np.full((size, size, 3), 100, np.uint8)
    height = np.zeros((size, size), np.float32)
    wall = np.zeros((size, size, 3), np.uint8)
    kind = np.zeros((size, size), np.uint8)
    c = size // 2
    north = slice(c - int(14 / mpp), c - int(10 / mpp))
    height[north, c - 10:c + 10] = 30.0
    wall[north, c - 10:c + 10] = (0, 0, 255)
    kind[north, c - 10:c + 10] = sv.KIND_BUILDING
    color[north, c - 10:c + 10] = (0, 0, 200)
    return sv.CityMap(name="t", style=sv.STYLES["NewYork"], mpp=mpp, color=color, height=height, wall=wall,
                      kind=kind, road=np.ones((size, size), bool), walk=np.zeros((size, size), bool),
                      mips=[cv2.resize(color, (size >> k, size >> k), interpolation=cv2.INTER_AREA) for k in (1, 2, 3)],
                      origin=(40.0, -74.0), rotation=(1.0, 0.0))


def test_panorama_is_north_aligned_with_north_at_the_centre_column():
    city = flat_city()
    pano = render_at_centre(city)
    h, w = pano.shape[:2]
    above_horizon = slice(h // 8, h // 2 - 2)
    centre = pano[above_horizon, w // 2 - 1:w // 2 + 1].astype(int)          # north: the red wall
    south = pano[above_horizon, :2].astype(int)                               # south: sky
    assert (centre[..., 2] - centre[..., 0] > 60).mean() > 0.5
    assert (south[..., 2] - south[..., 0] < 0).all()
    bottom = pano[-3:].reshape(-1, 3).mean(axis=0)                            # straight down: the ground
    assert np.allclose(bottom, 100, atol=6)


def render_at_centre(city):
    return sv.render_panorama(city, city.shape[0] / 2, city.shape[1] / 2, width=128, height=64)


def test_views_correspond_near_points_look_alike(synth):
    rng = np.random.default_rng(0)
    city = sv.build_city_map("Chicago", sv.STYLES["Chicago"], 700, 0.228, rng, (41.8, -87.6))
    points = np.argwhere(city.road[150:550, 150:550] | city.walk[150:550, 150:550]) + 150
    a = points[rng.integers(len(points))].astype(float) + 0.5
    far_candidates = points[np.hypot(*(points - a).T) * city.mpp > 30]
    far = far_candidates[rng.integers(len(far_candidates))].astype(float) + 0.5

    def pano(p):
        return sv.render_panorama(city, p[0], p[1], width=128, height=64).astype(np.float32)

    base = pano(a)
    near = pano(a + [0.0, 0.4 / city.mpp])
    distant = pano(far)
    assert np.mean((base - near) ** 2) * 4 < np.mean((base - distant) ** 2)
    # the panorama looks straight down at the aerial colour under the camera
    r, c = int(a[0]), int(a[1])
    under = city.color[r - 2:r + 3, c - 2:c + 3].reshape(-1, 3).astype(np.float32).mean(axis=0)
    assert np.abs(base[-2:].reshape(-1, 3).mean(axis=0) - under).max() < 25


def test_ctrl_c_while_demo_draws_the_city_leaves_nothing_half_written(tmp_path):
    """A real SIGINT to a real `python demo.py` while its threads draw the cities: exit 130, no
    traceback, neither the dataset nor its temporary folder left behind."""
    import glob
    import signal
    import subprocess
    import sys
    import time

    repo = paths.REPO
    root = tmp_path / "city"

    def as_from_a_terminal():   # pytest hands its children an ignored SIGINT
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT])

    child = subprocess.Popen([sys.executable, "demo.py", "--set", f"data.root={root}",
                              "--set", f"runs_dir={tmp_path / 'runs'}"], cwd=repo,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"), preexec_fn=as_from_a_terminal)
    deadline = time.time() + 120
    while not glob.glob(f"{root}.partial-*/*/panorama/*.jpg") and time.time() < deadline and child.poll() is None:
        time.sleep(0.1)
    assert child.poll() is None and glob.glob(f"{root}.partial-*"), "the city was not being drawn"
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=120)
    assert child.returncode == 130, err[-2000:]
    assert "Traceback" not in err, err[-2000:]
    assert not os.path.exists(root) and not glob.glob(f"{root}.partial-*") and not glob.glob(f"{root}.old-*")
