"""SliceMatch's corrected VIGOR labels as they ship them (real lines, tests/fixtures/slicematch),
in both layouts their README allows, and the dataset check's figures on them."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests import paths
from utils.config import load_config
from utils.data import check
from utils.data.dataset import CORRECTED_MPP, load_vigor
from utils.data.splits import load_splits
from utils.errors import DataError
from utils.metrics import Lat_Lng, gps2distance

FIXTURE = os.path.join(paths.FIXTURES, "slicematch", "VIGOR_corrected_labels",
                       "splits__corrected")
CITIES = ("Chicago", "NewYork", "Seattle")   # the cities whose label files the snapshot held
ALL_CITIES = CITIES + ("SanFrancisco",)      # San Francisco: its satellite_list.txt only
TEST_FILE = "same_area_balanced_test__corrected.txt"
TRAIN_FILE = "same_area_balanced_train__corrected.txt"
CROSS_FILE = "pano_label_balanced__corrected.txt"
SAT_LIST = "satellite_list.txt"


def shipped_lines(city, name):
    with open(os.path.join(FIXTURE, city, name)) as f:
        return [line.split(" ") for line in f.read().splitlines() if line.strip()]


@pytest.fixture
def side_by_side(tmp_path):
    """VIGOR's splits/ kept (its city folders, without files here) and SliceMatch's folder next to it."""
    root = tmp_path / "VIGOR"
    shutil.copytree(FIXTURE, root / "splits__corrected")
    for city in ALL_CITIES:
        (root / "splits" / city).mkdir(parents=True)
    return str(root)


@pytest.fixture
def renamed(tmp_path):
    """SliceMatch's folder renamed to splits, as their README says."""
    root = tmp_path / "VIGOR_renamed"
    shutil.copytree(FIXTURE, root / "splits")
    return str(root)


def load(root, **options):
    options.setdefault("labels", "corrected")
    return load_vigor(root, train_cities=CITIES, test_cities=CITIES, **options)


def test_both_layouts_read_the_shipped_files(side_by_side, renamed):
    train, test = load(side_by_side, resolution="corrected")
    train_b, test_b = load(renamed, resolution="corrected")
    for index, other, name in ((train, train_b, TRAIN_FILE), (test, test_b, TEST_FILE)):
        lines = [line for city in CITIES for line in shipped_lines(city, name)]
        assert index.num_grd == len(lines) == other.num_grd
        np.testing.assert_array_equal(index.deltas, other.deltas)
        assert [os.path.basename(p) for p in index.grd_paths] == [line[0] for line in lines]
        for row in (0, len(lines) - 1):
            line = lines[row]
            assert [os.path.basename(index.sat_paths[t]) for t in index.labels[row]] == line[1::3]
            np.testing.assert_array_equal(index.deltas[row].ravel(),
                                          [float(line[k]) for k in (2, 3, 5, 6, 8, 9, 11, 12)])
        assert "corrected labels" in index.name
    city = test.sat_city[test.labels[-1, 0]]
    assert test.meters_per_pixel[test.labels[-1, 0]] == CORRECTED_MPP[city]
    assert test.grd_source[0].endswith(os.path.join("splits__corrected", "Chicago", TEST_FILE) + ":1")


def write_cross_area_files(splits):
    """pano_label_balanced__corrected.txt per city in `splits`: the snapshot lacks SliceMatch's
    (tests/fixtures/slicematch/README.md), so each is built from the city's real same-area lines
    (train, then test); San Francisco's is empty (no label line of it was readable)."""
    for city in ALL_CITIES:
        folder = splits / city
        lines = [" ".join(line) for name in (TRAIN_FILE, TEST_FILE) if city in CITIES
                 for line in shipped_lines(city, name)]
        (folder / CROSS_FILE).write_text("".join(line + "\n" for line in lines))


