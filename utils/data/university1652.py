"""In-memory index of University-1652 (Zheng, Wei, Yang, ACM MM 2020, arXiv 2002.12186) as released.

Layout (University1652-Baseline README.md, "More detailed file structure"; tutorial/README.md):
    root/train/{satellite,drone,street,google}/<building id>/<images>
    root/test/{query,gallery}_{satellite,drone,street}/<building id>/<images>
    (root/test/4K_drone/ and root/readme.txt may be present; they are not read)

Facts this reader relies on, with their source:
* A building id is the folder name, four digits ("0000" .. "1651"); the baseline's test.py
  `get_id` turns it into the integer label `int(folder_name)`; torchvision's ImageFolder (train.py)
  numbers the sorted folders 0..C-1 as training classes (`ViewImages.class_indices`).
* Drone images are `image-01.jpeg` .. `image-54.jpeg`, 54 per building (gallery_name.txt of the
  baseline: 51,355 gallery_drone images over 951 buildings, building 0000 has 55; the baseline's
  prepare_limit_view.py parses the two digits after "image-"). Satellite images are one per
  building, `<id>/<id>.jpg` (query_name.txt). Street and google images: several .jpg per
  building under other names; any JPEG/PNG is accepted.
* Test split (README "About Dataset"): query_drone 37,855 images / 701 buildings,
  query_satellite 701 / 701, query_street 2,579 / 701, gallery_drone 51,355 / 951,
  gallery_satellite 951 / 951, gallery_street 2,921 / 793: the galleries hold 250 distractor
  buildings. Training: 50,218 images of 701 buildings (33 universities, disjoint from the 39 of test).
* Protocol (test.py, evaluate_gpu.py): drone -> satellite (task 1, target localisation),
  satellite -> drone (task 2, navigation), street -> satellite; a gallery image is a true match
  when it has the query's building id; Recall@1/5/10, Recall@top1% and AP
  (utils/evaluation/instance_retrieval.py). So every building of query_drone and query_street
  must be in gallery_satellite, and every building of query_satellite in gallery_drone.
* Image sizes are not enforced here: the stored sources above do not state them (the paper's
  drone frames are rendered from Google Earth; check a downloaded copy with `cv2.imread`).
"""
import os
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from utils.data.dataset import image_problem
from utils.errors import DataError

TRAIN_VIEWS = ("satellite", "drone", "street", "google")
TEST_VIEWS = ("satellite", "drone", "street")
QUERY_TARGETS = {"drone": "satellite", "satellite": "drone", "street": "satellite"}   # query view -> gallery view
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
HELP = "see data/DATASET.md for University-1652's layout"


@dataclass
class ViewImages:
    paths: np.ndarray          # (N,) str absolute paths, sorted by building then file name
    labels: np.ndarray         # (N,) int64 building id as an integer (the baseline's label)
    building_ids: np.ndarray   # (N,) str building id, the folder name ("0839")

    def __len__(self):
        return len(self.paths)

    @property
    def buildings(self):
        """The sorted distinct building ids (str)."""
        return np.unique(self.building_ids)

    def class_indices(self):
        """(N,) int64 training classes 0..C-1 in sorted building order (ImageFolder's numbering)."""
        return np.searchsorted(self.buildings, self.building_ids).astype(np.int64)


@dataclass
class University1652Index:
    root: str
    train: dict     # view -> ViewImages
    query: dict     # view -> ViewImages
    gallery: dict   # view -> ViewImages


def split_folder(kind, view):
    return f"{kind}_{view}"


def _is_image(name):
    return name.lower().endswith(IMAGE_EXTENSIONS)


def read_view(folder):
    """ViewImages of one view folder (<building id>/<images>); DataError naming the folder at fault."""
    if not os.path.isdir(folder):
        raise DataError(f"{folder} is missing; restore the view folder, {HELP}.")
    paths, ids = [], []
    for building in sorted(os.listdir(folder)):
        path = os.path.join(folder, building)
        if not os.path.isdir(path):
            continue
        if not building.isdigit():
            raise DataError(f"{path}: building folders are named by their id (digits, e.g. 0839); rename or remove it, {HELP}.")
        images = sorted(name for name in os.listdir(path) if _is_image(name))
        if not images:
            raise DataError(f"{path} holds no image (.jpg, .jpeg, .png); restore its images or remove the folder, {HELP}.")
        paths += [os.path.join(path, name) for name in images]
        ids += [building] * len(images)
    if not paths:
        raise DataError(f"{folder} holds no building folder; restore the view, {HELP}.")
    ids = np.array(ids)
    return ViewImages(paths=np.array(paths), labels=ids.astype(np.int64), building_ids=ids)


def check_view_images(images, decode=False, progress=False):
    """DataError for the first unreadable image (missing, empty, truncated; undecodable with `decode`)."""
    for path in tqdm(images.paths, desc="University-1652 images", unit="img", disable=not progress):
        problem = image_problem(path, decode)
        if problem:
            raise DataError(f"image {path} {problem}; restore it or remove it, {HELP}.")


def check_queries_in_galleries(root, query, gallery):
    for view, images in query.items():
        target = QUERY_TARGETS[view]
        if target not in gallery:
            continue
        absent = np.setdiff1d(images.buildings, gallery[target].buildings)
        if len(absent):
            folder = os.path.join(root, "test", split_folder("query", view), absent[0])
            raise DataError(f"{folder}: building {absent[0]} is absent from {split_folder('gallery', target)} "
                            f"({len(absent)} such buildings); restore the gallery or remove the query, {HELP}.")


def load_university1652(root, train_views=TRAIN_VIEWS, test_views=TEST_VIEWS, images="header", progress=False):
    """Index University-1652 under root.

    images: "none" (no image is opened), "header" (missing, empty or truncated files are errors;
    reads each file's first and last bytes) or "decode" (every image decoded by OpenCV, slow)."""
    if images not in ("none", "header", "decode"):
        raise ValueError(f"images must be 'none', 'header' or 'decode', not {images!r}")
    root = os.path.abspath(str(root))
    if not os.path.isdir(root):
        raise DataError(f"{root} is not a folder; download University-1652 there, {HELP}.")
    train = {view: read_view(os.path.join(root, "train", view)) for view in train_views}
    query = {view: read_view(os.path.join(root, "test", split_folder("query", view))) for view in test_views}
    gallery = {view: read_view(os.path.join(root, "test", split_folder("gallery", view))) for view in test_views}
    check_queries_in_galleries(root, query, gallery)
    if images != "none":
        for part in (train, query, gallery):
            for view_images in part.values():
                check_view_images(view_images, decode=images == "decode", progress=progress)
    return University1652Index(root=root, train=train, query=query, gallery=gallery)
