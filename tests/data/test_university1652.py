"""University-1652's released tree (the index, one line naming the path for each bad tree) and the
synthetic city's drone views in its layout (camera geometry, rendering, determinism)."""
import filecmp
import json
import os
import shutil
import time

import cv2
import numpy as np
import pytest

from utils.data import drone_camera as cam
from utils.data import drone_render as render
from utils.data import synthetic_university1652 as su
from utils.data import synthetic_vigor as sv
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


# ---------------------------------------------------------------- drone views of the synthetic city
ROOF, WALL, MARK, GROUND = (0, 0, 255), (255, 0, 0), (0, 255, 0), (100, 100, 100)
BOX_ROWS, BOX_COLS, BOX_HEIGHT = (190, 200), (220, 230), 30.0
MARK_ROWS, MARK_COLS = (150, 158), (148, 156)


def flat_city_with_a_box():
    """400 m x 400 m at 1 m per pixel: grey ground, an 8 m green ground mark, a 30 m box with a red roof."""
    side = 400
    color = np.full((side, side, 3), GROUND, np.uint8)
    height = np.zeros((side, side), np.float32)
    wall = np.zeros((side, side, 3), np.uint8)
    kind = np.zeros((side, side), np.uint8)
    color[MARK_ROWS[0]:MARK_ROWS[1], MARK_COLS[0]:MARK_COLS[1]] = MARK
    box = (slice(*BOX_ROWS), slice(*BOX_COLS))
    color[box], height[box], wall[box], kind[box] = ROOF, BOX_HEIGHT, WALL, sv.KIND_BUILDING
    mips = [cv2.resize(color, (side >> k, side >> k), interpolation=cv2.INTER_AREA) for k in (1, 2, 3)]
    free = kind == 0
    return sv.CityMap(name="Flat", style=sv.STYLES["Chicago"], mpp=1.0, color=color, height=height, wall=wall,
                      kind=kind, road=free, walk=np.zeros_like(free), mips=mips, origin=(41.0, -87.0),
                      rotation=(1.0, 0.0))


def _of_colour(image, colour):
    """Pixels of a pure colour seen through the haze: its 255 channel stays above 180, the others below 80."""
    strong = np.asarray(colour) == 255
    return np.all(image[..., strong] > 180, axis=-1) & np.all(image[..., ~strong] < 80, axis=-1)


def _centroid(image, colour):
    """Mean continuous (u, v) of the pixels of `colour` (pixel j's centre is j + 0.5)."""
    rows, cols = np.nonzero(_of_colour(image, colour))
    assert len(rows) > 4
    return cols.mean() + 0.5, rows.mean() + 0.5


@pytest.fixture(scope="module")
def box_view():
    city = flat_city_with_a_box()
    target = render.raster_to_world(city, 200.0, 200.0)
    camera = cam.orbit_camera(target, radius=150.0, altitude=200.0, azimuth_deg=30.0, size=128, fov_deg=40.0)
    return city, camera, render.render_view(city, camera)


def test_camera_looks_at_its_target_with_no_roll():
    target = np.array([10.0, -20.0, 0.0])
    camera = cam.orbit_camera(target, radius=100.0, altitude=100.0, azimuth_deg=90.0, size=64, fov_deg=60.0)
    np.testing.assert_allclose(camera.position, [110.0, -20.0, 100.0], atol=1e-9)
    np.testing.assert_allclose(camera.rotation @ camera.rotation.T, np.eye(3), atol=1e-12)
    assert abs(camera.rotation[0, 2]) < 1e-12                      # right axis horizontal
    u, v, depth = cam.project(camera, target[None])
    np.testing.assert_allclose([u[0], v[0]], [32.0, 32.0], atol=1e-9)
    assert depth[0] == pytest.approx(100.0 * np.sqrt(2))
    heading, pitch = cam.heading_and_pitch(camera)
    assert heading == pytest.approx(270.0) and pitch == pytest.approx(45.0)   # east of it, looking west and down
    assert camera.focal == pytest.approx(32.0 / np.tan(np.radians(30.0)))


