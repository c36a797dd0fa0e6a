"""localize.py query --modality drone end to end, in process: a tiny University-1652 network trained
here, a database cut from a GeoTIFF of the synthetic city its drone views were rendered in, a
drone view localized to its retrieved tiles' centres with the fixed sigma; the modality checks."""
import json
import os

import numpy as np
import pytest

import localize
import train_university1652 as stage_script
from tests import paths
from utils.config import load_config
from utils.data import synthetic_university1652 as su
from utils.data.synthetic_raster import write_city_raster
from utils.errors import DataError
from utils.localization.database import load_database
from utils.session import checkpoints as ckpt
from utils.training.stage import stage_dir
from utils.training.trainer import run_stage

TINY = dict(places=16, views=3, size=32, map_metres=400.0, meters_per_pixel=1.0, radius=60.0,
            satellite_metres=60.0, streets=1, spacing=20.0)
CONFIG = os.path.join(paths.REPO, "configs", "demo_university1652.yaml")
FIXED_SIGMA_M = 7.0


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return su.generate(tmp_path_factory.mktemp("u1652") / "synthetic_university1652", seed=0, **TINY)


def overrides(tree, runs="runs"):
    return [f"data.root={tree}", f"runs_dir={runs}", "data.sat_size=[32, 32]", "data.grd_size=[32, 32]",
            "model.vgg_width=0.125", "model.bottleneck=16", "validation.scan_batch=16", "stages.U1652.batch_size=4",
            "stages.U1652.steps_per_epoch=1", "stages.U1652.epochs=1", "stages.U1652.validate_every=1",
            "localize.top_k=3", f"localize.fixed_sigma_m={FIXED_SIGMA_M}"]


@pytest.fixture(scope="module")
def indexed(tree, tmp_path_factory):
    """(checkpoint, database, --set arguments): one training step, the city's raster cut and indexed."""
    work = tmp_path_factory.mktemp("drone_localize")
    cfg = load_config(CONFIG, overrides(tree, str(work / "runs")))
    run_stage(stage_script.university1652_stage(8), cfg, show_progress=False)
    checkpoint = ckpt.epoch_dirs(stage_dir(cfg, "U1652"))[-1][1]
    city, _ = su.city_for(su.default_parameters(seed=0, **TINY))
    raster = write_city_raster(str(work), city.color, city.origin, city.mpp, crop=0)
    db = str(work / "db")
    localize.main(["build", "--raster", raster, "--out", db, "--ground-mpp", str(60.0 / 640), "--tile-px", "64", "--stride-px", "64"])
    sets = sum((["--set", o] for o in overrides(tree)), [])
    localize.main(["index", "--checkpoint", checkpoint, "--db", db, "--config", CONFIG, *sets])
    return checkpoint, db, sets


def query(indexed, image, out, *extra):
    checkpoint, db, sets = indexed
    localize.main(["query", "--checkpoint", checkpoint, "--db", db, image, "--out", str(out), "--config", CONFIG,
                   *sets, *extra])
    return json.load(open(out))


def a_drone_view(tree):
    folder = os.path.join(tree, "test", "query_drone")
    building = min(os.listdir(folder))
    return os.path.join(folder, building, "image-01.jpeg")


def test_a_drone_view_is_localized_at_its_tiles_centres_with_the_fixed_sigma(tree, indexed, tmp_path):
    collection = query(indexed, a_drone_view(tree), tmp_path / "drone.geojson", "--modality", "drone")
    db = load_database(indexed[1])
    assert len(db) == 36                                   # 400 m at 60 m a tile: 6 x 6
    features = collection["features"]
    kinds = sorted(f["properties"]["kind"] for f in features)
    assert kinds == sorted(["tile", "tile_estimate", "tile_ellipse"] * 3 + ["fused", "fused_ellipse", "fused_ellipse"])
    for estimate in (f for f in features if f["properties"]["kind"] == "tile_estimate"):
        tile = estimate["properties"]["tile_id"]
        point = db.frame.lonlat_to_metric(*estimate["geometry"]["coordinates"])
        assert np.linalg.norm(point - db.centres[tile]) < 0.01
        assert np.allclose(estimate["properties"]["covariance_m2"], FIXED_SIGMA_M ** 2 * np.eye(2), rtol=1e-6)
    fused = next(f for f in features if f["properties"]["kind"] == "fused")
    point = db.frame.lonlat_to_metric(*fused["geometry"]["coordinates"])
    tiles = [f["properties"]["tile_id"] for f in features if f["properties"]["kind"] == "tile"]
    assert any(db.contains(t, point) for t in tiles)


def test_each_modality_refuses_the_other_s_images_and_checkpoints(tree, indexed, tmp_path):
    from utils.evaluation.inference import network_of_checkpoint
    assert network_of_checkpoint(ckpt.checkpoint_prefix(indexed[0])) == "two_view"      # by its classifier
    street = os.path.join(tree, "test", "query_street")
    panorama = os.path.join(street, min(os.listdir(street)))
    panorama = os.path.join(panorama, min(os.listdir(panorama)))
    with pytest.raises(DataError, match=r"drone view .* is 32 x 16 px, not square: a drone view is square"):
        query(indexed, panorama, tmp_path / "a.geojson", "--modality", "drone")
    with pytest.raises(DataError, match=r"was trained on drone queries .* query it with --modality drone"):
        query(indexed, a_drone_view(tree), tmp_path / "b.geojson")
    assert not os.path.exists(tmp_path / "a.geojson") and not os.path.exists(tmp_path / "b.geojson")


def test_the_released_university1652_needs_its_tiles_ground_size(tree):
    from utils.errors import ConfigError
    from utils.localization.database import training_tile_metres
    assert training_tile_metres(load_config(CONFIG, overrides(tree))) == (60.0, 60.0)      # the manifest's
    with pytest.raises(ConfigError, match="does not state the ground size of its satellite images"):
        training_tile_metres(load_config(CONFIG, ["data.dataset=university1652"]))
    assert training_tile_metres(load_config(CONFIG, ["data.dataset=university1652", "data.resolution=0.2"])) == (128.0, 128.0)
