"""The drone scene graph: several drone images of one place, with their cameras' known offsets from
the shared target, localized together (utils/localization/drone_scene.py) from hand-made
mixtures; and the place and camera poses read back from a tiny synthetic University-1652."""
import os

import numpy as np
import pytest

from utils.config import load_config
from utils.data import synthetic_university1652 as su
from utils.data.drone_camera import orbit_position, spiral_poses
from utils.data.university1652_poses import drone_view, load_place_poses
from utils.errors import DataError
from utils.localization import fusion
from utils.localization.drone_scene import (
    SceneGraph,
    localize_places,
    localize_scene,
    retrieve,
    target_mixture,
)
from utils.localization.query import Settings

TARGET = np.array([120.0, -40.0])
WRONG = {"a": np.array([300.0, 80.0]), "b": np.array([-150.0, 10.0]), "c": np.array([60.0, 250.0])}


def mixture(first, second, similarities=(0.9, 0.8)):
    return target_mixture(np.array([first, second]), np.array(similarities), fixed_sigma_m=10.0, temperature=0.2)


def test_images_agreeing_on_a_tile_outvote_each_one_s_wrong_top1():
    """Three images, each with a different wrong tile first and the true tile second: alone each
    is 200+ m off; together the only spot all three vote for wins, whatever the cameras' offsets."""
    mixtures = [mixture(WRONG[k], TARGET) for k in "abc"]
    singles = [fusion.fuse(m).mean for m in mixtures]
    assert all(np.linalg.norm(s - TARGET) > 100 for s in singles)
    for offsets in (np.zeros((3, 2)), np.array([[0.0, 180.0], [155.9, -90.0], [-155.9, -90.0]])):
        joint = localize_scene(SceneGraph(paths=["1", "2", "3"], camera_offsets=offsets), mixtures)
        assert np.allclose(joint.mean, TARGET, atol=1e-6)
        assert np.allclose(joint.cov, 100.0 / 3 * np.eye(2), rtol=1e-3)     # three 10 m votes: sigma^2 / 3


def test_one_image_is_its_own_fused_estimate_and_bad_shapes_are_refused():
    mix = mixture(TARGET, WRONG["a"])
    alone = localize_scene(SceneGraph(paths=["1"], camera_offsets=[[30.0, 40.0]]), [mix])
    assert np.allclose(alone.mean, fusion.fuse(mix).mean)
    with pytest.raises(ValueError, match="2 images, 1 mixtures"):
        localize_scene(SceneGraph(paths=["1", "2"], camera_offsets=np.zeros((2, 2))), [mix])


def test_localize_places_retrieves_by_cosine_and_groups_by_place():
    tiles = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    centres = np.array([TARGET, WRONG["a"], WRONG["b"]])
    queries = np.array([[0.5, 0.9, 0.0], [0.5, 0.0, 0.9], [3.0, 0.0, 0.1]])   # place p: wrong, wrong; q: right
    ids, similarities = retrieve(queries, tiles, 2)
    assert ids.tolist() == [[1, 0], [2, 0], [0, 2]]
    assert np.allclose(similarities[0], [0.9, 0.5] / np.linalg.norm([0.5, 0.9]))
    settings = Settings.from_config(load_config(None, ["localize.top_k=2"]))
    found = localize_places(queries, ["p", "p", "q"], np.zeros((3, 2)), tiles, centres, settings)
    assert [f.place for f in found] == ["p", "q"]
    assert np.allclose(found[0].singles, [WRONG["a"], WRONG["b"]], atol=1e-3)
    assert np.linalg.norm(found[0].joint.mean - TARGET) < 1e-3       # the one tile both images retrieved
    assert np.allclose(found[1].joint.mean, TARGET, atol=1e-3)


def test_place_and_camera_poses_come_from_the_manifest(tmp_path):
    root = su.generate(tmp_path / "u", seed=0, places=4, views=3, size=16, map_metres=400.0, meters_per_pixel=1.0,
                       radius=60.0, satellite_metres=60.0, streets=1, spacing=20.0)
    poses = load_place_poses(root)
    assert poses.satellite_metres == 60.0 and len(poses.positions) == 4
    building = min(os.listdir(os.path.join(root, "test", "gallery_drone")))
    images = sorted(os.listdir(os.path.join(root, "test", "gallery_drone", building)))
    assert [drone_view(name) for name in images] == [0, 1, 2]
    target = poses.position(building)
    for view, name in enumerate(images):
        offset = poses.camera_offset(os.path.join(root, "test", "gallery_drone", building, name))
        assert np.linalg.norm(offset) == pytest.approx(60.0)
        azimuth = spiral_poses(3)[view][1]
        assert np.allclose(target + offset, orbit_position(np.append(target, 0.0), 60.0, 100.0, azimuth)[:2])
    with pytest.raises(DataError, match="not named like a University-1652 drone image"):
        drone_view("street_0.jpg")
    with pytest.raises(DataError, match="synthetic_manifest.json is missing"):
        load_place_poses(tmp_path)
