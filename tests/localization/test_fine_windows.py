"""Fine localization by window search: the soft-argmax and covariance against a direct loop, the
window grid cut from a real GeoTIFF, the per-checkpoint descriptor cache, and a Localizer with
localize.fine=windows putting a raster crop at its own centre; a second network for the windows
(localize.fine_checkpoint) and the window re-ranker (localize.rerank=windows)."""
import os
from dataclasses import replace

import cv2
import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from utils.config import load_config
from utils.errors import CheckpointError, ConfigError, DataError
from utils.localization.database import build_database, load_database
from utils.localization.fine_windows import (
    UNCERTAINTIES,
    FineWindows,
    best_inside,
    gaussian_product,
    window_estimate,
    window_uncertainty,
)
from utils.localization.index import TileIndex
from utils.localization.predict import open_fine_model
from utils.localization.query import Localizer, Settings
from utils.localization.rerank import window_rerank

STRIDE_M = 4.0


def grid_centres(n=17, stride=STRIDE_M):
    rows, cols = np.meshgrid(np.arange(n) * stride, np.arange(n) * stride, indexing="ij")
    return np.stack([cols.ravel() + 100.0, rows.ravel() - 50.0], axis=1)


def direct_estimate(similarities, centres, temperature, stride):
    """The same quantities written out as sums, one window at a time."""
    weights = [np.exp(s / temperature) for s in similarities]
    total = sum(weights)
    mean = [sum(w * c[k] for w, c in zip(weights, centres)) / total for k in (0, 1)]
    cov = [[sum(w * (c[i] - mean[i]) * (c[j] - mean[j]) for w, c in zip(weights, centres)) / total
            for j in (0, 1)] for i in (0, 1)]
    return np.array(mean), np.array(cov) + np.eye(2) * stride ** 2 / 12.0


def test_a_planted_peak_is_found_and_the_maths_equals_a_direct_loop():
    centres = grid_centres()
    rng = np.random.default_rng(0)
    similarities = rng.uniform(0.2, 0.5, len(centres))
    peak = 123
    similarities[peak] = 0.95
    mean, cov = window_estimate(similarities, centres, 0.005, STRIDE_M)
    np.testing.assert_allclose(mean, centres[peak], atol=1e-6)
    np.testing.assert_allclose(cov, np.eye(2) * STRIDE_M ** 2 / 12.0, atol=1e-6)   # only quantisation is left
    for temperature in (0.05, 0.2):
        expected = direct_estimate(similarities, centres, temperature, STRIDE_M)
        got = window_estimate(similarities, centres, temperature, STRIDE_M)
        np.testing.assert_allclose(got[0], expected[0], rtol=1e-10)
        np.testing.assert_allclose(got[1], expected[1], rtol=1e-9)
    assert not np.allclose(window_estimate(similarities, centres, 0.2, STRIDE_M)[0], centres[peak], atol=1.0)


def test_flat_similarities_give_the_windows_mean_and_spread_plus_quantisation():
    centres = grid_centres(n=5)
    mean, cov = window_estimate(np.full(len(centres), 0.3), centres, 0.02, (STRIDE_M, 2 * STRIDE_M))
    np.testing.assert_allclose(mean, centres.mean(0))
    spread = np.cov(centres.T, bias=True)        # 5 centres 4 m apart per axis: variance 32 m^2
    np.testing.assert_allclose(spread, np.eye(2) * 32.0)
    np.testing.assert_allclose(cov, spread + np.diag([STRIDE_M ** 2, 4 * STRIDE_M ** 2]) / 12.0, atol=1e-9)