@pytest.mark.parametrize("layout", ["side_by_side", "renamed"])
def test_every_shipped_file_type_reads_through_the_cross_area_config(layout, request):
    """satellite_list.txt of all four cities and pano_label_balanced__corrected.txt, through
    configs/vigor_cross_area_corrected.yaml with its own cities (train NewYork + Seattle, test
    San Francisco + Chicago)."""
    root = request.getfixturevalue(layout)
    write_cross_area_files(next(p for p in (Path(root) / "splits__corrected", Path(root) / "splits") if p.is_dir()))
    cfg = load_config("configs/vigor_cross_area_corrected.yaml", [f"data.root={root}"])
    train, test = load_splits(cfg, check_labels=False)
    for index, cities in ((train, ("NewYork", "Seattle")), (test, ("SanFrancisco", "Chicago"))):
        assert index.cities == cities and "cross-area" in index.name and "corrected labels" in index.name
        tiles = [line[0] for city in cities for line in shipped_lines(city, SAT_LIST)]
        assert [os.path.basename(p) for p in index.sat_paths] == tiles
        for row, tile in ((0, tiles[0]), (-1, tiles[-1])):
            lat, lng = (float(v) for v in tile[:-len(".png")].split("_")[1:3])
            assert tuple(index.sat_gps[row]) == (lat, lng)
            assert index.meters_per_pixel[row] == CORRECTED_MPP[str(index.sat_city[row])]
        lines = [line for city in cities if city != "SanFrancisco"
                 for name in (TRAIN_FILE, TEST_FILE) for line in shipped_lines(city, name)]
        assert [os.path.basename(p) for p in index.grd_paths] == [line[0] for line in lines]
        first = next(city for city in cities if city != "SanFrancisco")
        assert index.grd_source[0].endswith(os.path.join(first, CROSS_FILE) + ":1")
        np.testing.assert_array_equal(index.deltas[-1].ravel(), [float(lines[-1][k]) for k in (2, 3, 5, 6, 8, 9, 11, 12)])
    assert "SanFrancisco" in set(test.sat_city) and "SanFrancisco" not in set(test.grd_city)


def test_missing_files_name_both_layouts_and_the_source(tmp_path, side_by_side):
    only_vigor = tmp_path / "only_vigor"
    (only_vigor / "splits" / "Chicago").mkdir(parents=True)
    with pytest.raises(DataError, match=r"splits__corrected/<City>/.*renamed to splits.*tudelft-iv/SliceMatch"):
        load(str(only_vigor))
    # VIGOR's labels asked for where only SliceMatch's files are: the missing file is named
    with pytest.raises(DataError, match=r"splits/Chicago/satellite_list.txt not found"):
        load(side_by_side, labels="original")


def vigor_median(city, name, meters_per_pixel):
    """Median over every (line, reference) of the distance between the panorama's GPS and
    VIGOR's placement `tile - Lat_Lng(tile, 320 r) * delta / 320`, one line at a time."""
    errors = []
    for line in shipped_lines(city, name):
        lat, lng = (float(v) for v in line[0].split(",")[1:3])
        for k in range(4):
            tile_lat, tile_lng = (float(v) for v in line[1 + 3 * k][:-len(".png")].split("_")[1:3])
            d0, d1 = float(line[2 + 3 * k]), float(line[3 + 3 * k])
            span = Lat_Lng(tile_lat, tile_lng, [320 * meters_per_pixel, 320 * meters_per_pixel])
            errors.append(gps2distance(tile_lat - span[0] * d0 / 320, tile_lng - span[1] * d1 / 320, lat, lng))
    return float(np.median(errors))


