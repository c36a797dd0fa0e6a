"""The summaries of one evaluation: retrieval, and localization errors in metres.

Predicted positions use VIGOR's formula (a tile centre moved by its offset, per-tile resolution).
"""
from typing import Iterable, Sequence

import numpy as np

from utils.data.geo import ORIGINAL_MPP, delta_to_gps, gps2distance, gps_to_delta
from utils.evaluation.retrieval import recall_at, top_accuracies

# VIGOR's accuracy curve: thresholds 1.1 ** (i / 5) for i = 1 .. 499 (1.02 m to ~1.3 km).
DISTANCE_THRESHOLDS = np.array([1.1 ** (i / 5.0) for i in range(1, 500)])

WITHIN_METERS = (1, 5, 10, 25, 50)


def predicted_gps(sat_gps, tile_index, offsets=None, meters_per_pixel=ORIGINAL_MPP):
    """(N, 2) GPS of each prediction: tile centre moved by its offset (VIGOR's formula).

    prediction = centre - Lat_Lng(centre, [320 * r, 320 * r]) * delta / 320, with r the
    resolution (m/px at 640 px) of that tile: a scalar or one value per tile (S,).
    offsets None means the tile centre (a model without offset regression).
    """
    sat_gps = np.asarray(sat_gps, dtype=np.float64)
    tile_index = np.asarray(tile_index, dtype=np.int64)
    centre = sat_gps[tile_index]
    if offsets is None:
        return centre
    resolution = np.asarray(meters_per_pixel, dtype=np.float64)
    if resolution.ndim:
        resolution = resolution[tile_index]
    lat, lng = delta_to_gps(centre[:, 0], centre[:, 1], np.asarray(offsets, np.float64), resolution)
    return np.stack([lat, lng], axis=1)


def localization_errors(grd_gps, sat_gps, tile_index, offsets=None,
                        meters_per_pixel=ORIGINAL_MPP):
    """Metres between each panorama and its prediction in tile `tile_index` (VIGOR's
    generate_distances, with per-tile resolution)."""
    grd_gps = np.asarray(grd_gps, dtype=np.float64)
    prediction = predicted_gps(sat_gps, tile_index, offsets, meters_per_pixel)
    return gps2distance(grd_gps[:, 0], grd_gps[:, 1], prediction[:, 0], prediction[:, 1])


def fine_localization_errors(grd_gps, sat_gps, labels, offsets_positive,
                             meters_per_pixel=ORIGINAL_MPP):
    """Metres of the offsets predicted inside each query's positive tile (labels[:, 0]):
    localization with the correct tile given."""
    positive = np.asarray(labels)[:, 0] if np.ndim(labels) == 2 else np.asarray(labels)
    return localization_errors(grd_gps, sat_gps, positive, offsets_positive, meters_per_pixel)


def true_offsets(grd_gps, sat_gps, tile_index, meters_per_pixel=ORIGINAL_MPP):
    """(N, 2) offset of each panorama from the centre of tile `tile_index` (inverse formula)."""
    grd_gps = np.asarray(grd_gps, dtype=np.float64)
    centre = np.asarray(sat_gps, dtype=np.float64)[np.asarray(tile_index, dtype=np.int64)]
    resolution = np.asarray(meters_per_pixel, dtype=np.float64)
    if resolution.ndim:
        resolution = resolution[tile_index]
    return gps_to_delta(centre[:, 0], centre[:, 1], grd_gps[:, 0], grd_gps[:, 1], resolution)


def meter_summary(errors, within: Sequence[float] = WITHIN_METERS) -> dict:
    """Mean, median and the share of errors strictly below each distance in `within`."""
    errors = np.asarray(errors, dtype=np.float64)
    if errors.size == 0:
        return {"count": 0, "mean": None, "median": None, "within": {}}
    return {"count": int(errors.size),
            "mean": float(np.mean(errors)),
            "median": float(np.median(errors)),
            "within": {_key(m): float(np.mean(errors < m)) for m in within}}


def retrieval_summary(positive_ranks, hit_ranks, num_references,
                      ks: Iterable[int] = (1, 5, 10)) -> dict:
    """validate_top's four numbers plus recall@k, from ranks (references strictly closer)."""
    positive_ranks = np.asarray(positive_ranks)
    top1_percent, top1, top5, hit_rate = top_accuracies(positive_ranks, hit_ranks, num_references)
    return {"top1": top1, "top5": top5, "top1_percent": top1_percent, "hit_rate": hit_rate,
            "top1_percent_k": int(num_references * 0.01) + 1,
            "recall": {str(k): recall_at(positive_ranks, k) for k in ks},
            "median_rank": float(np.median(positive_ranks) + 1),
            "mean_rank": float(np.mean(positive_ranks) + 1)}


def one_to_one_recalls(positive_ranks, num_references) -> dict:
    """SAFA's CVUSA/CVACT numbers (script/test_cvusa.py): r@1, r@5, r@10 and r@1%, where a query
    counts at K when fewer than K references are strictly closer than its one match. SAFA's r@1%
    is its accuracy array's last entry, K = int(0.01 * references); VIGOR's and SAMP's top1%
    (`top_accuracies`) use K = int(0.01 * references) + 1."""
    ranks = np.asarray(positive_ranks)
    top1_percent_k = int(num_references * 0.01)
    return {"r@1": recall_at(ranks, 1), "r@5": recall_at(ranks, 5), "r@10": recall_at(ranks, 10),
            "r@1%": recall_at(ranks, top1_percent_k), "top1_percent_k": top1_percent_k}


ONE_TO_ONE = ("r@1", "r@5", "r@10", "r@1%")


def is_one_to_one(labels, num_references) -> bool:
    """Whether SAFA's protocol applies (CVUSA, CVACT): every query has one match (all label columns
    equal) and every reference is the match of exactly one query."""
    labels = np.asarray(labels)
    labels = labels[:, None] if labels.ndim == 1 else labels
    return (labels.shape[0] == num_references and bool((labels == labels[:, :1]).all())
            and np.array_equal(np.sort(labels[:, 0]), np.arange(num_references)))


def _key(value) -> str:
    return f"{value:g}"


def distance_accuracy(distance_list):
    """VIGOR's curve: (thresholds, share of distances strictly below each threshold)."""
    distances = np.asarray(distance_list, dtype=np.float64)
    sorted_distances = np.sort(distances)
    below = np.searchsorted(sorted_distances, DISTANCE_THRESHOLDS, side="left")
    return DISTANCE_THRESHOLDS.copy(), below / distances.shape[0]