def test_pixel_rays_project_back_to_their_pixels():
    camera = cam.orbit_camera([0.0, 0.0, 0.0], 50.0, 121.5, 200.0, size=16, fov_deg=50.0)
    rays = cam.pixel_rays(camera).reshape(-1, 3)
    u, v, _ = cam.project(camera, camera.position + 37.0 * rays)
    cols, rows = np.meshgrid(np.arange(16) + 0.5, np.arange(16) + 0.5)
    np.testing.assert_allclose(u, cols.ravel(), atol=1e-9)
    np.testing.assert_allclose(v, rows.ravel(), atol=1e-9)


def test_spiral_descends_from_256_to_121_5_metres():
    poses = cam.spiral_poses(54)
    assert poses[0][0] == 256.0 and poses[-1][0] == 121.5 and len(poses) == 54
    assert [a for _, a in cam.spiral_poses(4)] == [0.0, 90.0, 180.0, 270.0]


def test_ground_mark_renders_where_the_camera_model_projects_it(box_view):
    city, camera, image = box_view
    centre = render.raster_to_world(city, np.mean(MARK_ROWS), np.mean(MARK_COLS))
    u, v, _ = cam.project(camera, centre[None])
    np.testing.assert_allclose(_centroid(image, MARK), [u[0], v[0]], atol=1.0)


def test_roof_of_a_tall_box_renders_where_the_camera_model_projects_it(box_view):
    city, camera, image = box_view
    roof = render.raster_to_world(city, np.mean(BOX_ROWS), np.mean(BOX_COLS), BOX_HEIGHT)
    u, v, _ = cam.project(camera, roof[None])
    np.testing.assert_allclose(_centroid(image, ROOF), [u[0], v[0]], atol=1.0)
    foot = render.raster_to_world(city, np.mean(BOX_ROWS), np.mean(BOX_COLS), 0.0)
    assert abs(cam.project(camera, foot[None])[1][0] - v[0]) > 5      # the box is tall in the image, not flat
    assert _of_colour(image, WALL).sum() > 4                          # its walls are seen too


def test_ray_march_renders_a_256_view_quickly():
    city = flat_city_with_a_box()
    camera = cam.orbit_camera(render.raster_to_world(city, 200.0, 200.0), 180.0, 121.5, 0.0, size=256, fov_deg=40.0)
    start = time.perf_counter()
    image = render.render_view(city, camera)
    assert image.shape == (256, 256, 3) and time.perf_counter() - start < 2.0


TINY = dict(places=6, views=2, size=48, map_metres=300.0, meters_per_pixel=1.0, radius=60.0,
            satellite_metres=60.0, spacing=20.0)


def _files(root):
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


def test_synthetic_university1652_same_seed_same_bytes_and_loadable(tmp_path):
    a = su.generate(tmp_path / "a", seed=2, **TINY)
    b = su.generate(tmp_path / "b", seed=2, **TINY)
    c = su.generate(tmp_path / "c", seed=3, **TINY)
    assert _files(a) == _files(b)
    match, mismatch, errors = filecmp.cmpfiles(a, b, _files(a), shallow=False)
    assert not mismatch and not errors
    assert _files(a) != _files(c) or filecmp.cmpfiles(a, c, _files(a), shallow=False)[1]
    index = u.load_university1652(a, images="decode")
    assert len(index.train["drone"]) == 3 * 2 and len(index.train["satellite"]) == 3
    assert len(index.query["satellite"]) + 1 == len(index.gallery["satellite"])   # one distractor
    drone = cv2.imread(index.query["drone"].paths[0])
    assert drone.shape == (48, 48, 3)
    manifest = json.load(open(os.path.join(a, "synthetic_manifest.json")))
    assert [p["drone_poses"][0]["altitude"] for p in manifest["places"]] == [256.0] * 6
