"""Localization: the database builder on real GeoTIFFs, fusion and joint maths on hand-made
Gaussians, every bad-input error, and localize.py end to end on a checkpoint trained here."""
import csv
import glob
import json
import os
import subprocess
import sys
from dataclasses import replace

import cv2
import numpy as np
import pytest
import rasterio
from pyproj import Geod, Proj, Transformer
from rasterio.transform import from_origin

from tests import paths
from utils.config import load_config
from utils.data.dataset import parse_pano_name, parse_sat_name
from utils.data.geo import utm_to_latlon
from utils.errors import DataError
from utils.localization import fusion
from utils.localization.database import build_database, check_matches_training, load_database
from utils.localization.index import TileIndex
from utils.localization.joint import localize_jointly, with_floor
from utils.localization.predict import read_panorama
from utils.localization.query import Localizer, Settings
from utils.localization.rerank import consensus_scores, consensus_tiles, expanded_query, reference_graph, spatial_rerank

REPO = paths.REPO
UTM_18N = "EPSG:32618"
GEOD = Geod(ellps="WGS84")
VIGOR_MPP = 0.114
NATIVE_128 = VIGOR_MPP * 128 / 640      # ground m/px at 640 px whose 128-px tiles are utm_raster's own pixels


def write_geotiff(path, image_rgb, transform, crs=UTM_18N, nodata=None):
    profile = {"driver": "GTiff", "height": image_rgb.shape[0], "width": image_rgb.shape[1], "count": 3,
               "dtype": "uint8", "crs": crs, "transform": transform, "nodata": nodata}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.moveaxis(image_rgb, -1, 0))
    return str(path)


@pytest.fixture(scope="module")
def utm_raster(tmp_path_factory):
    """448 x 320 px at 0.114 m/px in UTM 18N (Manhattan); its top-left 128 px square is nodata."""
    rng = np.random.default_rng(3)
    image = rng.integers(1, 255, (320, 448, 3), dtype=np.uint8)
    image[:128, :128] = 0
    path = tmp_path_factory.mktemp("utm") / "map.tif"
    return write_geotiff(path, image, from_origin(583960.0, 4507530.0, 0.114, 0.114), nodata=0), image