def test_each_uncertainty_measure_equals_its_formula_on_a_hand_made_case():
    # five windows on a line 4 m apart (side 16 m: distinct from the best at >= 4 m); the best is at 8 m,
    # its neighbour at 4 m the second best overall, the window at 12 m the best distinct one after it
    centres = np.array([[0.0, 0.0], [4.0, 0.0], [8.0, 0.0], [12.0, 0.0], [16.0, 0.0]])
    similarities = np.array([0.1, 0.7, 0.9, 0.6, 0.2])
    temperature, stride, side = 0.1, 4.0, 16.0
    weights = np.exp(similarities / temperature) / np.exp(similarities / temperature).sum()
    mean = weights @ centres
    trace = weights @ ((centres - mean) ** 2).sum(axis=1) + 2 * stride ** 2 / 12.0
    expected = {"covariance": np.sqrt(trace), "entropy": -np.sum(weights * np.log(weights)),
                "best_weight": 1.0 - weights[2], "best_similarity": -0.9, "margin": -(0.9 - 0.7)}
    for measure in UNCERTAINTIES:
        got = window_uncertainty(measure, similarities, centres, temperature, stride, side)
        assert got == pytest.approx(expected[measure], rel=1e-12, abs=1e-12), measure
    # side 32 m: distinct at >= 8 m, the windows at 0 m (0.1) and 16 m (0.2); none at side 64 m
    assert window_uncertainty("margin", similarities, centres, temperature, stride, 32.0) == pytest.approx(-0.7)
    assert window_uncertainty("margin", similarities, centres, temperature, stride, 64.0) == 0.0
    # a sharper peak is less uncertain by every measure
    sharper = similarities * np.array([1, 1, 2, 1, 1])
    for measure in UNCERTAINTIES:
        assert window_uncertainty(measure, sharper, centres, temperature, stride, side) < \
            window_uncertainty(measure, similarities, centres, temperature, stride, side), measure
    with pytest.raises(ValueError, match="unknown window uncertainty"):
        window_uncertainty("variance", similarities, centres, temperature, stride, side)


def test_the_product_of_two_gaussians_is_the_precision_weighted_one():
    rng = np.random.default_rng(5)
    means_a, means_b = rng.normal(size=(6, 2)), rng.normal(size=(6, 2))
    roots_a, roots_b = rng.normal(size=(6, 2, 2)), rng.normal(size=(6, 2, 2))
    covs_a = roots_a @ roots_a.transpose(0, 2, 1) + 0.1 * np.eye(2)
    covs_b = roots_b @ roots_b.transpose(0, 2, 1) + 0.1 * np.eye(2)
    means, covs = gaussian_product(means_a, covs_a, means_b, covs_b)
    grid = np.stack(np.meshgrid(np.linspace(-6, 6, 601), np.linspace(-6, 6, 601), indexing="ij"), -1).reshape(-1, 2)
    for n in range(6):   # the product's density, up to a constant, is the sum of the two log densities
        log_density = sum(-0.5 * np.einsum("ki,ij,kj->k", grid - m, np.linalg.inv(c), grid - m)
                          for m, c in ((means_a[n], covs_a[n]), (means_b[n], covs_b[n])))
        np.testing.assert_allclose(grid[np.argmax(log_density)], means[n], atol=0.02)
        np.testing.assert_allclose(np.linalg.inv(covs[n]), np.linalg.inv(covs_a[n]) + np.linalg.inv(covs_b[n]),
                                   rtol=1e-9)
    same, halved = gaussian_product(means_a, covs_a, means_b, covs_a)   # equal covariances: the midpoint, half
    np.testing.assert_allclose(same, (means_a + means_b) / 2, atol=1e-12)
    np.testing.assert_allclose(halved, covs_a / 2, atol=1e-12)


# ---------------------------------------------------------------- windows on a GeoTIFF
@pytest.fixture(scope="module")
def raster_database(tmp_path_factory):
    """A 256 x 384 px raster (0.114 m/px, UTM 18N) cut into 128-px tiles without overlap."""
    rng = np.random.default_rng(11)
    image = cv2.resize(rng.integers(0, 255, (32, 48, 3), dtype=np.uint8), (384, 256), interpolation=cv2.INTER_LINEAR)
    folder = tmp_path_factory.mktemp("fine")
    profile = {"driver": "GTiff", "height": 256, "width": 384, "count": 3, "dtype": "uint8", "crs": "EPSG:32618",
               "transform": from_origin(583960.0, 4507530.0, 0.114, 0.114)}
    with rasterio.open(folder / "map.tif", "w", **profile) as dst:
        dst.write(np.moveaxis(image, -1, 0))
    build_database(str(folder / "map.tif"), str(folder / "db"), 0.114 * 128 / 640, tile_px=128, stride_px=128,
                   progress=False)
    return load_database(str(folder / "db")), image


class BlockModel:
    """Descriptors of an image's 8 x 8 block means (sign: which checkpoint), so a crop of the raster
    matches the window holding exactly its pixels."""

    def __init__(self, checkpoint, sign=1.0):
        self.checkpoint, self.network, self.sign, self.described = checkpoint, "SAMP", sign, 0

    def _descriptors(self, paths):
        images = [cv2.imread(str(p)).astype(np.float64) for p in paths]
        blocks = np.array([cv2.resize(i, (8, 8), interpolation=cv2.INTER_AREA).ravel() for i in images])
        blocks -= blocks.mean(axis=1, keepdims=True)
        return (self.sign * blocks / np.linalg.norm(blocks, axis=1, keepdims=True)).astype(np.float32)

    def tile_descriptors(self, paths, progress=False):
        self.described += len(paths)
        return self._descriptors(paths)

    def panorama_descriptors(self, paths, progress=False):
        return self._descriptors(paths)

    def tile_outputs(self, tile_paths, panorama_paths, keep_heatmaps=0, progress=False):
        return np.zeros((len(tile_paths), 2)), np.repeat(np.eye(2)[None], len(tile_paths), axis=0), None


