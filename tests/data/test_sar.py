"""The synthetic SAR's geometry on a single box (layover, shadow, double bounce), its speckle
statistics, SpaceNet 6's layout (the pairing index and its one-line errors) and the synthetic
SpaceNet 6 (determinism, co-registration)."""
import filecmp
import math
import os

import numpy as np
import pytest
import rasterio

from utils.data import spacenet6 as sn6
from utils.data import synthetic_sar as sar
from utils.data.synthetic_spacenet6 import generate
from utils.errors import DataError

MPP = 0.5
HEIGHT = 10.0
INCIDENCE = 35.0
NEAR, FAR = 60, 130                     # box columns [NEAR, FAR) with the sensor to the west
TAN = math.tan(math.radians(INCIDENCE))
LAYOVER_PX = HEIGHT / TAN / MPP         # 28.6
SHADOW_PX = HEIGHT * TAN / MPP          # 14.0


def _box_scene():
    height = np.zeros((24, 200))
    height[:, NEAR:FAR] = HEIGHT
    return height


def _first(mask):
    return int(np.flatnonzero(mask)[0])


def test_layover_shadow_and_double_bounce_of_a_box():
    image = sar.render_sar(_box_scene(), mpp=MPP, incidence_deg=INCIDENCE, sensor_side="west")
    row = image.intensity[0, 12]
    ground = 0.30 * math.cos(math.radians(INCIDENCE))
    assert np.allclose(row[:20], ground)
    # the wall top lands LAYOVER_PX in front of its foot: the first column brighter than ground
    assert abs(_first(row > ground * 1.05) - (NEAR - LAYOVER_PX)) <= 1.0
    # the double bounce at the foot of the near wall is the brightest line
    assert abs(int(np.argmax(row)) - NEAR) <= 1
    assert row[NEAR] > 10 * ground
    # radar shadow: SHADOW_PX of ground behind the far wall
    shadow = np.flatnonzero(image.shadow[12])
    assert shadow[0] == FAR and abs(len(shadow) - SHADOW_PX) <= 1.0
    # in the image: dark from the roof's far edge (laid over) to the end of the ground shadow
    dark = np.flatnonzero(row == 0)
    assert abs(dark[0] - (FAR - LAYOVER_PX)) <= 1.0 and abs(dark[-1] + 1 - (FAR + SHADOW_PX)) <= 1.0
    assert np.allclose(row[-20:], ground)
    # every row is the same scene
    assert np.allclose(image.intensity[:, 0], image.intensity[:, 12])


def test_look_direction_turns_the_geometry():
    west = sar.render_sar(_box_scene(), mpp=MPP, incidence_deg=INCIDENCE, sensor_side="west")
    north = sar.render_sar(_box_scene().T.copy(), mpp=MPP, incidence_deg=INCIDENCE, sensor_side="north")
    np.testing.assert_allclose(north.intensity, west.intensity.transpose(0, 2, 1))
    east = sar.render_sar(_box_scene()[:, ::-1].copy(), mpp=MPP, incidence_deg=INCIDENCE, sensor_side="east")
    np.testing.assert_allclose(east.intensity[:, :, ::-1], west.intensity)
    with pytest.raises(ValueError, match="sensor_side"):
        sar.render_sar(_box_scene(), sensor_side="up")


def test_bands_follow_the_polarisation_ratios():
    image = sar.render_sar(_box_scene(), mpp=MPP, incidence_deg=INCIDENCE, sensor_side="west")
    hh, hv, vh, vv = image.intensity[:, 12]
    np.testing.assert_array_equal(hv, vh)
    assert hv[NEAR] < 0.05 * hh[NEAR]                   # double bounce: co-polarised
    np.testing.assert_allclose(hv[:20], 0.1 * hh[:20])  # ground: weak cross-polarisation
    np.testing.assert_allclose(vv[:20], 1.3 * hh[:20])


@pytest.mark.parametrize("looks", [1, 4])
def test_speckle_has_mean_one_and_variance_one_over_looks(looks):
    n = 256 * 256
    flat = np.zeros((256, 256))
    image = sar.render_sar(flat, mpp=MPP, sensor_side="south")
    noisy = sar.observe(image.intensity, looks, np.random.default_rng(looks))
    ratio = (noisy / (image.intensity + sar.NOISE_FLOOR))[0].ravel()
    variance = 1.0 / looks
    mean_sd = math.sqrt(variance / n)
    variance_sd = variance * math.sqrt((2.0 + 6.0 / looks) / n)     # Gamma: excess kurtosis 6 / L
    assert abs(ratio.mean() - 1.0) < 5 * mean_sd
    assert abs(ratio.var() - variance) < 5 * variance_sd
    db = sar.to_db(noisy)
    assert db.dtype == np.float32 and db.min() >= sar.DB_MIN and db.max() <= sar.DB_MAX


