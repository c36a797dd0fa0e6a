"""localize.py query --modality sar end to end, in process: a tiny SAFA trained one step on a tiny
synthetic SpaceNet 6, a reference database cut from the mosaic of its optical tiles, a SAR tile
localized at its retrieved tiles' centres with the fixed sigma; the modality checks."""
import json
import os

import numpy as np
import pytest
import rasterio

import localize
import train_first_E_1
from tests import paths
from utils.config import load_config
from utils.data import spacenet6 as sn6
from utils.data.synthetic_spacenet6 import generate
from utils.errors import DataError
from utils.localization.database import load_database
from utils.session import checkpoints as ckpt
from utils.training.stage import stage_dir
from utils.training.trainer import run_stage

CONFIG = os.path.join(paths.REPO, "configs", "demo_spacenet6.yaml")
TILE, SIDE = 64, 3
FIXED_SIGMA_M = 5.0


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("sn6") / "tree", seed=3, tiles_per_side=SIDE, tile_px=TILE, margin=16)


def overrides(tree, runs="runs"):
    return [f"data.root={tree}", f"runs_dir={runs}", "data.sat_size=[32, 32]", "data.grd_size=[32, 32]",
            "data.dataset=spacenet6", f"data.resolution={0.5 * TILE / 640}",   # the tree's tiles: 32 m
            "model.vgg_width=0.125", "validation.scan_batch=16", "stages.SAFA.batch_size=4",
            "stages.SAFA.steps_per_epoch=1", "stages.SAFA.epochs=1", "stages.SAFA.validate_every=1",
            "localize.top_k=3", f"localize.fixed_sigma_m={FIXED_SIGMA_M}"]


def _aoi(tree, folder):
    return os.path.join(tree, "train", "AOI_11_Rotterdam", folder)


def optical_mosaic(tree, out):
    from rasterio.merge import merge
    folder = _aoi(tree, sn6.OPTICAL_DIR)
    sources = [rasterio.open(os.path.join(folder, name)) for name in sorted(os.listdir(folder))]
    mosaic, transform = merge(sources)
    profile = dict(sources[0].profile, height=mosaic.shape[1], width=mosaic.shape[2], transform=transform)
    for source in sources:
        source.close()
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(mosaic)
    return out


@pytest.fixture(scope="module")
def indexed(tree, tmp_path_factory):
    """(checkpoint, database, --set arguments): one SAR -> optical step, the optical mosaic cut and indexed."""
    work = tmp_path_factory.mktemp("sar_localize")
    cfg = load_config(CONFIG, overrides(tree, str(work / "runs")))
    run_stage(train_first_E_1.SAFA, cfg, show_progress=False)
    checkpoint = ckpt.epoch_dirs(stage_dir(cfg, "SAFA"))[-1][1]
    raster = optical_mosaic(tree, str(work / "optical.tif"))
    db = str(work / "db")
    sets = sum((["--set", o] for o in overrides(tree)), [])
    localize.main(["build", "--raster", raster, "--out", db, "--config", CONFIG, *sets, "--tile-px", "64",
                   "--stride-px", "64"])
    localize.main(["index", "--checkpoint", checkpoint, "--db", db, "--config", CONFIG, *sets])
    return checkpoint, db, sets


def query(indexed, image, out, *extra):
    checkpoint, db, sets = indexed
    localize.main(["query", "--checkpoint", checkpoint, "--db", db, image, "--out", str(out), "--config", CONFIG,
                   *sets, *extra])
    return json.load(open(out))


def a_sar_tile(tree):
    folder = _aoi(tree, sn6.SAR_DIR)
    return os.path.join(folder, min(os.listdir(folder)))


def test_a_sar_tile_is_localized_at_its_tiles_centres_with_the_fixed_sigma(tree, indexed, tmp_path):
    collection = query(indexed, a_sar_tile(tree), tmp_path / "sar.geojson", "--modality", "sar")
    db = load_database(indexed[1])
    assert len(db) == SIDE * SIDE                         # the mosaic is the 3 x 3 tiles, 32 m each
    np.testing.assert_allclose(np.median(db.width_m), TILE * 0.5, rtol=1e-3)
    features = collection["features"]
    kinds = sorted(f["properties"]["kind"] for f in features)
    assert kinds == sorted(["tile", "tile_estimate", "tile_ellipse"] * 3 + ["fused", "fused_ellipse", "fused_ellipse"])
    for estimate in (f for f in features if f["properties"]["kind"] == "tile_estimate"):
        point = db.frame.lonlat_to_metric(*estimate["geometry"]["coordinates"])
        assert np.linalg.norm(point - db.centres[estimate["properties"]["tile_id"]]) < 0.01
        assert np.allclose(estimate["properties"]["covariance_m2"], FIXED_SIGMA_M ** 2 * np.eye(2), rtol=1e-6)
    # the SAR tile's own ground is one of the database's tiles: its centre is a tile centre
    with rasterio.open(a_sar_tile(tree)) as raster:
        east, north = raster.xy(raster.height / 2, raster.width / 2, offset="ul")
    from pyproj import Transformer
    with rasterio.open(a_sar_tile(tree)) as raster:
        lng, lat = Transformer.from_crs(raster.crs.to_wkt(), "EPSG:4326", always_xy=True).transform(east, north)
    centre = db.frame.lonlat_to_metric(lng, lat)
    assert np.min(np.linalg.norm(db.centres - centre, axis=1)) < 0.3


def test_the_sar_modality_refuses_other_images_and_checkpoints(tree, indexed, tmp_path):
    optical = os.path.join(_aoi(tree, sn6.OPTICAL_DIR), min(os.listdir(_aoi(tree, sn6.OPTICAL_DIR))))
    with pytest.raises(DataError, match=r"SAR tile .* has 3 band\(s\) of uint8; SpaceNet 6's SAR-Intensity has 4"):
        query(indexed, optical, tmp_path / "a.geojson", "--modality", "sar")
    with pytest.raises(DataError, match=r"was trained on sar queries .* query it with --modality sar"):
        query(indexed, a_sar_tile(tree), tmp_path / "b.geojson")
    narrow = str(tmp_path / "narrow.tif")
    with rasterio.open(a_sar_tile(tree)) as src:
        profile = dict(src.profile, width=TILE // 2)
        bands = src.read()[:, :, :TILE // 2]
    with rasterio.open(narrow, "w", **profile) as dst:
        dst.write(bands)
    with pytest.raises(DataError, match=r"SAR tile .* is 32 x 64 px, not square: a SAR tile is square"):
        query(indexed, narrow, tmp_path / "c.geojson", "--modality", "sar")
    assert not any(os.path.exists(tmp_path / f"{k}.geojson") for k in "abc")


def test_a_street_checkpoint_refuses_sar_queries():
    from utils.localization.predict import check_modality
    cfg = load_config(os.path.join(paths.REPO, "configs", "demo.yaml"))
    with pytest.raises(DataError, match=r"trained on street queries .* --modality street, or give a checkpoint "
                                        r"trained on sar tiles"):
        check_modality(cfg, "runs/demo/E_1a/12", "safa", "sar")
