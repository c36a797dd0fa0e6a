"""utils.data.dataset: both splits, resolutions, and a DataError naming file and line for each bad input."""
import os
import shutil

import numpy as np
import pytest

from utils.data import synthetic_vigor as sv
from utils.data.dataset import (
    CORRECTED_MPP,
    PANO_LABELS,
    SAME_AREA_TEST,
    SAME_AREA_TRAIN,
    SAT_LIST,
    load_index_from_root,
    load_vigor,
)
from utils.data.geo import ORIGINAL_MPP
from utils.errors import DataError

SMALL = dict(seed=3, cities=4, tiles_per_side=4, pano_size=(64, 32), panos_per_tile=1.0, margin=128)
CITIES = ("NewYork", "Seattle", "SanFrancisco", "Chicago")


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return sv.ensure_synthetic(tmp_path_factory.getbasetemp() / "synthetic_small", **SMALL)


@pytest.fixture
def copy(synth, tmp_path):
    """A private copy of the split files; the images are shared through symlinks."""
    root = tmp_path / "vigor"
    shutil.copytree(os.path.join(synth, "splits"), root / "splits")
    for city in CITIES:
        (root / city).mkdir()
        for kind in ("satellite", "panorama"):
            os.symlink(os.path.join(synth, city, kind), root / city / kind)
    return root


def count_lines(root, city, name):
    return len(open(os.path.join(root, "splits", city, name)).read().splitlines())


def test_same_area_splits(synth):
    train, test = load_vigor(synth)
    assert train.cities == ("Chicago", "NewYork", "Seattle", "SanFrancisco")
    assert train.num_sat == test.num_sat == 64
    assert train.num_grd == sum(count_lines(synth, c, SAME_AREA_TRAIN) for c in CITIES)
    assert test.num_grd == sum(count_lines(synth, c, SAME_AREA_TEST) for c in CITIES)
    assert train.labels.shape == (train.num_grd, 4) and train.deltas.shape == (train.num_grd, 4, 2)
    assert train.labels.dtype == np.int64 and train.sat_gps.dtype == np.float64
    assert all(os.path.isabs(p) and os.path.exists(p) for p in train.grd_paths[:5])
    assert (train.sat_city[train.labels[:, 0]] == train.grd_city).all()
    assert np.allclose(train.meters_per_pixel, ORIGINAL_MPP)
    assert train.grd_source[0].endswith(f"{SAME_AREA_TRAIN}:1")


def test_cross_area_splits(synth):
    train, test = load_vigor(synth, same_area=False)
    assert set(train.grd_city) == {"NewYork", "Seattle"} and set(test.grd_city) == {"SanFrancisco", "Chicago"}
    assert train.num_sat == test.num_sat == 32
    assert train.num_grd == sum(count_lines(synth, c, PANO_LABELS) for c in ("NewYork", "Seattle"))


def test_resolutions(synth):
    train, _ = load_vigor(synth, resolution="corrected")
    for city, mpp in CORRECTED_MPP.items():
        assert np.allclose(train.meters_per_pixel[train.sat_city == city], mpp)
    train, _ = load_vigor(synth, resolution=0.2)
    assert np.allclose(train.meters_per_pixel, 0.2)
    train, _ = load_index_from_root(synth)                 # meters_per_pixel.json of the generator
    assert np.allclose(train.meters_per_pixel, 0.114) and len(train.cities) == 4
    with pytest.raises(DataError, match="not"):
        load_vigor(synth, resolution="corrected", train_cities=["Atlantis"], test_cities=["Atlantis"])


def edit_line(root, city, name, number, change):
    path = os.path.join(root, "splits", city, name)
    lines = open(path).read().splitlines()
    lines[number - 1] = change(lines[number - 1])
    open(path, "w").write("\n".join(lines) + "\n")
    return path


def field(line, i, value):
    parts = line.split(" ")
    parts[i] = value
    return " ".join(parts)


