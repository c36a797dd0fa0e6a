"""The original's numpy maths, under the original names (the reference API).

These names mirror the originals so that the original functions and ours give the same numbers
on the same inputs; their paths are listed in docs/ARCHITECTURE.md:
    validate_top, distance_score             SAMP train_fist_E_1.py (= VIGOR train_*.py)
    gps2distance, Lat_Lng, distance_accuracy VIGOR evaluate_from_npy.py
`distance_score` feeds training (the IOU ratio of the semi-positive loss); it stays here, at the
reference API's path. gps2distance and Lat_Lng are defined with the rest of the GPS maths in
utils/data/geo.py, distance_accuracy with the other summaries in utils/evaluation/summaries.py, and
exported here under their reference path. Nothing below training imports this module.
Offsets (`delta`) are in pixels of the 640-pixel tile: row = 320 + delta[0],
column = 320 - delta[1].
"""
import numpy as np

from utils.data.geo import Lat_Lng, gps2distance  # noqa: F401 (the reference API's path)
from utils.evaluation.retrieval import validate_top_blocked
from utils.evaluation.summaries import distance_accuracy  # noqa: F401 (the reference API's path)

def validate_top(grd_descriptor, sat_descriptor, test_label):
    """(top1%, top1, top5, hit_rate) as fractions, with the original's definitions.

    test_label: (N, 4) reference indices, column 0 the positive, 1..3 the semi-positives.
    A query counts for top-k when fewer than k references are strictly closer (distance
    2 - 2 * similarity) than its positive; top1% uses k = int(S * 0.01) + 1; a hit is a query
    with no reference other than its semi-positives strictly closer than the positive.
    Computed block by block (utils/evaluation/retrieval.py), never holding the N x S matrix.
    """
    return validate_top_blocked(grd_descriptor, sat_descriptor, test_label)


def distance_score(delta_1, delta_2, mode="IOU", L=640.):
    """Ratio used by the semi-positive loss: IOU(delta_2) / IOU(delta_1) or |delta_1| / |delta_2|.

    IOU is the overlap-over-union of two L x L squares shifted by |delta|, per row of (B, 2)
    offsets. Mode 'distance' divides the positive's distance by the semi-positive's.
    """
    delta_1 = np.asarray(delta_1)
    delta_2 = np.asarray(delta_2)
    if mode == "distance":
        return _length(delta_1) / _length(delta_2)
    if mode == "IOU":
        return _square_iou(delta_2, L) / _square_iou(delta_1, L)
    raise ValueError(f"distance_score mode must be 'IOU' or 'distance', not {mode!r}")


def _length(delta):
    return np.sqrt(delta[:, 0] * delta[:, 0] + delta[:, 1] * delta[:, 1])


def _square_iou(delta, L):
    overlap = (1.0 - np.abs(delta[:, 0]) / L) * (1.0 - np.abs(delta[:, 1]) / L)
    # intersection / union with union = 2 - intersection, both in units of L * L
    return 1.0 / (1.0 - overlap / 2.0) - 1.0