def test_check_figures_equal_vigor_formulas_line_by_line(side_by_side):
    train, test = load(side_by_side, resolution="original")
    fits = {(f["split"], f["city"]): f for split, index in (("train", train), ("test", test))
            for f in check.city_fits(index, split)}
    for city in CITIES:
        fit = fits[("test", city)]
        assert fit["medians"]["original"] == pytest.approx(vigor_median(city, TEST_FILE, 0.114), abs=1e-6)
        assert fit["medians"]["corrected"] == pytest.approx(vigor_median(city, TEST_FILE, CORRECTED_MPP[city]),
                                                            abs=1e-6)
        assert fit["best"] == "corrected" and fit["configured_mpp"] == 0.114
        assert fit["fitted_mpp"] == pytest.approx(CORRECTED_MPP[city], abs=0.001)
    # Seattle's offsets at VIGOR's 0.114 are metres off: a warning that names the fix
    seattle = check.mismatch(fits[("test", "Seattle")])
    assert "data.resolution=corrected" in seattle and "Seattle" in seattle
    right = load(side_by_side, resolution="corrected")
    assert check.label_report(*right)[1] == []


CHECK_AS_RUN = """
import runpy, sys
sys.argv[0] = "tools/check_data.py"
try:
    runpy.run_module("tools.check_data", run_name="__main__", alter_sys=True)
except SystemExit as stop:
    print("exit", stop.code, "tensorflow loaded:", "tensorflow" in sys.modules)
"""


def run_check(*args):
    """`python -m tools.check_data ARGS` in its own process; (stdout, stderr)."""
    done = subprocess.run([sys.executable, "-c", CHECK_AS_RUN] + list(args), capture_output=True, text=True,
                          cwd=paths.REPO, timeout=120)
    return done.stdout, done.stderr


def test_the_dataset_check_on_the_real_excerpt_without_tensorflow(side_by_side):
    cities = f"[{', '.join(CITIES)}]"
    out, err = run_check("--config", "configs/vigor_same_area_corrected.yaml", "--set", f"data.root={side_by_side}",
                         "--set", f"data.train_cities={cities}", "--set", f"data.test_cities={cities}")
    assert out.strip().splitlines()[-1] == "exit 0 tensorflow loaded: False", (out, err)
    for split, name in (("train", TRAIN_FILE), ("test", TEST_FILE)):
        for city in CITIES:
            row = (f"| {split} | {city} | {len(shipped_lines(city, name))} | "
                   f"{vigor_median(city, name, CORRECTED_MPP[city]):.2f} | {vigor_median(city, name, 0.114):.2f} | "
                   f"{CORRECTED_MPP[city]:.6g} | {vigor_median(city, name, CORRECTED_MPP[city]):.2f} | corrected |")
            assert row in out, (row, out)
    assert "The configured resolution fits the labels." in out
    # cross-area, all four cities (San Francisco's tiles only), VIGOR's resolution: Seattle warns
    write_cross_area_files(Path(side_by_side) / "splits__corrected")
    out, err = run_check("--config", "configs/vigor_cross_area_corrected.yaml", "--set", f"data.root={side_by_side}",
                         "--set", "data.resolution=original")
    assert out.strip().splitlines()[-1] == "exit 1 tensorflow loaded: False", (out, err)
    assert "| train | Seattle |" in out and "| test | Chicago |" in out and "| test | SanFrancisco |" not in out
    assert "Warning: train Seattle: the configured resolution 0.114 m/px" in out
    out, err = run_check("--config", "configs/no_such_config.yaml")
    assert out.strip() == "exit 2 tensorflow loaded: False"
    assert err.strip().splitlines() == [f"error: config file not found: {os.path.abspath('configs/no_such_config.yaml')}"]


def test_loading_the_splits_warns_once(side_by_side, capsys):
    sets = [f"data.root={side_by_side}", "data.labels=corrected", f"data.train_cities={list(CITIES)}",
            f"data.test_cities={list(CITIES)}"]
    load_splits(load_config("configs/vigor_same_area.yaml", sets))
    load_splits(load_config("configs/vigor_same_area.yaml", sets))
    warned = capsys.readouterr().err
    assert warned.count("[dataset check] warning: test Seattle") == 1
    load_splits(load_config("configs/vigor_same_area_corrected.yaml", sets))
    assert "warning" not in capsys.readouterr().err


