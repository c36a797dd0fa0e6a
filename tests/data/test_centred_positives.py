"""data.positives=centred: windows cut from a city's GeoTIFF centred on each panorama, the one-to-one
split they make, and the refusal without a raster (a stage that needs semi-positives refuses it:
tests/training/test_centred_stage.py)."""
import os
import shutil

import cv2
import numpy as np
import pytest

from utils.config import load_config
from utils.data import centred
from utils.data.splits import load_splits
from utils.data.synthetic_raster import city_crs
from utils.errors import ConfigError
from utils.evaluation.summaries import is_one_to_one

ORIGIN = (47.6062, -122.3321)
PIXEL_M = 0.5
SIDE = 200


def write_raster(path, image_bgr):
    """A north-up GeoTIFF of image_bgr in the synthetic cities' CRS, (0, 0) at its centre."""
    import rasterio
    from rasterio.transform import Affine
    height, width = image_bgr.shape[:2]
    transform = Affine(PIXEL_M, 0.0, -width / 2 * PIXEL_M, 0.0, -PIXEL_M, height / 2 * PIXEL_M)
    with rasterio.open(path, "w", driver="GTiff", height=height, width=width, count=3, dtype="uint8",
                       crs=city_crs(ORIGIN).to_wkt(), transform=transform) as dst:
        dst.write(np.moveaxis(image_bgr[..., ::-1], -1, 0))


def gps_of(raster, col, row):
    """GPS of continuous raster coordinates (pixel i spans [i, i + 1))."""
    x, y = raster.dataset.transform @ (col, row)
    lng, lat = raster.to_raster.transform(x, y, direction="INVERSE")
    return lat, lng


def centroid(window):
    """Intensity-weighted (row, col) of channel 0, in continuous window coordinates."""
    weight = window[..., 0].astype(np.float64)
    rows, cols = np.indices(weight.shape) + 0.5
    return (weight * rows).sum() / weight.sum(), (weight * cols).sum() / weight.sum()


def test_a_window_is_centred_on_the_planted_point_and_as_wide_as_asked(tmp_path):
    image = np.zeros((SIDE, SIDE, 3), np.uint8)
    image[120:122, 70:72] = 250                     # a 2 x 2 mark whose centre is the corner (row 121, col 71)
    path = str(tmp_path / "map.tif")
    write_raster(path, image)
    raster = centred.CityRaster(path)
    lat, lng = gps_of(raster, 71.0, 121.0)
    window = raster.cut(lat, lng, ground_width_m=32.0, size_px=64)       # 64 raster pixels: a plain copy
    assert window.shape == (64, 64, 3)
    assert (window[31:33, 31:33] == 250).all() and window.sum() == 4 * 250 * 3
    # a blob at a fractional position: the window's centroid is its centre (rounding of uint8 only)
    rows, cols = np.indices((SIDE, SIDE)) + 0.5
    blob = 250 * np.exp(-((rows - 83.37) ** 2 + (cols - 111.81) ** 2) / (2 * 3.0 ** 2))
    write_raster(path, np.repeat(np.round(blob)[..., None], 3, axis=2).astype(np.uint8))
    raster = centred.CityRaster(path)
    lat, lng = gps_of(raster, 111.81, 83.37)
    assert np.allclose(centroid(raster.cut(lat, lng, 32.0, 64)), (32.0, 32.0), atol=0.02)
    # ground width: two marks 20 m apart east-west are 40 window pixels apart at 0.5 m per window pixel,
    # and 20 apart when the window covers twice the ground at the same pixel count
    image = np.zeros((SIDE, SIDE, 3), np.uint8)
    image[100, 80] = image[100, 120] = 250
    write_raster(path, image)
    raster = centred.CityRaster(path)
    lat, lng = gps_of(raster, 100.5, 100.5)
    for width_m, apart in ((48.0, 40), (96.0, 20)):
        window = raster.cut(lat, lng, width_m, 96)[..., 0].astype(float)
        left, right = window[:, :48], window[:, 48:]
        col = [(w.sum(0) * (np.arange(w.shape[1]) + 0.5 + off)).sum() / w.sum() for w, off in ((left, 0), (right, 48))]
        assert col[1] - col[0] == pytest.approx(apart, abs=0.05)


def one_city(city, tmp_path):
    """A copy of the fixture's first city (its own root) to cut windows into."""
    name = sorted(d for d in os.listdir(os.path.join(city, "splits")))[0]
    root = tmp_path / "one_city"
    shutil.copytree(os.path.join(city, name), root / name)
    shutil.copytree(os.path.join(city, "splits", name), root / "splits" / name)
    shutil.copy(os.path.join(city, "meters_per_pixel.json"), root)
    return str(root), name


def config(root, *extra):
    name = os.listdir(os.path.join(root, "splits"))[0]
    return load_config("configs/demo.yaml", [f"data.root={root}", "data.dataset=vigor", "data.resolution=dataset",
                                             f"data.train_cities=[{name}]", f"data.test_cities=[{name}]",
                                             "data.use_cache=never", *extra])


def test_the_centred_split_is_one_to_one_and_each_window_is_its_positive_tile_shifted(city, tmp_path):
    root, name = one_city(city, tmp_path)
    regular_train, regular_test = load_splits(config(root), check_labels=False)
    train, test = load_splits(config(root, "data.positives=centred"), check_labels=False)
    for regular, index in ((regular_train, train), (regular_test, test)):
        assert list(index.grd_paths) == list(regular.grd_paths) and is_one_to_one(index.labels, index.num_sat)
        assert (index.labels == np.arange(len(index))[:, None]).all() and not index.deltas.any()
        assert all(p.startswith(os.path.join(root, name, centred.WINDOW_DIR)) for p in index.sat_paths)
    # window i is panorama i's VIGOR positive shifted by its offset (both are cut from the same raster)
    for i in range(0, len(train), 5):
        window = cv2.imread(train.sat_paths[i]).astype(np.float32)
        tile = cv2.imread(regular_train.sat_paths[regular_train.labels[i, 0]]).astype(np.float32)
        d0, d1 = regular_train.deltas[i, 0]
        shifted = cv2.warpAffine(tile, np.float32([[1, 0, -d1], [0, 1, d0]]), (640, 640),
                                 flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
        assert np.abs(window - shifted)[160:480, 160:480].mean() < 0.5 < np.abs(window - tile)[160:480, 160:480].mean()
    stamp = os.stat(train.sat_paths[0]).st_mtime_ns
    load_splits(config(root, "data.positives=centred"), check_labels=False)
    assert os.stat(train.sat_paths[0]).st_mtime_ns == stamp                     # cut once


def test_centred_refuses_a_city_without_a_raster(city, tmp_path):
    root, name = one_city(city, tmp_path)
    os.remove(os.path.join(root, name, "aerial_map.tif"))
    with pytest.raises(ConfigError, match=rf"{name}/aerial_map.tif does not exist.*data.positives=central"):
        load_splits(config(root, "data.positives=centred"), check_labels=False)
    assert not os.path.isdir(os.path.join(root, name, centred.WINDOW_DIR))