# ---------------------------------------------------------------- the builder
def test_builder_cuts_counts_and_georeferences_a_utm_raster(utm_raster, tmp_path):
    path, image = utm_raster
    info = build_database(path, str(tmp_path / "db"), NATIVE_128, tile_px=128, stride_px=128, progress=False)
    assert info["grid"]["resampling"] == "none"                              # UTM's scale 0.9997: within 0.1 %
    # grid 4 x 3 starts; 3 x 2 fit; one of those is all nodata
    assert (info["tiles"], info["skipped_outside"], info["skipped_nodata"]) == (5, 6, 1)
    with open(tmp_path / "db" / "tiles.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    to_utm = Transformer.from_crs("EPSG:4326", UTM_18N, always_xy=True)
    for row in rows:
        r, c = int(row["row_px"]), int(row["col_px"])
        x, y = 583960.0 + 0.114 * (c + 64), 4507530.0 - 0.114 * (r + 64)
        assert (float(row["centre_x"]), float(row["centre_y"])) == pytest.approx((x, y), abs=1e-6)
        lat, lng = float(row["lat"]), float(row["lng"])
        assert parse_sat_name(row["file"]) == (lat, lng)
        back = to_utm.transform(lng, lat)
        assert np.hypot(back[0] - x, back[1] - y) < 0.1                       # pyproj round trip
        snyder = utm_to_latlon(x, y, 18, False)                              # an independent UTM formula
        assert GEOD.inv(lng, lat, snyder[1], snyder[0])[2] < 0.1
        assert row["crs"] == UTM_18N and int(row["width_px"]) == 128
        ground_mpp = 0.114 / Proj(UTM_18N).get_factors(lng, lat).parallel_scale     # UTM metres / ground
        assert float(row["m_per_px"]) == pytest.approx(ground_mpp, rel=1e-6)
        assert float(row["width_m"]) == pytest.approx(128 * ground_mpp, rel=1e-6)
        tile = cv2.imread(str(tmp_path / "db" / "satellite" / row["file"]))
        assert np.array_equal(tile[:, :, ::-1], image[r:r + 128, c:c + 128])
    geo = json.load(open(tmp_path / "db" / "tiles.geojson"))
    assert len(geo["features"]) == 5
    ring = np.array(geo["features"][0]["geometry"]["coordinates"][0])
    lngs, lats = ring[:4, 0], ring[:4, 1]
    centre = [float(rows[0]["lng"]), float(rows[0]["lat"])]
    assert lngs.min() < centre[0] < lngs.max() and lats.min() < centre[1] < lats.max()


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    from utils.data.synthetic_sequences import write_sequences
    from utils.data.synthetic_vigor import generate
    root = generate(str(tmp_path_factory.mktemp("city") / "synthetic"), seed=1, cities=2, tiles_per_side=4,
                    pano_size=(128, 64), panos_per_tile=1.0)
    write_sequences(root, per_city=1, length=2, spacing_m=5.0)
    return root


def test_synthetic_raster_tiles_equal_the_generator_tiles(city, tmp_path):
    raster = os.path.join(city, "NewYork", "aerial_map.tif")
    with rasterio.open(raster) as src:
        assert src.crs.is_projected and src.crs.to_epsg() != 4326
    build_database(raster, str(tmp_path / "dense"), VIGOR_MPP, tile_px=640, stride_px=320, progress=False)
    db = load_database(str(tmp_path / "dense"))
    built = {parse_sat_name(name): i for i, name in enumerate(db.files)}
    generated = sorted(os.listdir(os.path.join(city, "NewYork", "satellite")))
    assert len(generated) == len(db) == 16                       # the grids coincide everywhere here
    for name in generated:
        lat, lng = parse_sat_name(name)
        match = min(built, key=lambda k: abs(k[0] - lat) + abs(k[1] - lng))
        assert GEOD.inv(lng, lat, match[1], match[0])[2] < 0.001
        ours = cv2.imread(db.tile_path(built[match]))
        assert np.array_equal(ours, cv2.imread(os.path.join(city, "NewYork", "satellite", name)))
    sparse = build_database(raster, str(tmp_path / "sparse"), VIGOR_MPP, tile_px=640, stride_px=640, progress=False)
    assert sparse["tiles"] == 4 and sparse["skipped_outside"] == 5


# ---------------------------------------------------------------- fusion maths
def grid_argmax(mixtures, shifts, lo, hi, step=0.05):
    xs = np.arange(lo, hi, step)
    best = max(((x, y) for x in xs for y in np.arange(-3, 3, step)),
               key=lambda p: sum(fusion.log_density(m, np.array(p) + s) for m, s in zip(mixtures, shifts)))
    return np.array(best)


def test_similarity_weights_are_a_softmax():
    w = fusion.similarity_weights([0.9, 0.8, 0.5], 0.1)
    expected = np.exp([9.0, 8.0, 5.0]) / np.exp([9.0, 8.0, 5.0]).sum()
    assert np.allclose(w, expected)


def test_mode_of_a_mixture_matches_a_grid_search():
    mix = fusion.Mixture(means=np.array([[0.0, 0.0], [3.0, 1.0]]),
                         covs=np.array([np.eye(2) * 4.0, [[2.0, 0.5], [0.5, 1.0]]]), weights=np.array([0.6, 0.4]))
    mode = fusion.find_mode([mix])
    assert np.allclose(mode, grid_argmax([mix], [np.zeros(2)], -2, 5), atol=0.06)
    # a single component: its own mean, covariance, and the whole vote
    one = fusion.fuse(fusion.Mixture(np.array([[5.0, -2.0]]), np.array([np.diag([9.0, 4.0])]), np.array([1.0])))
    assert np.allclose(one.mean, [5.0, -2.0]) and np.allclose(one.cov, np.diag([9.0, 4.0])) and one.confidence == 1.0


def test_overlapping_tiles_voting_for_one_spot_outweigh_the_top1():
    # the top-1 tile (weight 0.4) says x = 30; two overlapping tiles (0.3 each) agree on x ~ 0
    mix = fusion.Mixture(means=np.array([[30.0, 0.0], [0.0, 0.0], [0.5, 0.0]]),
                         covs=np.array([np.eye(2) * 4.0] * 3), weights=np.array([0.4, 0.3, 0.3]))
    fused = fusion.fuse(mix)
    assert abs(fused.mean[0] - 0.25) < 0.05 and abs(fused.mean[1]) < 1e-6
    assert fused.confidence == pytest.approx(0.6)
    assert np.allclose(fusion.top1(mix).mean, [30.0, 0.0])
    assert np.allclose(fused.cov, np.eye(2) * 4.0 + np.diag([0.0625, 0.0]), atol=1e-3)   # + the spread of the votes


def test_ellipse_ring_lies_at_the_mahalanobis_radius():
    cov = np.array([[9.0, 2.0], [2.0, 4.0]])
    ring = fusion.ellipse(np.array([1.0, 2.0]), cov, 2, vertices=32)
    d = ring - [1.0, 2.0]
    assert np.allclose(np.einsum("ni,ij,nj->n", d, np.linalg.inv(cov), d), 4.0)


def test_joint_localization_beats_each_single_estimate():
    truth = np.array([0.0, 0.0])
    offsets = np.array([[0.0, 0.0], [5.0, 0.0], [10.0, 0.0]])
    rng = np.random.default_rng(0)
    mixtures = []
    for j, offset in enumerate(offsets):     # each panorama's top tile is a look-alike elsewhere
        right = truth + offset + rng.normal(0, 1.0, 2)
        wrong = truth + offset + np.array([40.0 * (j + 1), -25.0 * j])
        mixtures.append(fusion.Mixture(np.stack([wrong, right]), np.array([np.eye(2) * 9.0] * 2),
                                       np.array([0.6, 0.4])))
    singles = [fusion.fuse(m) for m in mixtures]
    joint = localize_jointly(mixtures, offsets)
    for j in range(3):
        single_error = np.linalg.norm(singles[j].mean - truth - offsets[j])
        joint_error = np.linalg.norm(joint[j].mean - truth - offsets[j])
        assert single_error > 20 and joint_error < 2 and joint_error < single_error
        assert np.linalg.det(joint[j].cov) < np.linalg.det(singles[j].cov) / 8
        assert np.allclose(joint[j].mean - joint[0].mean, offsets[j])
    # one component each: the joint estimate is the product of the Gaussians, in closed form
    means = np.array([[1.0, 0.0], [6.0, 2.0]])
    covs = np.array([np.diag([4.0, 1.0]), np.diag([1.0, 4.0])])
    singles = [fusion.Mixture(means[i:i + 1], covs[i:i + 1], np.ones(1)) for i in range(2)]
    both = localize_jointly(singles, [[0.0, 0.0], [5.0, 0.0]])[0]
    precision = np.linalg.inv(covs[0]) + np.linalg.inv(covs[1])
    expected = np.linalg.solve(precision, np.linalg.inv(covs[0]) @ means[0] + np.linalg.inv(covs[1]) @ (means[1] - [5, 0]))
    assert np.allclose(both.mean, expected, atol=1e-5) and np.allclose(both.cov, np.linalg.inv(precision))


def test_spatial_rerank_prefers_a_tile_whose_neighbours_agree():
    centres = np.array([[x, y] for y in range(0, 300, 50) for x in range(0, 300, 50)], np.float64)
    neighbours = reference_graph(centres, np.full(len(centres), 100.0))
    assert sorted(neighbours[0].tolist()) == [1, 2, 6, 7, 8, 12, 13, 14]
    similarity = np.full(len(centres), 0.1)
    similarity[35] = 0.80                    # an isolated look-alike in the far corner
    similarity[[14, 15, 20, 21]] = [0.78, 0.7, 0.7, 0.7]
    ids, scores = spatial_rerank(np.array([35, 14]), similarity[[35, 14]], neighbours, lambda t: similarity[t], 0.5)
    assert ids.tolist() == [14, 35] and scores[0] == pytest.approx(0.78 + 0.5 * 0.7)


def gaussian_density(x, mean, cov):
    d = np.asarray(x) - mean
    return np.exp(-0.5 * d @ np.linalg.solve(cov, d)) / (2 * np.pi * np.sqrt(np.linalg.det(cov)))


def test_a_floor_adds_a_flat_density_and_takes_its_share_of_the_responsibilities():
    mix = fusion.Mixture(np.array([[0.0, 0.0], [10.0, 0.0]]), np.array([np.eye(2) * 4.0, np.eye(2) * 9.0]),
                         np.array([0.5, 0.5]))
    robust = with_floor(mix, 0.2, 1000.0)
    assert robust.floor == pytest.approx(0.2 / 1000.0) and np.allclose(robust.weights, [0.4, 0.4])
    x = np.array([3.0, 1.0])
    by_hand = 0.4 * gaussian_density(x, mix.means[0], mix.covs[0]) + 0.4 * gaussian_density(x, mix.means[1], mix.covs[1])
    assert fusion.log_density(robust, x) == pytest.approx(np.log(by_hand + 0.2 / 1000.0), rel=1e-9)
    r = fusion.responsibilities(robust, x)
    assert r == pytest.approx([0.4 * gaussian_density(x, mix.means[0], mix.covs[0]) / (by_hand + 2e-4),
                               0.4 * gaussian_density(x, mix.means[1], mix.covs[1]) / (by_hand + 2e-4)])
    far = fusion.responsibilities(robust, np.array([500.0, 500.0]))
    assert far.sum() < 1e-12                   # far from every component the floor explains it all


def test_product_of_two_components_is_the_precision_weighted_mean():
    means = np.array([[0.0, 0.0], [6.0, 3.0]])
    covs = np.array([np.diag([1.0, 4.0]), np.diag([4.0, 1.0])])
    expected = np.array([6.0 * 0.25 / 1.25, 3.0 * 1.0 / 1.25])
    assert np.allclose(fusion.product_mean(means, covs), expected)


TILE_COVS = np.array([[[4.0, 1.5], [1.5, 9.0]], [[2.0, -0.5], [-0.5, 1.0]], [[6.0, 0.0], [0.0, 3.0]]])


def test_sigma_scale_multiplies_covariances_by_its_square():
    means = np.array([[0.0, 0.0], [3.0, 1.0], [-2.0, 4.0]])
    mix = fusion.build_mixture(means, TILE_COVS, [0.9, 0.8, 0.5], 0.2, sigma_scale=2.0, min_sigma_m=0.0)
    np.testing.assert_array_equal(mix.covs, 4.0 * TILE_COVS)
    floored = fusion.build_mixture(means, TILE_COVS, [0.9, 0.8, 0.5], 0.2, sigma_scale=2.0, min_sigma_m=3.0)
    np.testing.assert_allclose(floored.covs, 4.0 * TILE_COVS + 9.0 * np.eye(2), rtol=1e-12)
    np.testing.assert_array_equal(floored.means, means)


@pytest.fixture(scope="module")
def small_database(utm_raster, tmp_path_factory):
    root = str(tmp_path_factory.mktemp("db") / "db")
    build_database(utm_raster[0], root, NATIVE_128, tile_px=128, stride_px=128, progress=False)
    return load_database(root)


def deltas_of_one_point(db, tiles, row_px, col_px):
    """The 640-px deltas (d0, d1) of raster pixel (row_px, col_px) in each tile: one metric mean."""
    scale = db.tile_px / 640.0
    return np.array([[(row_px - db.row_px[t]) / scale - 320.0, 320.0 - (col_px - db.col_px[t]) / scale]
                     for t in tiles])


def test_query_fusion_covariance_follows_sigma_scale_squared(small_database):
    """Localizer.result / refit (where Settings.sigma_scale and min_sigma_m reach the mixture): the
    same network outputs fused at sigma_scale 2 give 4x the covariances, and 4x + m^2 I per tile."""
    db = small_database
    tiles = np.arange(3)
    row, col = db.row_px[0] + 64.0, db.col_px[0] + 64.0
    sigmas = 400.0 * TILE_COVS                       # over (d0, d1), 640-px units
    settings = replace(Settings.from_config(load_config()), sigma_scale=1.0, min_sigma_m=0.0)
    localizer = Localizer(model=None, db=db, index=None, settings=settings)
    plain = localizer.result("p.jpg", tiles, np.array([0.9, 0.8, 0.5]), deltas_of_one_point(db, tiles, row, col),
                             sigmas, None)
    np.testing.assert_allclose(plain.mixture.means, np.repeat(plain.mixture.means[:1], 3, axis=0), atol=1e-9)
    scaled = localizer.refit(plain, replace(settings, sigma_scale=2.0))
    np.testing.assert_allclose(scaled.fused.mean, plain.fused.mean, atol=1e-9)
    np.testing.assert_allclose(scaled.fused.cov, 4.0 * plain.fused.cov, rtol=1e-9)
    floored = localizer.refit(plain, replace(settings, sigma_scale=2.0, min_sigma_m=3.0))
    for tile, sigma, estimate in zip(tiles, sigmas, floored.tiles):
        metric = db.sigma_to_metric(tile, sigma)
        np.testing.assert_allclose(estimate.cov, 4.0 * metric + 9.0 * np.eye(2), rtol=1e-12)


def test_robust_product_ignores_a_panorama_none_of_whose_tiles_is_right():
    truth = np.array([0.0, 0.0])
    offsets = np.array([[0.0, 0.0], [5.0, 0.0], [10.0, 0.0]])
    covs = np.array([np.eye(2) * 9.0] * 2)
    mixtures = []
    for j, offset in enumerate(offsets[:2]):    # right component (weight 0.4) and a look-alike (0.6)
        wrong = truth + offset + np.array([0.0, 60.0 + 30.0 * j])
        mixtures.append(fusion.Mixture(np.stack([wrong, truth + offset]), covs, np.array([0.6, 0.4])))
    # the third panorama retrieved two wrong tiles only, 24 m and 80 m off
    mixtures.append(fusion.Mixture(np.stack([truth + offsets[2] + [24.0, 0.0], truth + offsets[2] + [-80.0, 0.0]]),
                                   covs, np.array([0.7, 0.3])))
    plain = localize_jointly(mixtures, offsets)
    robust = localize_jointly(mixtures, offsets, outlier_share=0.2, area_m2=200.0 * 200.0)
    plain_error = np.linalg.norm(plain[0].mean - truth)
    robust_error = np.linalg.norm(robust[0].mean - truth)
    assert plain_error == pytest.approx(8.0, abs=0.1)       # pulled a third of the way to the 24 m vote
    assert robust_error < 0.5
    for j in range(3):                           # each panorama at its own offset from the anchor
        assert np.allclose(robust[j].mean - robust[0].mean, offsets[j])
    # the third factor sits in its floor: the covariance is the product of the first two only
    assert np.allclose(robust[0].cov, np.eye(2) * 4.5, atol=0.05)
    with pytest.raises(ValueError, match="area"):
        localize_jointly(mixtures, offsets, outlier_share=0.2)


def test_query_expansion_lifts_the_tile_whose_look_alikes_agree():
    # tiles 0 and 1 are overlapping views of the right place; tile 2 is an isolated look-alike
    descriptors = np.array([[1.0, 0.0, 0.0], [0.8, 0.0, 0.6], [0.0, 1.0, 0.0]], np.float32)
    query = np.array([0.70, 0.72, 0.0], np.float32)
    query /= np.linalg.norm(query)
    index = TileIndex(descriptors=descriptors, info={})
    assert index.search(query[None], 3)[1][0].tolist() == [2, 0, 1]
    expanded = expanded_query(query, index, 3, alpha=1.0)
    s = query @ descriptors.T
    by_hand = query + s[2] * descriptors[2] + s[0] * descriptors[0] + s[1] * descriptors[1]
    assert np.allclose(expanded, by_hand / np.linalg.norm(by_hand), atol=1e-6)
    assert index.search(expanded[None], 3)[1][0].tolist() == [0, 1, 2]


def test_consensus_shares_the_tiles_the_panoramas_agree_on():
    # three panoramas, six tiles: tile 4 is everyone's second choice, each first choice is private
    similarity = np.array([[0.9, 0.1, 0.1, 0.2, 0.8, 0.0],
                           [0.1, 0.9, 0.1, 0.2, 0.8, 0.0],
                           [0.1, 0.1, 0.9, 0.2, 0.8, 0.0]])
    candidates = [np.argsort(-row)[:2] for row in similarity]
    tiles, own = consensus_tiles(lambda ids: similarity[:, ids], candidates, top_k=2)
    assert tiles.tolist()[0] == 4 and len(tiles) == 2 and np.allclose(own, similarity[:, tiles])
    scores = consensus_scores(similarity[:, [4, 0]], 0.5)
    assert np.allclose(scores[0], [0.8, 0.5 * 0.9 + 0.5 * 0.1])      # the others' mean for tile 0 is 0.1
    assert np.allclose(scores[1], [0.8, 0.5 * 0.1 + 0.5 * 0.5])
    assert np.allclose(consensus_scores(similarity[:1], 0.5), similarity[:1])   # one panorama: its own

# ---------------------------------------------------------------- bad input
def test_raster_without_crs_is_a_clear_error(tmp_path):
    image = np.full((128, 128, 3), 7, np.uint8)
    path = write_geotiff(tmp_path / "plain.tif", image, from_origin(0, 0, 1, 1), crs=None)
    with pytest.raises(DataError, match=r"plain.tif has no CRS .*gdal_edit"):
        build_database(path, str(tmp_path / "db"), VIGOR_MPP, progress=False)


def test_raster_smaller_than_a_tile_gives_no_tiles(utm_raster, tmp_path):
    with pytest.raises(DataError, match=r"gives no tiles: it is 320 x 448 px at 0.114 m/px .* against tiles of 640 px"):
        build_database(utm_raster[0], str(tmp_path / "db"), VIGOR_MPP, tile_px=640, progress=False)


def test_bad_panoramas_are_clear_errors(tmp_path):
    square = tmp_path / "square.jpg"
    cv2.imwrite(str(square), np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(DataError, match=r"square.jpg is 64 x 64 px, not 2:1"):
        read_panorama(square)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg at all")
    with pytest.raises(DataError, match=r"broken.jpg cannot be decoded as an image"):
        read_panorama(broken)
    with pytest.raises(DataError, match=r"missing.jpg does not exist"):
        read_panorama(tmp_path / "missing.jpg")


def test_database_of_another_tile_size_and_an_empty_database(utm_raster, tmp_path):
    from utils.config import load_config
    build_database(utm_raster[0], str(tmp_path / "db"), NATIVE_128, tile_px=128, stride_px=128, progress=False)
    db = load_database(str(tmp_path / "db"))
    cfg = load_config(os.path.join(REPO, "configs", "demo.yaml"))
    with pytest.raises(DataError, match=r"has tiles of 14.6 m on the ground.*tiles of 73.0 m .*--ground-mpp 0.114 "):
        check_matches_training(db, cfg, 0.1)
    with open(tmp_path / "db" / "tiles.csv") as f:
        header = f.readline()
    with open(tmp_path / "db" / "tiles.csv", "w") as f:
        f.write(header)
    with pytest.raises(DataError, match=r"is empty \(tiles.csv lists no tiles\)"):
        load_database(str(tmp_path / "db"))
    with pytest.raises(DataError, match=r"is not a reference database"):
        load_database(str(tmp_path))


# ---------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def checkpoint(city, tmp_path_factory):
    """A tiny SAMP network trained for a few steps (E_2_1 from scratch) on the tiny city."""
    import train_second_E_2_1
    from utils.config import load_config
    from utils.session import checkpoints as ckpt
    from utils.training.stage import stage_dir
    from utils.training.trainer import run_stage
    runs = str(tmp_path_factory.mktemp("runs"))
    overrides = tiny_overrides(city) + [f"runs_dir={runs}", "stages.E_2_1.init_from=null",
                                        "stages.E_2_1.batch_size=4", "stages.E_2_1.steps_per_epoch=2",
                                        "stages.E_2_1.epochs=1", "stages.E_2_1.validate_every=1"]
    cfg = load_config(os.path.join(REPO, "configs", "demo.yaml"), overrides)
    run_stage(train_second_E_2_1.E_2_1, cfg, show_progress=False)
    return ckpt.last_epoch_checkpoint(stage_dir(cfg, "E_2_1"))[1]


def tiny_overrides(city):
    return [f"data.root={city}", "data.synthetic.seed=1", "data.synthetic.cities=2",
            "data.synthetic.tiles_per_side=4", "data.synthetic.panos_per_tile=1.0",
            "data.synthetic.pano_size=[128, 64]", "data.train_cities=[NewYork, Seattle]",
            "data.test_cities=[NewYork, Seattle]",
            "data.sat_size=[64, 64]", "data.grd_size=[32, 64]", "model.vgg_width=0.125", "model.fc_dim=32",
            "model.out_dim=32", "model.cholesky_hidden=8", "model.decoder_width=32", "mining.pool_size=8",
            "mining.keep=2", "validation.scan_batch=8"]


def localize(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run([sys.executable, os.path.join(REPO, "localize.py"), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    return done.returncode, done.stdout, done.stderr


def test_localize_build_index_query_end_to_end(city, checkpoint, tmp_path):
    sets = sum((["--set", o] for o in tiny_overrides(city) + ["localize.top_k=3"]), [])
    db = str(tmp_path / "db")
    code, out, err = localize("build", "--raster", os.path.join(city, "NewYork", "aerial_map.tif"), "--out", db,
                              "--stride-px", "320")
    assert code == 0, err
    assert "16 tiles of 640 px = 73.0 m (0.114 m/px in +proj=eqc, resampling none)" in out
    assert "every 320 px; skipped 9 leaving the raster and 0 mostly nodata" in out
    code, out, err = localize("index", "--checkpoint", checkpoint, "--db", db, *sets)
    assert code == 0, err
    descriptors = np.load(os.path.join(db, "index", "descriptors.npy"))
    assert len(descriptors) == 16 and np.allclose(np.linalg.norm(descriptors, axis=1), 1.0, atol=1e-5)

    sequence_dir = os.path.join(city, "NewYork", "sequences")
    sequences = os.path.join(sequence_dir, "sequences.csv")
    rows = list(csv.DictReader(open(sequences)))
    panoramas = [os.path.join(sequence_dir, r["panorama"]) for r in rows]
    geojson, figures = str(tmp_path / "out.geojson"), str(tmp_path / "figures")
    code, out, err = localize("query", "--checkpoint", checkpoint, "--db", db, *panoramas, "--out", geojson,
                              "--figures", figures, "--joint", sequences, *sets)
    assert code == 0, err
    assert len([line for line in out.splitlines() if "confidence" in line]) == 4      # 2 alone, 2 jointly
    collection = json.load(open(geojson))
    check_query_output(collection, load_database(db), panoramas, "top-k fusion")
    joint = check_query_output(collection, load_database(db), panoramas, "joint")
    offsets = np.array([(float(r["east_m"]), float(r["north_m"])) for r in rows])
    assert np.allclose(joint[1] - joint[0], offsets[1] - offsets[0], atol=1e-3)
    assert len(os.listdir(figures)) == 4


def check_query_output(collection, db, panoramas, method):
    """Every kind of feature per panorama; the fused point inside the top-k tiles; ellipses at 1 and 2 sigma."""
    assert collection["type"] == "FeatureCollection"
    fused_points = []
    for pano in panoramas:
        name = os.path.basename(pano)
        mine = [f for f in collection["features"] if f["properties"]["panorama"] == name
                and f["properties"].get("method", method) == method]
        kinds = sorted(f["properties"]["kind"] for f in mine)
        assert kinds == sorted(["tile", "tile_estimate", "tile_ellipse"] * 3 + ["fused", "fused_ellipse", "fused_ellipse"])
        fused = next(f for f in mine if f["properties"]["kind"] == "fused")
        assert fused["properties"]["method"] == method and 0.0 <= fused["properties"]["confidence"] <= 1.0
        point = db.frame.lonlat_to_metric(*fused["geometry"]["coordinates"])
        tiles = [f for f in mine if f["properties"]["kind"] == "tile"]
        assert any(db.contains(f["properties"]["tile_id"], point) for f in tiles) or method == "joint"
        truth = db.frame.lonlat_to_metric(*parse_pano_name(name)[::-1])
        assert np.linalg.norm(point - truth) < 150.0       # inside the 4 x 4 tile city, whatever the weights
        cov = np.array(fused["properties"]["covariance_m2"])
        for ellipse in (f for f in mine if f["properties"]["kind"] == "fused_ellipse"):
            ring = db.frame.lonlat_to_metric(*np.array(ellipse["geometry"]["coordinates"][0]).T) - point
            radius = np.einsum("ni,ij,nj->n", ring, np.linalg.inv(cov), ring)
            assert np.allclose(radius, ellipse["properties"]["sigma"] ** 2, rtol=1e-3)
        fused_points.append(point)
    return fused_points


def test_a_checkpoint_giving_nan_descriptors_is_an_error_naming_the_count(city, checkpoint, tmp_path):
    """The tiny checkpoint with one aerial-branch weight set to NaN, run for real on the city's tiles."""
    import tensorflow.compat.v1 as tf

    from utils.config import load_config
    from utils.errors import NonFiniteError
    from utils.localization.predict import LocalizationModel
    from utils.session.checkpoints import checkpoint_prefix
    prefix = checkpoint_prefix(checkpoint)
    broken = tmp_path / "E_2_1" / "1"
    broken.mkdir(parents=True)
    graph = tf.Graph()
    with graph.as_default():
        names = [name for name, _ in tf.train.list_variables(prefix)]
        poisoned = "spatial_sat/biases2"      # after the last ReLU (which would turn a NaN into 0)
        assert poisoned in names, names
        for name in names:
            value = tf.train.load_variable(prefix, name)
            if name == poisoned:
                value = np.full_like(value, np.nan)
            tf.Variable(value, name=name)
        with tf.Session(graph=graph) as sess:
            sess.run(tf.global_variables_initializer())
            tf.train.Saver().save(sess, str(broken / "model.ckpt"), write_meta_graph=False)
    cfg = load_config(os.path.join(REPO, "configs", "demo.yaml"), tiny_overrides(city))
    model = LocalizationModel(cfg, str(broken))
    tiles = sorted(os.listdir(os.path.join(city, "NewYork", "satellite")))[:5]
    try:
        # the shared scan refuses them first (utils/evaluation/finite.py), naming the count
        with pytest.raises(NonFiniteError, match=r"5 of 5 tile descriptors are not finite"):
            model.tile_descriptors([os.path.join(city, "NewYork", "satellite", t) for t in tiles], progress=False)
    finally:
        model.close()


def test_localize_query_with_the_window_search_and_without_its_raster(city, checkpoint, tmp_path):
    """localize.fine=windows through localize.py's main: each tile's estimate is the window search's
    (recomputed here from the stored window descriptors), and a lost raster is a clear error."""
    import shutil

    import localize
    from utils.localization.fine_windows import FineWindows, window_estimate
    from utils.localization.predict import LocalizationModel
    raster = shutil.copy(os.path.join(city, "NewYork", "aerial_map.tif"), tmp_path / "map.tif")
    db_path, out = str(tmp_path / "db"), str(tmp_path / "out.geojson")
    overrides = tiny_overrides(city) + ["localize.top_k=2", "localize.fine=windows", "localize.fine_stride_px=160",
                                        "localize.fine_temperature=0.05", "localize.min_sigma_m=0"]
    sets = sum((["--set", o] for o in overrides), [])
    localize.main(["build", "--raster", str(raster), "--out", db_path, "--stride-px", "640"])
    localize.main(["index", "--checkpoint", checkpoint, "--db", db_path, *sets])
    panoramas = sorted(glob.glob(os.path.join(city, "NewYork", "panorama", "*.jpg")))[:2]
    localize.main(["query", "--checkpoint", checkpoint, "--db", db_path, *panoramas, "--out", out, *sets])
    db = load_database(db_path)
    fine = FineWindows(db, 160, 64)
    cfg = load_config(os.path.join(REPO, "configs", "demo.yaml"), overrides)
    model = LocalizationModel(cfg, checkpoint, "street")
    try:
        descriptors = model.panorama_descriptors(panoramas)
    finally:
        model.close()
    stored = np.load(fine.descriptor_path(model.checkpoint))
    estimates = [f for f in json.load(open(out))["features"] if f["properties"]["kind"] == "tile_estimate"]
    assert len(estimates) == 4
    for feature in estimates:
        p = feature["properties"]
        windows = fine.inside_tile(db, p["tile_id"])
        assert stored["known"][windows].all()
        similarities = stored["descriptors"][windows] @ descriptors[[os.path.basename(x) for x in panoramas].index(
            p["panorama"])]
        mean, cov = window_estimate(similarities, fine.windows.centres[windows], 0.05, fine.stride_m)
        np.testing.assert_allclose(p["offset_m"], mean - db.centres[p["tile_id"]], atol=2e-3)
        np.testing.assert_allclose(p["covariance_m2"], cov, atol=2e-3)
        assert np.min(np.linalg.eigvalsh(cov)) >= fine.stride_m ** 2 / 12 - 1e-6
    os.remove(raster)
    with pytest.raises(DataError, match=r"map.tif, which does not exist: put the raster back there, or set "
                                        r"localize.fine=head"):
        localize.main(["query", "--checkpoint", checkpoint, "--db", db_path, *panoramas, "--out", out, *sets])