def test_image_check_finds_missing_empty_truncated_and_undecodable(tmp_path):
    good_png, good_jpg = str(tmp_path / "good.png"), str(tmp_path / "good.jpg")
    image = np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8)
    cv2.imwrite(good_png, image)
    cv2.imwrite(good_jpg, image)
    data = open(good_jpg, "rb").read()
    (tmp_path / "truncated.jpg").write_bytes(data[:len(data) * 2 // 3])
    (tmp_path / "truncated.png").write_bytes(open(good_png, "rb").read()[:-20])
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "garbage.png").write_bytes(b"not an image at all" * 10)
    names = ["good.png", "good.jpg", "truncated.jpg", "truncated.png", "empty.jpg", "garbage.png", "missing.jpg"]
    found = dict(check.image_problems([str(tmp_path / n) for n in names], workers=2, progress=False))
    assert {os.path.basename(p): r for p, r in found.items()} == {
        "truncated.jpg": "is truncated (no JPEG end marker)", "truncated.png": "is truncated (no PNG IEND chunk)",
        "empty.jpg": "is empty", "garbage.png": "cannot be decoded", "missing.jpg": "is missing"}


def test_shipped_files_train_and_evaluate_through_the_corrected_config(side_by_side, renamed, tmp_path):
    """One tiny E_1a stage on SliceMatch's folder next to VIGOR's splits/, then evaluate.py
    --checkpoint on their folder renamed to splits (the same images): both layouts, one run."""
    import evaluate
    import train_first_E_1
    from utils.training.stage import stage_dir
    from utils.training.trainer import run_stage
    # VIGOR's images are not redistributable: small stand-ins at the paths the real lines name
    train, test = load(side_by_side)
    rng = np.random.default_rng(0)
    for image_paths, shape in ((np.union1d(train.sat_paths, test.sat_paths), (64, 64, 3)),
                               (np.union1d(train.grd_paths, test.grd_paths), (32, 64, 3))):
        for path in image_paths:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            cv2.imwrite(path, rng.integers(0, 256, shape, dtype=np.uint8))
    for city in CITIES:
        os.symlink(os.path.join(side_by_side, city), os.path.join(renamed, city))
    sets = [f"data.root={side_by_side}", f"runs_dir={tmp_path / 'runs'}", f"data.train_cities={list(CITIES)}",
            f"data.test_cities={list(CITIES)}", "data.sat_size=[64, 64]", "data.grd_size=[32, 64]",
            "model.vgg16_npy=random", "model.vgg_width=0.125", "validation.scan_batch=32",
            "stages.E_1a.batch_size=2", "stages.E_1a.steps_per_epoch=1", "stages.E_1a.epochs=1"]
    cfg = load_config("configs/vigor_same_area_corrected.yaml", sets)
    record = run_stage(train_first_E_1.E_1a, cfg, show_progress=False)[-1]
    assert 0 <= record["top1"] <= record["top5"] <= 1
    # the config comes from the run folder (configs/vigor_same_area_corrected.yaml and the sets above)
    evaluate.main(["--checkpoint", os.path.join(stage_dir(cfg, "E_1a"), "1"), "--set", f"data.root={renamed}",
                   "--out", str(tmp_path / "eval")])
    import json
    with open(tmp_path / "eval" / "results.json") as f:
        results = json.load(f)
    assert results["num_queries"] == test.num_grd
    assert results["dataset"] == "VIGOR_renamed same-area test (corrected labels)"
    assert results["meters_per_pixel"] == {"min": CORRECTED_MPP["Seattle"], "max": CORRECTED_MPP["NewYork"]}
    assert results["retrieval"]["top1"] == pytest.approx(record["top1"])
    recorded = load_config(str(tmp_path / "eval" / "config.yaml"))
    assert (recorded.experiment, recorded.data.labels, recorded.data.root) == ("vigor_same_area_corrected", "corrected", renamed)
