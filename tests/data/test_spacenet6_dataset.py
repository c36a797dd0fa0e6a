"""data.dataset spacenet6 | synthetic_spacenet6 (utils/data/splits.py): a tiny SpaceNet 6 tree split
by area, SAR tiles through the loader as the documented dB -> [0, 255] mapping, and a bad SAR raster
through the loader as one line naming the file."""
import os

import numpy as np
import pytest
import rasterio

from tests import paths
from utils.config import load_config
from utils.data import spacenet6 as sn6
from utils.data.prefetch import BGR_MEANS
from utils.data.splits import build_loader, load_splits
from utils.data.synthetic_spacenet6 import generate
from utils.errors import ConfigError, DataError

CONFIG = os.path.join(paths.REPO, "configs", "demo_spacenet6.yaml")
TILE = 32
SMALL = ["data.sat_size=[32,32]", "data.grd_size=[32,32]", "data.synthetic_spacenet6.tiles_per_side=2",
         f"data.synthetic_spacenet6.tile_px={TILE}", "data.spacenet6.test_fraction=0.25"]


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("sn6") / "tree", seed=1, tiles_per_side=2, tile_px=TILE, margin=16)


def _cfg(root, dataset="spacenet6", *extra):
    return load_config(CONFIG, SMALL + [f"data.dataset={dataset}", f"data.root={root}", *extra])


def test_the_tree_splits_by_area_and_the_sar_tiles_load_as_the_mapping_says(tree):
    train, test = load_splits(_cfg(tree))
    assert (len(train), len(test), test.num_sat) == (3, 1, 1)
    # the test tile is the eastmost; every query's positive is its own optical tile of the same number
    assert test.sat_gps[0, 1] >= train.sat_gps[:, 1].max() - 1e-9
    for index in (train, test):
        np.testing.assert_array_equal(index.labels[:, 0], np.arange(len(index)))
        for sar, optical in zip(index.grd_paths, index.sat_paths):
            assert os.path.basename(sar).replace(sn6.SAR_DIR, sn6.OPTICAL_DIR) == os.path.basename(optical)
    np.testing.assert_allclose(train.meters_per_pixel, 0.5 * TILE / 640)
    loader = build_loader(_cfg(tree, "spacenet6", "data.spacenet6.db_range=[-30.0, 5.0]"))
    with rasterio.open(test.grd_paths[0]) as raster:
        db = raster.read()
    expected = np.stack([db[0], (db[1] + db[2]) / 2, db[3]], axis=-1)
    expected = (np.clip(expected, -30.0, 5.0) + 30.0) * 255.0 / 35.0 - BGR_MEANS
    np.testing.assert_allclose(loader.load_grd(test.grd_paths[0]), expected, rtol=1e-5, atol=1e-3)
    with rasterio.open(test.sat_paths[0]) as raster:
        rgb = raster.read()
    np.testing.assert_allclose(loader.load_sat(test.sat_paths[0]), np.moveaxis(rgb[::-1], 0, -1) - BGR_MEANS)


def test_the_synthetic_set_is_generated_on_first_use(tmp_path):
    root = tmp_path / "generated"
    train, test = load_splits(_cfg(root, "synthetic_spacenet6"))
    assert len(train) + len(test) == 4 and os.path.isdir(root / "train" / "AOI_11_Rotterdam" / sn6.SAR_DIR)


def _rewrite(path, bands):
    with rasterio.open(path) as src:
        profile = dict(src.profile, count=bands.shape[0], dtype=str(bands.dtype))
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(bands)


def _one_line(load, path):
    with pytest.raises(DataError) as error:
        load(path)
    message = str(error.value)
    assert "\n" not in message and path in message
    return message


def test_a_bad_sar_raster_is_one_line_naming_it_at_the_loader(tree, tmp_path):
    import shutil
    copy = str(tmp_path / "copy")
    shutil.copytree(tree, copy)
    train, _ = load_splits(_cfg(copy))
    loader = build_loader(_cfg(copy))
    wrong_bands, amplitude = train.grd_paths[0], train.grd_paths[1]
    values = np.full((4, TILE, TILE), -12.0, np.float32)
    values[1, 3, 4] = 4000.0                           # an amplitude, not dB
    _rewrite(amplitude, values)
    load_splits(_cfg(copy))                            # the index reads headers only: the loader finds it
    assert "band 2 holds 4000.0 at row 3, column 4, outside [-100, 100] dB" in _one_line(loader.load_grd, amplitude)
    _rewrite(wrong_bands, np.zeros((3, TILE, TILE), np.float32))    # (the index refuses it too, by its header)
    assert "has 3 band(s) of float32; SpaceNet 6's SAR-Intensity has 4 float32 bands" in \
        _one_line(loader.load_grd, wrong_bands)
    with pytest.raises(ConfigError, match=r"data.spacenet6.db_range must be \[low, high\]"):
        build_loader(_cfg(copy, "spacenet6", "data.spacenet6.db_range=[10.0, -40.0]"))
