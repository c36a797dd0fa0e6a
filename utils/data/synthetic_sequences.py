"""Held-out synthetic panoramas for localization: sequences a few metres apart along a street, with
known relative offsets, and single validation panoramas (neither in the train nor the test split).

    python -m tools.synthetic_sequences --root data/synthetic [--per-city 8] [--length 4] [--spacing 5]
        [--seed 0] [--folder sequences] [--validation-per-tile 0]

Sequences are for joint localization. The city is redrawn from the dataset's manifest (deterministic), each
sequence starts on a road inside the tile grid and steps `spacing` metres along one of the
street grid's two directions, staying on the road. Writes <city>/sequences/<panorama>.jpg
(VIGOR's names: the true GPS is in the name) and <city>/sequences/sequences.csv: sequence,
panorama, east_m, north_m (metres from the sequence's first panorama). Validation panoramas
(--validation-per-tile) are drawn and rendered as the test split's (street points in each tile's
central quarter, random viewpoint change and foreground) from another random stream, into
<city>/validation/, for tuning localization settings without touching the test split.
"""
import csv
import os

import cv2
import numpy as np

from utils.data.dataset import pano_file_name
from utils.data.synthetic_vigor import (
    FULL_OVERLAP_PX,
    KIND_GROUND,
    Ambiguity,
    QUARTER_LIMIT,
    _pano_prefix,
    city_and_rng,
    read_manifest,
    render_ambiguous_panorama,
    render_panorama,
    sample_points,
    tile_grid,
)
from utils.errors import DataError

SEQUENCE_DIR = "sequences"
SEQUENCE_CSV = "sequences.csv"
VALIDATION_DIR = "validation"
VALIDATION_SEQUENCE_DIR = "validation_sequences"
VALIDATION_SEED = 1            # the test's sequences use seed 0


def street_walks(city, centres, count, length, spacing_m, rng):
    """Up to `count` lists of `length` (row, col) map positions, spacing_m apart along a road."""
    step = spacing_m / city.mpp
    reach = step * (length - 1) + 2
    clearance = cv2.distanceTransform((city.kind == KIND_GROUND).astype(np.uint8), cv2.DIST_L2, 5) * city.mpp
    lo, hi = centres[0] + reach, centres[-1] - reach
    rows, cols = np.nonzero(city.road & (clearance >= 2.5))
    inside = (rows > lo) & (rows < hi) & (cols > lo) & (cols < hi)
    ca, sa = city.rotation
    directions = [np.array([sa, ca]), np.array([ca, -sa])]          # the two street axes, (row, col)
    walks = []
    for k in rng.permutation(np.flatnonzero(inside)):
        start = np.array([rows[k], cols[k]], np.float64) + rng.uniform(0.05, 0.95, 2)
        for direction in rng.permutation(2):
            sign = rng.choice([-1.0, 1.0])
            points = start + sign * step * np.arange(length)[:, None] * directions[direction]
            cells = points.astype(np.int64)
            if city.road[cells[:, 0], cells[:, 1]].all() and (clearance[cells[:, 0], cells[:, 1]] >= 1.0).all():
                walks.append(points)
                break
        if len(walks) == count:
            break
    return walks


def city_folders(root, folder, seed, stream):
    """Per city of the synthetic dataset at root: (parameters, name, city map, tile centres in map
    pixels, a random generator for (seed, city, stream), the output folder <city>/<folder>,
    the city's Ambiguity, the panoramas' view radius in metres or None). The map and the
    panoramas follow the ambiguity switches the city was generated with (its manifest)."""
    manifest = read_manifest(root)
    if manifest is None:
        raise DataError(f"{root} is not a synthetic dataset (no manifest): generate it with "
                        f"python -m tools.synthetic_city --out {root}")
    p = manifest["parameters"]
    ambiguity = Ambiguity(**p.get("ambiguity", {}))
    view_radius_m = FULL_OVERLAP_PX * p["meters_per_pixel"] if ambiguity.full_overlap else None
    for index, name in enumerate(manifest["cities"]):
        city, _ = city_and_rng(name, index, p["seed"], p["tiles_per_side"], p["meters_per_pixel"], p["margin"],
                               p["detail"], ambiguity.repeated_lots)
        out = os.path.join(root, name, folder)
        os.makedirs(out, exist_ok=True)
        yield (p, name, city, tile_grid(p["tiles_per_side"], p["margin"]) // p["detail"],
               np.random.default_rng([seed, index, stream]), out, ambiguity, view_radius_m)


def write_sequences(root, per_city=8, length=4, spacing_m=5.0, seed=0, progress=False, folder=SEQUENCE_DIR):
    """Write the sequences of every city of the synthetic dataset at root into <city>/<folder>;
    returns the CSV paths."""
    written = []
    for p, name, city, centres, rng, out, _, view_radius_m in city_folders(root, folder, seed, 1):
        rows = []
        for n, walk in enumerate(street_walks(city, centres, per_city, length, spacing_m, rng)):
            for row, col in walk:
                lat, lng = city.pixel_to_gps(row, col)
                pano = pano_file_name(_pano_prefix(rng), float(lat), float(lng))
                image = render_panorama(city, row, col, width=p["pano_size"][0], height=p["pano_size"][1],
                                        view_radius_m=view_radius_m)
                cv2.imwrite(os.path.join(out, pano), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
                east, north = (col - walk[0][1]) * city.mpp, -(row - walk[0][0]) * city.mpp
                rows.append({"sequence": f"{name}_{n}", "panorama": pano, "east_m": east, "north_m": north})
        with open(os.path.join(out, SEQUENCE_CSV), "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["sequence", "panorama", "east_m", "north_m"])
            writer.writeheader()
            writer.writerows(rows)
        written.append(os.path.join(out, SEQUENCE_CSV))
        if progress:
            print(f"[sequences] {name}: {len(rows) // max(length, 1)} sequences of {length}", flush=True)
    return written


def write_validation_panoramas(root, per_tile=1.0, seed=VALIDATION_SEED):
    """Fresh panoramas drawn as the test split's, into <city>/validation/ (VIGOR's names: the true
    GPS is in the name); returns the paths of all of them."""
    written = []
    for p, name, city, centres, rng, out, ambiguity, view_radius_m in city_folders(root, VALIDATION_DIR, seed, 2):
        detail = p["detail"]
        for row, col in sample_points(city, centres, per_tile, rng, QUARTER_LIMIT / detail, 1.0 / detail):
            lat, lng = city.pixel_to_gps(row, col)
            path = os.path.join(out, pano_file_name(_pano_prefix(rng), float(lat), float(lng)))
            image, _ = render_ambiguous_panorama(city, row, col, p["pano_size"], rng, ambiguity, view_radius_m)
            cv2.imwrite(path, image, [cv2.IMWRITE_JPEG_QUALITY, 95])
            written.append(path)
    return written
