"""CVUSA as SAFA reads it, mapped into the project's one index (`utils.data.dataset.SplitIndex`).

Layout (root = SAFA's `Data/CVUSA/`), from the stored sources:
    root/splits/train-19zl.csv, root/splits/val-19zl.csv      the train and test pairs
    root/bingmap/19/<id>.jpg         aerial images, 750 x 750 (SAFA data_preparation.py: `S = 750`)
    root/streetview/panos/<id>.jpg   panoramas, 1232 x 224 (width x height; SAFA and CVM-Net
                                     input_data: `img.shape[0] != 224 or img.shape[1] != 1232`)
    root/polarmap/19/<id>.png        SAFA's polar-transformed aerials, 616 x 112, written by its
                                     data_preparation.py from bingmap/19 (optional here)

A CSV line is `bingmap/19/<id>.jpg,streetview/panos/<id>.jpg,streetview/annotations/<id>.png`
(no header): the aerial, the panorama and a segmentation annotation, relative to root. SAFA
(script/input_data_cvusa.py) and CVM-Net (src/CVM-Net/input_data.py) read columns 0 and 1 only,
and SAFA's polar path is column 0 with 'bing' -> 'polar' and 'jpg' -> 'png'. Column 2 is not read
here either. Sources: github.com/YujiaoShi/cross_view_localization_SAFA (script/input_data_cvusa.py,
script/data_preparation.py, script/test_cvusa.py), github.com/david-husx/crossview_localisation
(src/CVM-Net/input_data.py); the annotation column as third-party readers of the CSVs show it.

Protocol: one-to-one. Panorama i of a split matches aerial i of the same split and nothing else;
the gallery is the split's aerials. In the index: sat_paths the aerials (or polar aerials),
grd_paths the panoramas, labels[:, 0] = i and, there being no semi-positives, labels[:, 1:] = i
too (so hit rate equals top-1); deltas zero (the aerial is centred on the camera). CVUSA's CSVs
carry no GPS and no resolution: sat_gps, grd_gps and meters_per_pixel are NaN. sat_city and
grd_city are "CVUSA". Metrics: `utils.evaluation.summaries.one_to_one_recalls` (SAFA's r@1, r@5,
r@10, r@1%).
"""
import os

import numpy as np

from utils.data.dataset import SplitIndex
from utils.errors import DataError

TRAIN_CSV = "train-19zl.csv"
TEST_CSV = "val-19zl.csv"
AERIAL_DIR = os.path.join("bingmap", "19")
POLAR_DIR = os.path.join("polarmap", "19")
PANORAMA_DIR = os.path.join("streetview", "panos")
ANNOTATION_DIR = os.path.join("streetview", "annotations")
AERIAL_SIZE = (750, 750)          # width, height
PANORAMA_SIZE = (1232, 224)       # width, height
POLAR_SIZE = (616, 112)           # width, height (SAFA's polar transform)
NAME = "CVUSA"
HELP = "see data/DATASET.md, section CVUSA"


def csv_line(image_id):
    """The CSV line of one pair, as CVUSA's split files have it."""
    return (f"bingmap/19/{image_id}.jpg,streetview/panos/{image_id}.jpg,"
            f"streetview/annotations/{image_id}.png")


def polar_path(aerial):
    """SAFA's polar aerial of an aerial path: bingmap/19/<id>.jpg -> polarmap/19/<id>.png."""
    return aerial.replace("bing", "polar").replace("jpg", "png")


def read_pairs(csv_path, polar=False):
    """[(aerial, panorama, 'csv:line')] of one split file, paths relative to the dataset root."""
    try:
        with open(csv_path) as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        raise DataError(f"{csv_path} not found; put CVUSA's splits/ folder there, {HELP}.") from None
    pairs = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        fields = [field.strip() for field in line.split(",")]
        if len(fields) < 2 or not fields[0] or not fields[1]:
            raise DataError(f"{csv_path}, line {number}: expected 'aerial,panorama[,annotation]', "
                            f"found {line!r}; fix or remove the line, {HELP}.")
        aerial = polar_path(fields[0]) if polar else fields[0]
        pairs.append((aerial, fields[1], f"{csv_path}:{number}"))
    if not pairs:
        raise DataError(f"{csv_path} lists no pair; restore CVUSA's split file, {HELP}.")
    return pairs


def _check_files(root, pairs):
    for aerial, panorama, source in pairs:
        for relative in (aerial, panorama):
            if not os.path.isfile(os.path.join(root, relative)):
                csv_path, _, line = source.rpartition(":")
                raise DataError(f"{csv_path}, line {line}: {os.path.join(root, relative)} is missing; "
                                f"restore it or remove the line, {HELP}.")


def split_index(root, csv_name, polar=False, check_files=True):
    """SplitIndex of one CVUSA split file (one-to-one; see the module docstring)."""
    root = os.path.abspath(str(root))
    csv_path = os.path.join(root, "splits", csv_name)
    pairs = read_pairs(csv_path, polar)
    if check_files:
        _check_files(root, pairs)
    n = len(pairs)
    rows = np.arange(n, dtype=np.int64)
    return SplitIndex(
        sat_paths=np.array([os.path.join(root, aerial) for aerial, _, _ in pairs], dtype=str),
        sat_gps=np.full((n, 2), np.nan),
        sat_city=np.array([NAME] * n, dtype=str),
        grd_paths=np.array([os.path.join(root, panorama) for _, panorama, _ in pairs], dtype=str),
        grd_gps=np.full((n, 2), np.nan),
        grd_city=np.array([NAME] * n, dtype=str),
        labels=np.repeat(rows[:, None], 4, axis=1),
        deltas=np.zeros((n, 4, 2)),
        meters_per_pixel=np.full(n, np.nan),
        name=f"{NAME} {os.path.splitext(csv_name)[0]}" + (" (polar)" if polar else ""),
        grd_source=np.array([source for _, _, source in pairs], dtype=str),
        sat_source=np.array([source for _, _, source in pairs], dtype=str),
        root=root,
        cities=(NAME,),
    )


def load_cvusa(root, polar=False, check_files=True):
    """(train, test) SplitIndex of CVUSA under root: train-19zl.csv and val-19zl.csv.

    polar: the aerials are SAFA's polarmap/19/<id>.png instead of bingmap/19/<id>.jpg.
    check_files: every listed file must exist (a DataError names the CSV, its line and the path)."""
    if not os.path.isdir(str(root)):
        raise DataError(f"CVUSA root {root} does not exist; {HELP}.")
    return (split_index(root, TRAIN_CSV, polar, check_files),
            split_index(root, TEST_CSV, polar, check_files))
