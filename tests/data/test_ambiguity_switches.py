"""Each ambiguity source of the synthetic city can be switched off, and only that source goes."""
import filecmp
import glob
import os

import numpy as np
import pytest

from utils.config import load_config
from utils.data import synthetic_vigor as sv
from utils.data.dataset import SAT_LIST

TINY = dict(seed=4, cities=1, tiles_per_side=2, pano_size=(64, 32), panos_per_tile=4.0, margin=128)


@pytest.fixture(scope="module")
def make(tmp_path_factory):
    made = {}

    def city(**switches):
        key = tuple(sorted(switches.items()))
        if key not in made:
            path = tmp_path_factory.mktemp("switches") / "city"
            made[key] = sv.generate(str(path), ambiguity=sv.Ambiguity(**switches), **TINY)
        return made[key]
    return city


def files(root):
    return sorted(os.path.relpath(p, root) for p in glob.glob(os.path.join(root, "**", "*"), recursive=True)
                  if os.path.isfile(p) and not p.endswith(sv.MANIFEST))


def difficulty(root):
    rows = sv.read_difficulty(root, sorted(glob.glob(os.path.join(root, "*", "panorama", "*.jpg"))))
    names = [os.path.basename(p) for p in sorted(glob.glob(os.path.join(root, "*", "panorama", "*.jpg")))]
    return names, rows


def same(a, b, name):
    return filecmp.cmp(os.path.join(a, name), os.path.join(b, name), shallow=False)


def test_the_configs_defaults_and_every_switch_on_write_the_default_city_byte_for_byte(make):
    cfg = load_config(None)
    assert sv.Ambiguity(**cfg.data.synthetic.ambiguity) == sv.Ambiguity()
    default = make()
    explicit = make(heading_error=True, camera_rise=True, foreground=True, repeated_lots=True, full_overlap=False)
    assert files(default) == files(explicit) and len(files(default)) > 10
    assert all(same(default, explicit, name) for name in files(default))
    manifest = sv.read_manifest(default)
    assert "ambiguity" not in manifest["parameters"], "a default city's manifest is what it was before the switches"


@pytest.mark.parametrize("switch, column, expected", [
    ("heading_error", "heading_error_deg", 0.0),
    ("camera_rise", "camera_height", sv.CAMERA_HEIGHT),
    ("foreground", "foreground_share", 0.0),
])
def test_a_panorama_source_switched_off_is_gone_and_nothing_else_changes(make, switch, column, expected):
    default, off = make(), make(**{switch: False})
    assert sv.read_manifest(off)["parameters"]["ambiguity"] == {switch: False}
    names, before = difficulty(default)
    names_off, after = difficulty(off)
    assert names == names_off, "same points, same file names"
    assert np.all(after[column] == expected)
    had = before[column] != expected
    assert had.any() and (~had).any()
    for name in files(default):
        if "panorama" not in name:   # tiles, labels, splits, raster: unchanged
            assert same(default, off, name) or name.endswith(sv.DIFFICULTY_FILE), name
    pano_dir = os.path.join("NewYork", "panorama")
    identical = np.array([same(default, off, os.path.join(pano_dir, name)) for name in names])
    assert identical[~had].all(), "a panorama without the source renders exactly as before"
    assert not identical[had].all(), "one with it does not"


def test_foreground_off_draws_no_foreground_pixels(make):
    default, off = make(), make(foreground=False)
    names, before = difficulty(default)
    import cv2
    for name, share in zip(names, before["foreground_share"]):
        if share > 0.2:
            a = cv2.imread(os.path.join(default, "NewYork", "panorama", name)).astype(int)
            b = cv2.imread(os.path.join(off, "NewYork", "panorama", name)).astype(int)
            changed = np.abs(a - b).max(axis=2) > 40
            lower = changed[a.shape[0] // 3:].mean()
            assert lower > 0.5 * share, "the default's foreground is what the switch removed"
            assert not changed[: a.shape[0] // 4].any(), "nothing else changed (the sky's top quarter)"


def test_repeated_lots_off_leaves_no_aliasing(make):
    default, off = make(), make(repeated_lots=False)
    _, before = difficulty(default)
    _, after = difficulty(off)
    assert before["repeated_share"].max() > 0 and np.all(after["perceptual_aliasing"] == 0)
    tiles = open(os.path.join(off, "splits", "NewYork", SAT_LIST)).read().split()
    assert any(not same(default, off, os.path.join("NewYork", "satellite", t)) for t in tiles), \
        "the repeated buildings are now buildings of their own"


def test_full_overlap_hides_what_lies_off_the_positive_tile(make):
    default, full = make(), make(full_overlap=True)
    _, before = difficulty(default)
    _, after = difficulty(full)
    assert before["low_overlap"].max() > 0.2
    assert np.all(after["low_overlap"] == 0) and np.all(after["overlap"] == 1)
    assert sv.FULL_OVERLAP_PX + sv.QUARTER_LIMIT < sv.TILE / 2, "the visible disc always lies on the tile"
    rng = np.random.default_rng(0)
    city = sv.build_city_map("NewYork", sv.STYLES["NewYork"], 400, 0.228, rng, (40.7, -74.0))
    row, col = np.argwhere(city.road)[len(np.argwhere(city.road)) // 2] + 0.5
    near = sv.render_panorama(city, row, col, 64, 32, view_radius_m=sv.FULL_OVERLAP_PX * 0.114)
    far = sv.render_panorama(city, row, col, 64, 32)
    empty = sv.render_panorama(city, row, col, 64, 32, view_radius_m=0.01)   # sky and haze only
    near, far, empty = near.astype(int), far.astype(int), empty.astype(int)
    as_far = np.abs(near - far).max(axis=2) <= 2
    as_empty = np.abs(near - empty).max(axis=2) <= 2
    # each pixel of the limited view is what the full view sees (within the disc) or the empty world's
    # (rows whose supersamples straddle the disc's edge mix the two)
    assert (as_far | as_empty).mean() > 0.95
    assert (as_empty & ~as_far).mean() > 0.05, "what lies beyond the disc is hidden"
