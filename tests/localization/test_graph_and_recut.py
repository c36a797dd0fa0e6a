"""The graph predictor recovers a planted wrong top-1; windows re-cut from a sparse database's
raster are its pixels at half-tile steps, and a Localizer finds a panorama between stored tiles
in one of them."""
from dataclasses import replace

import cv2
import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from utils.config import load_config
from utils.errors import DataError
from utils.localization import fusion
from utils.localization.database import build_database, load_database
from utils.localization.graph_predictor import agreement, graph_weights
from utils.localization.index import TileIndex
from utils.localization.query import Localizer, Settings
from utils.localization.recut import WindowCutter

WIDTH = 40.0


def planted_wrong_top1():
    """Tile 0 (weight 0.55) stands alone and predicts (200, 0); tiles 1-3 overlap each other (half
    a tile apart) and predict the same ground point (10, 10) within a metre, 0.15 each."""
    centres = np.array([[200.0, 0.0], [0.0, 0.0], [20.0, 0.0], [0.0, 20.0]])
    means = np.array([[200.0, 0.0], [10.0, 10.0], [10.5, 10.0], [10.0, 9.5]])
    covs = np.repeat((5.0 ** 2 * np.eye(2))[None], 4, axis=0)
    return centres, means, covs, np.array([0.55, 0.15, 0.15, 0.15])


def test_graph_predictor_recovers_a_planted_wrong_top1():
    centres, means, covs, weights = planted_wrong_top1()
    plain = fusion.fuse(fusion.Mixture(means, covs, weights)).mean
    assert np.linalg.norm(plain - means[0]) < 1.0                     # fusion keeps the look-alike
    votes = agreement(means, covs, centres, np.full(4, WIDTH))
    assert np.all(votes[0] == 0) and np.all(votes[1:, 1:][~np.eye(3, dtype=bool)] > 0.1)
    graph = fusion.fuse(fusion.Mixture(means, covs, graph_weights(weights, votes, support=1.0))).mean
    assert np.linalg.norm(graph - np.array([10.2, 9.8])) < 1.0


def test_neighbours_that_disagree_give_no_support():
    centres, means, covs, weights = planted_wrong_top1()
    means[2:] = [[-15.0, 0.0], [10.0, 35.0]]                          # same footprints, other ground points
    votes = agreement(means, covs, centres, np.full(4, WIDTH))
    assert votes.max() < 1e-3
    np.testing.assert_allclose(graph_weights(weights, votes, 1.0), weights, atol=1e-3)


@pytest.fixture(scope="module")
def sparse_and_raster(tmp_path_factory):
    """A 320 x 448 px raster whose top-left 128 px are nodata, cut into 128-px tiles without overlap."""
    image = np.random.default_rng(5).integers(1, 255, (320, 448, 3), dtype=np.uint8)
    image[:128, :128] = 0
    folder = tmp_path_factory.mktemp("recut")
    profile = {"driver": "GTiff", "height": 320, "width": 448, "count": 3, "dtype": "uint8", "crs": "EPSG:32618",
               "transform": from_origin(583960.0, 4507530.0, 0.114, 0.114), "nodata": 0}
    with rasterio.open(folder / "map.tif", "w", **profile) as dst:
        dst.write(np.moveaxis(image, -1, 0))
    ground_mpp = 0.114 * 128 / 640      # at 640 px: the raster's own 0.114 m/px in 128-px tiles
    build_database(str(folder / "map.tif"), str(folder / "sparse"), ground_mpp, tile_px=128, stride_px=128,
                   progress=False)
    return load_database(str(folder / "sparse")), image, folder


def test_recut_windows_are_the_rasters_pixels_at_half_tile_steps(sparse_and_raster):
    db, image, _ = sparse_and_raster
    cutter = WindowCutter(db)
    origins = set(zip(cutter.windows.row_px.tolist(), cutter.windows.col_px.tolist()))
    assert origins == {(r, c) for r in (0, 64, 128, 192) for c in (0, 64, 128, 192, 256, 320)}
    centre = np.flatnonzero((db.row_px == 128) & (db.col_px == 128))
    windows = cutter.around(centre)
    assert {(int(cutter.windows.row_px[w]), int(cutter.windows.col_px[w])) for w in windows} == \
        {(r, c) for r in (64, 128, 192) for c in (64, 128, 192)}
    cutter.cut(windows)
    for w in windows:                 # row 192 reaches rows 256-319, which no stored tile holds
        r, c = int(cutter.windows.row_px[w]), int(cutter.windows.col_px[w])
        np.testing.assert_array_equal(cv2.imread(cutter.windows.tile_path(w)), image[r:r + 128, c:c + 128, ::-1])
        np.testing.assert_allclose(cutter.windows.delta_to_metric(w, np.zeros(2)), cutter.windows.centres[w])
    stored = cv2.imread(db.tile_path(centre[0]))
    np.testing.assert_array_equal(cv2.imread(cutter.windows.tile_path(cutter.lookup[(128, 128)])), stored)


def test_windows_need_the_raster(sparse_and_raster, tmp_path):
    db = replace(sparse_and_raster[0], info={**sparse_and_raster[0].info, "raster": str(tmp_path / "gone.tif")})
    with pytest.raises(DataError, match="gone.tif, which does not exist"):
        WindowCutter(db)


class PixelModel:
    """Descriptors from an image's 8 x 8 block means (a panorama is a raster crop here), so a
    panorama matches the window holding exactly its pixels; every offset is the tile's centre."""
    checkpoint, network = "/ckpt/pixels", "SAMP"

    def _descriptors(self, paths):
        blocks = np.array([cv2.imread(str(p)).astype(np.float64).reshape(8, 16, 8, 16, 3).mean(axis=(1, 3)).ravel()
                           for p in paths])
        blocks -= blocks.mean(axis=1, keepdims=True)
        return (blocks / np.linalg.norm(blocks, axis=1, keepdims=True)).astype(np.float32)

    def tile_descriptors(self, paths, progress=False):
        return self._descriptors(paths)

    def panorama_descriptors(self, paths, progress=False):
        return self._descriptors(paths)

    def tile_outputs(self, tile_paths, panorama_paths, keep_heatmaps=0, progress=False):
        return np.zeros((len(tile_paths), 2)), np.repeat(np.eye(2)[None], len(tile_paths), axis=0), None


def test_a_panorama_between_stored_tiles_is_found_in_a_recut_window(sparse_and_raster, tmp_path):
    db, image, _ = sparse_and_raster
    panorama = str(tmp_path / "between.png")
    cv2.imwrite(panorama, image[64:192, 192:320, ::-1])          # half a tile off every stored tile
    model = PixelModel()
    index = TileIndex(model.tile_descriptors([db.tile_path(i) for i in range(len(db))]), {"checkpoint": "x"})
    settings = replace(Settings.from_config(load_config()), top_k=3)
    plain = Localizer(model, db, index, settings)
    stored = plain.localize_all([panorama], progress=False)[0]
    recut = Localizer(model, db, index, replace(settings, recut_candidates=2))
    found = recut.localize_all([panorama], progress=False)[0]
    windows = recut.results_db
    assert (windows.row_px[found.tiles[0].tile], windows.col_px[found.tiles[0].tile]) == (64, 192)
    assert found.tiles[0].similarity > 0.999 > stored.tiles[0].similarity
    np.testing.assert_allclose(found.top1.mean, windows.centres[found.tiles[0].tile], atol=1e-6)