def test_windows_are_the_rasters_pixels_and_their_descriptors_are_kept_per_checkpoint(raster_database):
    db, image = raster_database
    fine = FineWindows(db, stride_px=160, window_px=64)          # 160 at 640 px: 32 px of 128-px tiles
    assert fine.step == 32 and len(fine) == 5 * 9
    assert fine.stride_m == pytest.approx(32 * db.width_m[0] / 128)
    first = BlockModel("/ckpt/a")
    ids = fine.inside_tile(db, 0)
    assert (db.row_px[0], db.col_px[0]) == (0, 0) and len(ids) == 3 * 3   # window centres 64, 96, 128 px
    kept = fine.descriptors(first, ids)
    assert first.described == 9
    w = ids[7]
    r, c = int(fine.windows.row_px[w]), int(fine.windows.col_px[w])
    written = cv2.imread(fine.windows.tile_path(w))
    expected = cv2.resize(image[r:r + 128, c:c + 128, ::-1], (64, 64), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(written, expected)
    again = FineWindows(db, stride_px=160, window_px=64)
    np.testing.assert_array_equal(again.descriptors(first, ids), kept)
    assert first.described == 9                                   # read back, not described again
    other = BlockModel("/ckpt/b", sign=-1.0)
    np.testing.assert_allclose(again.descriptors(other, ids), -kept, atol=1e-6)   # its own, never a's
    assert other.described == 9
    os.replace(fine.descriptor_path("/ckpt/a"), fine.descriptor_path("/ckpt/c"))
    with pytest.raises(DataError, match="are checkpoint /ckpt/a@0's, not /ckpt/c@0's"):
        FineWindows(db, stride_px=160, window_px=64).descriptors(BlockModel("/ckpt/c"), ids)


def test_the_localizer_puts_a_raster_crop_at_its_own_centre(raster_database, tmp_path):
    db, image = raster_database
    crop = str(tmp_path / "crop.png")
    cv2.imwrite(crop, image[32:160, 144:272, ::-1])              # 32 px below and 16 px right of tile (0, 128)
    model = BlockModel("/ckpt/crop")
    index = TileIndex(model.tile_descriptors([db.tile_path(i) for i in range(len(db))]), {"checkpoint": "x"})
    settings = replace(Settings.from_config(load_config()), top_k=len(db), min_sigma_m=0.0, fine="windows",
                       fine_stride_px=80, fine_temperature=0.001)
    result = Localizer(model, db, index, settings).localize_all([crop], progress=False)[0]
    best = next(t for t in result.tiles if (db.row_px[t.tile], db.col_px[t.tile]) == (0, 128))
    truth = db.frame.pixel_to_metric(32 + 64, 144 + 64)
    assert np.linalg.norm(best.mean - truth) < 1e-6                # a window (16-px stride) holds exactly the crop
    np.testing.assert_allclose(best.delta, [32 * 5, -16 * 5], atol=1e-6)   # 640-px convention: 5 x the 128-px grid
    step_m = 16 * db.width_m[0] / 128
    np.testing.assert_allclose(best.cov, np.eye(2) * step_m ** 2 / 12.0, rtol=1e-6, atol=1e-9)
    head = Localizer(model, db, index, replace(settings, fine="head")).localize_all([crop], progress=False)[0]
    np.testing.assert_allclose([t.mean for t in head.tiles], db.centres[[t.tile for t in head.tiles]], atol=1e-6)   # the model's zero offset
    product = Localizer(model, db, index, replace(settings, fine="product")).localize_all([crop], progress=False)[0]
    for joint, alone in zip(product.tiles, result.tiles):   # the head's N(tile centre, 1 px^2 at 640) times the windows'
        head_cov = db.sigma_to_metric(joint.tile, np.eye(2))
        mean, cov = gaussian_product(db.centres[joint.tile][None], head_cov[None], alone.mean[None], alone.cov[None])
        np.testing.assert_allclose(joint.mean, mean[0], atol=1e-6)
        np.testing.assert_allclose(joint.cov, cov[0], rtol=1e-6, atol=1e-12)


def test_the_product_needs_a_sigma_head(raster_database, tmp_path):
    db, image = raster_database
    crop = str(tmp_path / "crop.png")
    cv2.imwrite(crop, image[0:128, 0:128, ::-1])
    model = BlockModel("/ckpt/no_sigma")
    model.tile_outputs = lambda tiles, panoramas, keep=0, progress=False: (np.zeros((len(tiles), 2)), None, None)
    index = TileIndex(model.tile_descriptors([db.tile_path(i) for i in range(len(db))]), {"checkpoint": "x"})
    settings = replace(Settings.from_config(load_config()), fine="product", fine_stride_px=160)
    with pytest.raises(ConfigError, match="has no Sigma head: give an E_2_2 or E_3 checkpoint"):
        Localizer(model, db, index, settings).localize_all([crop], progress=False)


def test_fine_settings_are_checked():
    cfg = load_config()
    assert Settings.from_config(cfg).fine == "head"
    with pytest.raises(ConfigError, match="localize.fine"):
        load_config(None, ["localize.fine=grid"])
    with pytest.raises(ConfigError, match="fine_uncertainty"):
        load_config(None, ["localize.fine_uncertainty=spread"])
    with pytest.raises(ConfigError, match="fine_uncertainty_temperature must be >= 0"):
        Settings.from_config(load_config(None, ["localize.fine_uncertainty_temperature=-0.1"]))
    with pytest.raises(ConfigError, match="fine_temperature > 0"):
        Settings.from_config(load_config(None, ["localize.fine_temperature=0"]))


class MirroredModel(BlockModel):
    """Tiles as BlockModel, panoramas mirrored left-right: its window search misses the crop; its head
    says Sigma = 4 px^2 (640 px) everywhere."""

    def panorama_descriptors(self, paths, progress=False):
        flipped = []
        for n, p in enumerate(paths):
            flipped.append(os.path.join(os.path.dirname(str(p)), f"mirrored_{n}.png"))
            cv2.imwrite(flipped[-1], cv2.imread(str(p))[:, ::-1])
        return self._descriptors(flipped)

    def tile_outputs(self, tile_paths, panorama_paths, keep_heatmaps=0, progress=False):
        return np.zeros((len(tile_paths), 2)), np.repeat(4.0 * np.eye(2)[None], len(tile_paths), axis=0), None


def test_window_rerank_maths_on_a_hand_made_case():
    windows = np.array([[0.0, 0.0], [5.0, 0.0], [10.0, 0.0], [30.0, 0.0]])
    best = best_inside(windows, [0.2, 0.9, 0.4, 0.7], [[0.0, 0.0], [10.0, 0.0], [30.0, 0.0], [60.0, 0.0]],
                       [10.0, 10.0, 4.0, 4.0])
    np.testing.assert_array_equal(best, [0.9, 0.9, 0.7, -np.inf])   # the border counts; a window-less tile: -inf
    similarities, window_best = [0.8, 0.7, 0.6], [0.1, 0.5, 0.3]
    order, scores = window_rerank(similarities, window_best, 0.0)
    assert order.tolist() == [0, 1, 2] and scores.tolist() == similarities
    order, scores = window_rerank(similarities, window_best, 1.0)
    assert order.tolist() == [1, 0, 2]                              # ties keep the retrieval order
    np.testing.assert_allclose(scores, [0.45, 0.6, 0.45])
    order, scores = window_rerank(similarities, window_best, 0.25)
    assert order.tolist() == [0, 1, 2]
    np.testing.assert_allclose(scores, [0.66, 0.66, 0.54])          # 0.825 / 1.25, 0.825 / 1.25, 0.675 / 1.25


def test_a_second_network_describes_the_windows_and_reranks_a_look_alike(raster_database, tmp_path):
    db, image = raster_database
    crop = str(tmp_path / "crop.png")
    cv2.imwrite(crop, image[32:160, 144:272, ::-1])              # inside tile (0, 128) only
    true_tile = next(t for t in range(len(db)) if (db.row_px[t], db.col_px[t]) == (0, 128))
    decoy = next(t for t in range(len(db)) if (db.row_px[t], db.col_px[t]) == (128, 256))
    retrieval, windows_model = MirroredModel("/ckpt/retrieval"), BlockModel("/ckpt/centred")
    descriptors = retrieval.tile_descriptors([db.tile_path(i) for i in range(len(db))])
    descriptors[decoy] = retrieval.panorama_descriptors([crop])[0]       # a look-alike: similarity 1
    index = TileIndex(descriptors, {"checkpoint": "x"})
    settings = replace(Settings.from_config(load_config()), top_k=len(db), min_sigma_m=0.0, fine="windows",
                       fine_stride_px=80, fine_temperature=0.001)
    truth = db.frame.pixel_to_metric(32 + 64, 144 + 64)

    def in_true_tile(result):
        return next(t for t in result.tiles if t.tile == true_tile)
    alone = Localizer(retrieval, db, index, settings).localize_all([crop], progress=False)[0]
    assert alone.tiles[0].tile == decoy and np.linalg.norm(in_true_tile(alone).mean - truth) > 2.0
    hybrid = Localizer(retrieval, db, index, settings, fine_model=windows_model).localize_all([crop], progress=False)[0]
    assert hybrid.tiles[0].tile == decoy                             # retrieval is still the first network's
    assert np.linalg.norm(in_true_tile(hybrid).mean - truth) < 1e-6  # the windows are the second's
    assert windows_model.described > 0
    product = Localizer(retrieval, db, index, replace(settings, fine="product"),
                        fine_model=windows_model).localize_all([crop], progress=False)[0]
    head_cov = db.sigma_to_metric(true_tile, 4.0 * np.eye(2))           # the retrieval checkpoint's head
    mean, cov = gaussian_product(db.centres[true_tile][None], head_cov[None], truth[None],
                                 in_true_tile(hybrid).cov[None])
    np.testing.assert_allclose(in_true_tile(product).mean, mean[0], atol=1e-6)
    np.testing.assert_allclose(in_true_tile(product).cov, cov[0], rtol=1e-6)
    reranked = replace(settings, fine="head", rerank="windows", rerank_candidates=len(db), top_k=2)
    for weight, first in ((0.0, decoy), (10.0, true_tile)):
        result = Localizer(retrieval, db, index, replace(reranked, rerank_weight=weight),
                           fine_model=windows_model).localize_all([crop], progress=False)[0]
        assert result.tiles[0].tile == first
        retrieved = float(index.similarity(retrieval.panorama_descriptors([crop]), [first])[0][0])
        best = FineWindows(db, 80).best_similarities(db, [first], windows_model.panorama_descriptors([crop])[0],
                                                      windows_model)[0]
        assert result.tiles[0].similarity == pytest.approx((retrieved + weight * best) / (1 + weight))
    assert best == pytest.approx(1.0)                                # the window holding exactly the crop
    for weight, first in ((0.0, decoy), (10.0, true_tile)):         # a sequence's shared tiles: the same scores
        localizer = Localizer(retrieval, db, index, replace(reranked, rerank_weight=weight), fine_model=windows_model)
        assert localizer.predict_sequence([crop, crop], np.zeros((2, 2)), progress=False).tiles[0] == first


def test_a_fine_checkpoint_that_is_missing_or_does_not_fit_is_one_line(tmp_path):
    import tensorflow.compat.v1 as tf

    from utils.cli import graph_mode
    graph_mode()
    cfg = load_config(os.path.join(os.path.dirname(__file__), "..", "..", "configs", "demo.yaml"))
    with pytest.raises(CheckpointError, match="is not a checkpoint") as missing:
        open_fine_model(cfg, str(tmp_path / "nothing"))
    with tf.Graph().as_default():
        tf.get_variable("other_network/weights", shape=[3, 2])
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            tf.train.Saver().save(sess, str(tmp_path / "model.ckpt"))
    with pytest.raises(CheckpointError, match="does not match the config's network") as wrong:
        open_fine_model(cfg, str(tmp_path))
    assert "\n" not in str(missing.value) and "\n" not in str(wrong.value)


def test_window_search_bench_chooses_by_median_or_by_spread():
    from bench.window_search import choose
    rows = [{"stride_px": 20, "temperature": t, "fine_median": m, "spread_ratio": r,
             "correlation_rows": 0.5, "correlation_cols": 0.5}
            for t, m, r in ((0.02, 6.0, 1.3), (0.05, 6.5, 0.8), (0.1, 8.0, 1.25))]
    assert choose(rows)["temperature"] == 0.02                     # the lowest median
    assert choose(rows, "spread")["temperature"] == 0.05            # |log 0.8| = |log 1.25| < |log 1.3|; tie: the median
    rows[1]["spread_ratio"] = 0.7
    assert choose(rows, "spread")["temperature"] == 0.1
