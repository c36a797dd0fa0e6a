"""The synthetic city's four ambiguity sources and the per-panorama difficulty side file."""
import glob
import os

import numpy as np
import pytest

from utils.data import synthetic_vigor as sv
from utils.data.dataset import PANO_LABELS, load_vigor


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    return sv.generate(str(tmp_path_factory.mktemp("ambiguous") / "synthetic"), seed=4, cities=2, tiles_per_side=3,
                       pano_size=(64, 32), panos_per_tile=3.0, margin=128)


def test_difficulty_side_file_covers_every_panorama_in_index_order(city):
    train, test = load_vigor(city, same_area=True, train_cities=["NewYork", "Seattle"],
                             test_cities=["NewYork", "Seattle"])
    for index in (train, test):
        known = sv.read_difficulty(city, index.grd_paths)
        assert set(known) == set(sv.DIFFICULTY_COLUMNS[1:])
        assert all(len(v) == len(index.grd_paths) for v in known.values())
        sources = np.stack([known[name] for name in sv.SOURCES], axis=1)
        assert sources.min() >= 0.0 and sources.max() <= 1.0
        np.testing.assert_allclose(known["difficulty"], sources.mean(axis=1), atol=3e-4)
        assert known["difficulty"].std() > 0.05, "difficulty varies between panoramas"
        # low overlap grows with the distance to the positive tile's centre
        distance = np.linalg.norm(index.deltas[:, 0], axis=1)
        assert np.corrcoef(distance, known["low_overlap"])[0, 1] > 0.8
    for name in ("NewYork", "Seattle"):
        with open(os.path.join(city, "splits", name, PANO_LABELS)) as f:
            labelled = [line.split()[0] for line in f]
        with open(os.path.join(city, "splits", name, sv.DIFFICULTY_FILE)) as f:
            assert f.readline().split() == list(sv.DIFFICULTY_COLUMNS)
            assert [line.split()[0] for line in f] == labelled
    assert sv.read_difficulty(os.path.dirname(city), train.grd_paths) is None   # no side files: None


def test_every_source_is_present_and_varies(city):
    rows = sv.read_difficulty(city, sorted(glob.glob(os.path.join(city, "*", "panorama", "*.jpg"))))
    for name in sv.SOURCES:
        assert (rows[name] > 0.2).mean() > 0.15, name
    assert (rows["dynamic_foreground"] == 0).mean() > 0.2        # half of the panoramas have none
    assert rows["camera_height"].max() > sv.CAMERA_HEIGHT + 1.0
    assert np.abs(rows["heading_error_deg"]).max() > 3.0


def test_foreground_hides_the_share_it_reports():
    rng = np.random.default_rng(0)
    image = np.full((32, 64, 3), 7, np.uint8)
    hidden = sv.add_foreground(image, 0.4, rng)
    changed = np.any(image != 7, axis=2)
    assert hidden >= 0.4 and changed[32 // 3:].mean() == pytest.approx(hidden, abs=0.05)
    assert not changed[:8].any(), "nothing drawn in the sky's top quarter"
    untouched = np.full((32, 64, 3), 7, np.uint8)
    assert sv.add_foreground(untouched, 0.0, rng) == 0.0 and (untouched == 7).all()


def test_repeated_lots_copy_two_template_buildings():
    rng = np.random.default_rng(1)
    city = sv.build_city_map("NewYork", sv.STYLES["NewYork"], 400, 0.228, rng, (40.7, -74.0))
    assert city.repeated.any() and (city.kind[city.repeated] == sv.KIND_BUILDING).all()
    # without roof boxes, a repeated building has one of the two template heights
    heights = np.unique(np.round(city.height[city.repeated], 3))
    assert len(heights) <= 4
    assert len(np.unique(np.round(city.height[(city.kind == sv.KIND_BUILDING) & ~city.repeated], 3))) > len(heights)
