"""CVUSA as SAFA reads it (the index of a tree in the released layout, one-line errors), SAFA's
one-to-one recalls, and the synthetic CVUSA (layout, correspondence, determinism)."""
import filecmp
import json
import os

import cv2
import numpy as np
import pytest

from utils.data import cvusa
from utils.data.synthetic_cvusa import generate, pano_height
from utils.errors import DataError
from utils.evaluation.retrieval import search
from utils.evaluation.summaries import one_to_one_recalls

TRAIN_IDS = ("0000001", "0000002", "0000005")
VAL_IDS = ("0000003", "0000004")


def _image(path, shape):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    assert cv2.imwrite(path, np.full(shape, 90, np.uint8))


def write_tree(root):
    for ids, csv_name in ((TRAIN_IDS, cvusa.TRAIN_CSV), (VAL_IDS, cvusa.TEST_CSV)):
        for image_id in ids:
            _image(os.path.join(root, "bingmap", "19", f"{image_id}.jpg"), (8, 8, 3))
            _image(os.path.join(root, "polarmap", "19", f"{image_id}.png"), (4, 22, 3))
            _image(os.path.join(root, "streetview", "panos", f"{image_id}.jpg"), (4, 22, 3))
        os.makedirs(os.path.join(root, "splits"), exist_ok=True)
        with open(os.path.join(root, "splits", csv_name), "w") as f:
            f.writelines(f"bingmap/19/{i}.jpg,streetview/panos/{i}.jpg,streetview/annotations/{i}.png\n" for i in ids)
    return str(root)


@pytest.fixture
def tree(tmp_path):
    return write_tree(tmp_path / "CVUSA")


def test_index_of_the_released_layout(tree):
    train, test = cvusa.load_cvusa(tree)
    assert (len(train), train.num_sat, len(test), test.num_sat) == (3, 3, 2, 2)
    assert train.grd_paths[2] == os.path.join(tree, "streetview", "panos", "0000005.jpg")
    assert train.sat_paths[2] == os.path.join(tree, "bingmap", "19", "0000005.jpg")
    np.testing.assert_array_equal(train.labels, np.repeat(np.arange(3)[:, None], 4, axis=1))
    assert not train.deltas.any() and np.isnan(train.sat_gps).all() and np.isnan(train.meters_per_pixel).all()
    assert test.grd_source[1] == f"{os.path.join(tree, 'splits', cvusa.TEST_CSV)}:2"
    polar_train, _ = cvusa.load_cvusa(tree, polar=True)
    assert polar_train.sat_paths[0] == os.path.join(tree, "polarmap", "19", "0000001.png")


def test_a_line_naming_a_missing_file_is_one_line(tree):
    os.remove(os.path.join(tree, "streetview", "panos", "0000004.jpg"))
    with pytest.raises(DataError) as error:
        cvusa.load_cvusa(tree)
    message = str(error.value)
    assert "\n" not in message
    assert os.path.join(tree, "splits", cvusa.TEST_CSV) + ", line 2" in message
    assert os.path.join(tree, "streetview", "panos", "0000004.jpg") in message


def test_a_missing_polar_aerial_and_bad_lines(tree):
    os.remove(os.path.join(tree, "polarmap", "19", "0000002.png"))
    cvusa.load_cvusa(tree)                                    # the bingmap aerials are all there
    with pytest.raises(DataError, match=r"train-19zl.csv, line 2: .*polarmap/19/0000002.png is missing"):
        cvusa.load_cvusa(tree, polar=True)
    with open(os.path.join(tree, "splits", cvusa.TRAIN_CSV), "a") as f:
        f.write("bingmap/19/0000009.jpg\n")
    with pytest.raises(DataError, match=r"train-19zl.csv, line 4: expected 'aerial,panorama"):
        cvusa.load_cvusa(tree)
    os.remove(os.path.join(tree, "splits", cvusa.TEST_CSV))
    with pytest.raises(DataError, match="val-19zl.csv not found"):
        cvusa.split_index(tree, cvusa.TEST_CSV)


def _safa_validate(dist_array, top_k):
    """SAFA's script/test_cvusa.py `validate`: dist_array is (aerials, panoramas)."""
    hits = [np.sum(dist_array[:, i] < dist_array[i, i]) < top_k for i in range(dist_array.shape[0])]
    return float(np.mean(hits))


def test_one_to_one_recalls_are_safas():
    rng = np.random.default_rng(0)
    n = 230                                                      # r@1% at K = 2
    grd = rng.normal(size=(n, 8)).astype(np.float64)
    sat = grd + rng.normal(scale=1.6, size=(n, 8))
    grd /= np.linalg.norm(grd, axis=1, keepdims=True)
    sat /= np.linalg.norm(sat, axis=1, keepdims=True)
    result = search(grd, sat, np.arange(n))
    recalls = one_to_one_recalls(result.ranks[:, 0], n)
    dist = 2 - 2 * sat @ grd.T
    top1_percent = int(n * 0.01) + 1
    accuracy = [_safa_validate(dist, k) for k in range(max(11, top1_percent))]
    assert recalls["top1_percent_k"] == 2
    assert recalls["r@1"] == accuracy[1] and recalls["r@5"] == accuracy[5] and recalls["r@10"] == accuracy[10]
    assert recalls["r@1%"] == accuracy[top1_percent - 1]
    assert 0 < recalls["r@1"] < recalls["r@10"] < 1


def test_synthetic_cvusa_layout_correspondence_and_determinism(tmp_path):
    options = dict(seed=3, pairs=5, aerial_size=48, pano_width=88, polar=True)
    first = generate(tmp_path / "a", **options)
    second = generate(tmp_path / "b", **options)
    files = sorted(os.path.relpath(os.path.join(d, f), first) for d, _, names in os.walk(first) for f in names)
    assert all(filecmp.cmp(os.path.join(first, f), os.path.join(second, f), shallow=False) for f in files)
    train, test = cvusa.load_cvusa(first)
    assert (len(train), len(test)) == (4, 1)
    assert cv2.imread(train.grd_paths[0]).shape == (pano_height(88), 88, 3) == (16, 88, 3)
    assert cv2.imread(train.sat_paths[0]).shape == (48, 48, 3)
    polar_train, _ = cvusa.load_cvusa(first, polar=True)
    assert cv2.imread(polar_train.sat_paths[0]).shape == (8, 44, 3)
    with open(os.path.join(first, "synthetic_manifest.json")) as f:
        manifest = json.load(f)
    assert [p["id"] for p in manifest["pairs"] if p["split"] == "val"] == [os.path.basename(test.grd_paths[0])[:7]]
    other = generate(tmp_path / "c", **dict(options, seed=4))
    assert not filecmp.cmp(os.path.join(first, "bingmap", "19", "0000001.jpg"),
                           os.path.join(other, "bingmap", "19", "0000001.jpg"), shallow=False)