# ---------------------------------------------------------------- SpaceNet 6's layout
@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("sn6")
    return generate(root / "a", seed=2, tiles_per_side=2, tile_px=48, margin=24)


def _aoi(root):
    return os.path.join(root, "train", "AOI_11_Rotterdam")


def test_synthetic_spacenet6_is_deterministic_and_pairs_by_tile(synthetic, tmp_path):
    again = generate(tmp_path / "b", seed=2, tiles_per_side=2, tile_px=48, margin=24)
    files = sorted(os.path.relpath(os.path.join(d, f), synthetic) for d, _, names in os.walk(synthetic) for f in names)
    assert len(files) == 2 * 4 + 2
    assert all(filecmp.cmp(os.path.join(synthetic, f), os.path.join(again, f), shallow=False) for f in files)
    index = sn6.load_spacenet6(_aoi(synthetic), images="values")
    assert len(index) == index.num_sat == 4
    for sar_path, optical_path in zip(index.grd_paths, index.sat_paths[index.labels[:, 0]]):
        assert os.path.basename(sar_path).replace("SAR-Intensity", "PS-RGB") == os.path.basename(optical_path)
        with rasterio.open(sar_path) as s, rasterio.open(optical_path) as o:
            assert (s.count, s.dtypes[0], o.count, o.dtypes[0]) == (4, "float32", 3, "uint8")
            assert s.bounds == o.bounds and s.crs == o.crs
            assert s.descriptions == sn6.SAR_BANDS
    np.testing.assert_allclose(index.grd_gps, index.sat_gps)
    assert np.allclose(index.meters_per_pixel, 0.5 * 48 / 640) and np.allclose(index.sat_gps[:, 0], 51.92, atol=0.01)
    with open(os.path.join(_aoi(synthetic), sn6.ORIENTATIONS)) as f:
        strip, code = f.read().split()
    assert code == "0" and strip in os.path.basename(index.grd_paths[0])


@pytest.fixture
def tree(synthetic, tmp_path):
    import shutil
    copy = str(tmp_path / "AOI_11_Rotterdam")
    shutil.copytree(_aoi(synthetic), copy)
    return copy


def _first_tile(tree, folder):
    return os.path.join(tree, folder, sorted(os.listdir(os.path.join(tree, folder)))[0])


def _rewrite(path, bands, dtype):
    with rasterio.open(path) as src:
        profile = dict(src.profile, count=bands.shape[0], dtype=dtype)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(bands.astype(dtype))


def _one_line_error(tree, *names, images="header"):
    with pytest.raises(DataError) as error:
        sn6.load_spacenet6(tree, images=images)
    message = str(error.value)
    assert "\n" not in message
    for name in names:
        assert name in message
    return message


def test_a_sar_tile_without_its_optical_pair(tree):
    optical = _first_tile(tree, sn6.OPTICAL_DIR)
    os.remove(optical)
    sar_path = optical.replace("PS-RGB", "SAR-Intensity")
    assert "has no PS-RGB tile" in _one_line_error(tree, sar_path)


def test_a_sar_raster_with_the_wrong_band_count(tree):
    path = _first_tile(tree, sn6.SAR_DIR)
    _rewrite(path, np.zeros((3, 48, 48)), "float32")
    assert "has 3 band(s) of float32" in _one_line_error(tree, path)


def test_sar_values_out_of_the_documented_range(tree):
    path = _first_tile(tree, sn6.SAR_DIR)
    bands = np.full((4, 48, 48), -12.0)
    bands[2, 5, 7] = 255.0
    _rewrite(path, bands, "float32")
    sn6.load_spacenet6(tree)                      # headers only: not seen
    message = _one_line_error(tree, path, images="values")
    assert "band 3 holds 255.0 at row 5, column 7" in message


def test_a_tile_name_without_a_number_and_misaligned_pairs(tree):
    path = _first_tile(tree, sn6.SAR_DIR)
    with rasterio.open(path) as src:
        profile = dict(src.profile)
        bands = src.read()
    shifted = profile["transform"] @ rasterio.Affine.translation(10, 0)
    with rasterio.open(path, "w", **dict(profile, transform=shifted)) as dst:
        dst.write(bands)
    assert "pair tiles of the same ground" in _one_line_error(tree, path)
    stray = os.path.join(tree, sn6.SAR_DIR, "SN6_Train_AOI_11_Rotterdam_SAR-Intensity_mosaic.tif")
    os.rename(path, stray)
    _one_line_error(tree, stray, "_tile_<n>.tif")
