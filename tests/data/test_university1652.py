"""University-1652's released tree: the index, and one line naming the path for each bad tree."""
import os
import shutil

import cv2
import numpy as np
import pytest

from utils.data import university1652 as u
from utils.errors import DataError

TRAIN_BUILDINGS = ("0839", "1069")
QUERY_BUILDINGS = ("0000", "0003")
GALLERY_BUILDINGS = ("0000", "0001", "0003")     # 0001: a distractor, as the real galleries have


def _image(path, seed):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (8, 8, 3), dtype=np.uint8)
    assert cv2.imwrite(path, pixels)


def _view(folder, view, buildings, drones=3):
    for b, building in enumerate(buildings):
        if view == "drone":
            names = [f"image-{k:02d}.jpeg" for k in range(1, drones + 1)]
        elif view == "satellite":
            names = [f"{building}.jpg"]
        else:
            names = [f"{building}_{k}.jpg" for k in range(2)] + ["x.png"]
        for k, name in enumerate(names):
            _image(os.path.join(folder, building, name), seed=b * 100 + k)


def write_tree(root):
    for view in u.TRAIN_VIEWS:
        _view(os.path.join(root, "train", view), view, TRAIN_BUILDINGS)
    for view in u.TEST_VIEWS:
        _view(os.path.join(root, "test", f"query_{view}"), view, QUERY_BUILDINGS)
        _view(os.path.join(root, "test", f"gallery_{view}"), view, GALLERY_BUILDINGS)
    with open(os.path.join(root, "readme.txt"), "w") as f:
        f.write("not an image folder\n")
    return str(root)


@pytest.fixture
def tree(tmp_path):
    return write_tree(tmp_path / "University-1652")


def test_index_of_the_released_layout(tree):
    index = u.load_university1652(tree, images="decode")
    assert set(index.train) == set(u.TRAIN_VIEWS)
    drone = index.train["drone"]
    assert len(drone) == 6
    assert list(drone.building_ids) == ["0839"] * 3 + ["1069"] * 3
    assert list(drone.labels) == [839] * 3 + [1069] * 3
    assert list(drone.class_indices()) == [0, 0, 0, 1, 1, 1]
    assert drone.paths[0] == os.path.join(tree, "train", "drone", "0839", "image-01.jpeg")
    satellite = index.gallery["satellite"]
    assert [os.path.basename(p) for p in satellite.paths] == ["0000.jpg", "0001.jpg", "0003.jpg"]
    assert list(satellite.labels) == [0, 1, 3]
    assert list(index.query["street"].buildings) == list(QUERY_BUILDINGS)
    assert len(index.query["street"]) == 6          # two .jpg and one .png per building


def test_views_can_be_restricted(tree):
    shutil.rmtree(os.path.join(tree, "train", "google"))
    index = u.load_university1652(tree, train_views=("satellite", "drone"), test_views=("drone", "satellite"))
    assert set(index.train) == {"satellite", "drone"} and set(index.query) == {"drone", "satellite"}


def _one_line_error(tree, match, **kwargs):
    with pytest.raises(DataError, match=match) as caught:
        u.load_university1652(tree, **kwargs)
    assert "\n" not in str(caught.value)
    return str(caught.value)


def test_missing_view_folder(tree):
    shutil.rmtree(os.path.join(tree, "test", "gallery_drone"))
    message = _one_line_error(tree, "gallery_drone is missing")
    assert os.path.join(tree, "test", "gallery_drone") in message


def test_empty_building_folder(tree):
    folder = os.path.join(tree, "train", "street", "1069")
    shutil.rmtree(folder)
    os.makedirs(folder)
    message = _one_line_error(tree, "holds no image")
    assert folder in message


def test_building_folder_not_an_id(tree):
    _image(os.path.join(tree, "train", "drone", "tmp", "image-01.jpeg"), 0)
    _one_line_error(tree, "named by their id")


def test_unreadable_image(tree):
    path = os.path.join(tree, "test", "query_drone", "0003", "image-02.jpeg")
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
    message = _one_line_error(tree, "is truncated")
    assert path in message
    with open(path, "wb") as f:
        f.write(b"")
    _one_line_error(tree, "is empty")
    u.load_university1652(tree, images="none")      # headers unread: no error


def test_query_building_absent_from_its_gallery(tree):
    shutil.rmtree(os.path.join(tree, "test", "gallery_satellite", "0003"))
    message = _one_line_error(tree, "building 0003 is absent from gallery_satellite")
    assert os.path.join(tree, "test", "query_drone", "0003") in message


def test_satellite_queries_are_checked_against_the_drone_gallery(tree):
    shutil.rmtree(os.path.join(tree, "test", "gallery_drone", "0000"))
    _one_line_error(tree, "query_satellite.0000: building 0000 is absent from gallery_drone")
