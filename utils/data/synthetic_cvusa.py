"""A small dataset in CVUSA's released layout (utils/data/cvusa.py), drawn from the synthetic city
(utils/data/synthetic_vigor.py) so that each pair truly corresponds.

Per pair: a camera point on a street of one city map; the aerial image is the north-up crop of
the map centred on it (bingmap/19/<id>.jpg, `aerial_size` pixels square); the panorama is
rendered at the same point, north-aligned (north at the centre column, SAFA's polar convention),
and cropped vertically as CVUSA's are: a band of rows centred on the horizon whose height is
224/1232 of the width (streetview/panos/<id>.jpg). Where CVUSA's crop sits is not stated in the
stored sources; centring it on the horizon is our choice. With `polar`, SAFA's polar aerial
(polarmap/19/<id>.png, half the panorama's width and height, as 616 x 112 is of 1232 x 224) is
written too, by utils/polar.py. The CSVs name an annotation (streetview/annotations/<id>.png);
no annotation is written, as no reader opens them.

Ids are seven digits (0000001, ...), as CVUSA's. A random `val_fraction` of the pairs goes to
val-19zl.csv, the rest to train-19zl.csv, each in id order. Deterministic: the same parameters
give the same bytes (one random stream, no threads, no timings in the manifest).
"""
import json
import os

import cv2
import numpy as np

from utils.data import cvusa
from utils.data.synthetic_vigor import (
    CITY_NAMES,
    MANIFEST,
    STYLES,
    build_city_map,
    city_origin,
    read_manifest,
    render_panorama,
    written_whole,
)
from utils.polar import polar_transform

GENERATOR_VERSION = 1
JPEG = [cv2.IMWRITE_JPEG_QUALITY, 95]
PANORAMA_ASPECT = cvusa.PANORAMA_SIZE[1] / cvusa.PANORAMA_SIZE[0]     # 224 / 1232


def default_parameters(seed=0, pairs=40, aerial_size=256, pano_width=616, meters_per_pixel=0.25,
                       val_fraction=0.2, polar=False):
    return {"version": GENERATOR_VERSION, "seed": int(seed), "pairs": int(pairs), "aerial_size": int(aerial_size),
            "pano_width": int(pano_width), "meters_per_pixel": float(meters_per_pixel),
            "val_fraction": float(val_fraction), "polar": bool(polar)}


def pano_height(width):
    """CVUSA's panorama height for a width (224 at 1232), even."""
    return max(2, 2 * int(round(width * PANORAMA_ASPECT / 2)))


def crop_to_band(equirect, height):
    """The `height` rows of a 2:1 equirectangular panorama centred on its horizon."""
    top = equirect.shape[0] // 2 - height // 2
    return equirect[top:top + height]


def render_pair(city, row, col, aerial_size, pano_width):
    """(aerial crop, CVUSA-cropped panorama) at map position (row, col), both BGR uint8."""
    half = aerial_size // 2
    r, c = int(row), int(col)
    aerial = city.color[r - half:r - half + aerial_size, c - half:c - half + aerial_size]
    full = render_panorama(city, r + 0.5, c + 0.5, width=pano_width, height=pano_width // 2)
    return np.ascontiguousarray(aerial), crop_to_band(full, pano_height(pano_width))


def _camera_points(city, count, border, rng):
    h, w = city.shape
    inner = np.zeros(city.shape, bool)
    inner[border:h - border, border:w - border] = True
    streets = np.argwhere(city.road & inner)
    if len(streets) < count:
        streets = np.argwhere(inner)
    return streets[rng.choice(len(streets), size=count, replace=False)]


def _write(path, image, params=JPEG):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if not cv2.imwrite(path, image, params):
        raise OSError(f"cannot write {path}")


def generate(out_dir, **parameters):
    """Write the synthetic CVUSA to out_dir (replaced if it was ours); returns its path."""
    params = default_parameters(**parameters)
    if params["pairs"] < 2 or params["aerial_size"] < 16 or params["pano_width"] < 32:
        raise ValueError("need at least 2 pairs, 16-pixel aerials and 32-pixel-wide panoramas")
    out_dir = os.path.abspath(str(out_dir))
    with written_whole(out_dir) as work:
        rng = np.random.default_rng([params["seed"], 1232])
        name = CITY_NAMES[params["seed"] % len(CITY_NAMES)]
        border = params["aerial_size"] // 2 + 4
        side = 2 * border + int(np.ceil(np.sqrt(params["pairs"]))) * 96
        city = build_city_map(name, STYLES[name], side, params["meters_per_pixel"], rng,
                              city_origin(name, params["seed"]))
        points = _camera_points(city, params["pairs"], border, rng)
        ids = [f"{k:07d}" for k in range(1, params["pairs"] + 1)]
        for image_id, (row, col) in zip(ids, points):
            aerial, panorama = render_pair(city, row, col, params["aerial_size"], params["pano_width"])
            _write(os.path.join(work, cvusa.AERIAL_DIR, f"{image_id}.jpg"), aerial)
            _write(os.path.join(work, cvusa.PANORAMA_DIR, f"{image_id}.jpg"), panorama)
            if params["polar"]:
                polar = polar_transform(aerial, panorama.shape[0] // 2, panorama.shape[1] // 2)
                _write(os.path.join(work, cvusa.POLAR_DIR, f"{image_id}.png"),
                       np.clip(np.round(polar), 0, 255).astype(np.uint8), [cv2.IMWRITE_PNG_COMPRESSION, 3])
        n_val = max(1, int(round(params["pairs"] * params["val_fraction"])))
        val = set(rng.permutation(params["pairs"])[:n_val].tolist())
        os.makedirs(os.path.join(work, "splits"))
        for csv_name, keep in ((cvusa.TRAIN_CSV, False), (cvusa.TEST_CSV, True)):
            with open(os.path.join(work, "splits", csv_name), "w") as f:
                f.writelines(cvusa.csv_line(image_id) + "\n" for k, image_id in enumerate(ids) if (k in val) == keep)
        pairs = [{"id": image_id, "row": int(r), "col": int(c), "split": "val" if k in val else "train"}
                 for k, (image_id, (r, c)) in enumerate(zip(ids, points))]
        with open(os.path.join(work, MANIFEST), "w") as f:
            json.dump({"dataset": "synthetic CVUSA", "parameters": params, "city": name, "pairs": pairs}, f, indent=1)
    return out_dir


def ensure(out_dir, **parameters):
    """The synthetic CVUSA at out_dir, generated unless it is there with the same parameters."""
    manifest = read_manifest(out_dir)
    if manifest is not None and manifest.get("parameters") == default_parameters(**parameters):
        return os.path.abspath(str(out_dir))
    return generate(out_dir, **parameters)