BAD_LINES = {
    "wrong number of fields": (lambda line: " ".join(line.split(" ")[:12]), "expected 13"),
    "non-numeric offset": (lambda line: field(line, 5, "abc"), "not a number"),
    "NaN offset": (lambda line: field(line, 3, "nan"), "not finite"),
    "unknown tile": (lambda line: field(line, 7, "satellite_1.0_2.0.png"), "not in the city's satellite_list.txt"),
    "bad panorama name": (lambda line: field(line, 0, "nocoordinates.jpg"), "GPS"),
}


@pytest.mark.parametrize("case", sorted(BAD_LINES))
def test_bad_label_line_names_file_and_line(copy, case):
    change, message = BAD_LINES[case]
    path = edit_line(copy, "Seattle", SAME_AREA_TRAIN, 2, change)
    with pytest.raises(DataError) as err:
        load_vigor(copy)
    text = str(err.value)
    assert path in text and "line 2" in text and message in text


def test_skip_mode_counts_and_prints_once(copy, capsys):
    first = edit_line(copy, "Seattle", SAME_AREA_TRAIN, 2, BAD_LINES["NaN offset"][0])
    second = edit_line(copy, "Chicago", SAME_AREA_TRAIN, 1, BAD_LINES["wrong number of fields"][0])
    expected = sum(count_lines(copy, c, SAME_AREA_TRAIN) for c in CITIES) - 2
    train, test = load_vigor(copy, on_bad_sample="skip")
    assert train.num_grd == expected and not test.skipped
    assert sorted((f, n) for f, n, _ in train.skipped) == sorted([(first, 2), (second, 1)])
    out = capsys.readouterr().out
    assert out.count("skipped 2 bad line") == 1


def test_bad_tile_list_line(copy):
    path = edit_line(copy, "NewYork", SAT_LIST, 3, lambda line: "satellite_north_east.png")
    with pytest.raises(DataError) as err:
        load_vigor(copy)
    assert path in str(err.value) and "line 3" in str(err.value)
    train, _ = load_vigor(copy, on_bad_sample="skip")   # the tile and the panoramas referencing it go
    assert any(f == path and n == 3 for f, n, _ in train.skipped)


def test_missing_split_file_says_where_and_what_to_read(copy):
    os.remove(os.path.join(copy, "splits", "Chicago", SAME_AREA_TEST))
    with pytest.raises(DataError) as err:
        load_vigor(copy)
    text = str(err.value)
    assert os.path.join("Chicago", SAME_AREA_TEST) in text and "data/DATASET.md" in text
    with pytest.raises(DataError, match="DATASET.md"):
        load_vigor(copy / "nowhere")
    shutil.rmtree(copy / "splits")
    with pytest.raises(DataError, match="splits"):
        load_vigor(copy)


def test_empty_split(copy):
    for city in CITIES:
        open(os.path.join(copy, "splits", city, SAME_AREA_TEST), "w").close()
    with pytest.raises(DataError, match="no usable panorama"):
        load_vigor(copy)


def test_missing_image_checked_eagerly(copy, synth):
    train, _ = load_vigor(copy)
    victim = train.grd_paths[4]
    city_dir = os.path.dirname(os.path.dirname(victim))
    pano_dir = os.path.join(city_dir, "panorama")
    os.remove(pano_dir)                                     # replace the symlink by a partial copy
    shutil.copytree(os.path.join(synth, os.path.basename(city_dir), "panorama"), pano_dir)
    os.remove(victim)
    with pytest.raises(DataError) as err:
        load_vigor(copy, check_images=True)
    assert victim in str(err.value) and train.grd_source[4] in str(err.value)
    skipped_train, _ = load_vigor(copy, check_images=True, on_bad_sample="skip")
    assert skipped_train.num_grd == train.num_grd - 1
    assert victim not in set(skipped_train.grd_paths)
