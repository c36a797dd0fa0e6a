"""Evaluation maths (numpy): retrieval accuracy, metre-level localization, calibration, meters.

The first five names mirror the originals (see shared/reference_api.md) so that the original
functions and ours give the same numbers on the same inputs:
    validate_top, distance_score            SAMP train_fist_E_1.py (= VIGOR train_*.py)
    gps2distance, Lat_Lng, distance_accuracy VIGOR evaluate_from_npy.py
Offsets (`delta`) are in pixels of the 640-pixel tile: row = 320 + delta[0],
column = 320 - delta[1].
"""
from __future__ import annotations

import math
from typing import Iterable, Optional, Sequence

import numpy as np
from scipy import stats

from utils.data.geo import Lat_Lng, delta_to_gps, gps2distance, gps_to_delta  # noqa: F401 (re-export)
from utils.evaluation.retrieval import recall_at, top_accuracies, validate_top_blocked

ORIGINAL_METERS_PER_PIXEL = 0.114
WITHIN_METERS = (1, 5, 10, 25, 50)
SIGMA_LEVELS = (1, 2, 3)
# VIGOR's accuracy curve: thresholds 1.1 ** (i / 5) for i = 1 .. 499 (1.02 m to ~1.3 km).
DISTANCE_THRESHOLDS = np.array([1.1 ** (i / 5.0) for i in range(1, 500)])


# ----------------------------------------------------------------- original names
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


def distance_accuracy(distance_list):
    """VIGOR's curve: (thresholds, share of distances strictly below each threshold)."""
    distances = np.asarray(distance_list, dtype=np.float64)
    sorted_distances = np.sort(distances)
    below = np.searchsorted(sorted_distances, DISTANCE_THRESHOLDS, side="left")
    return DISTANCE_THRESHOLDS.copy(), below / distances.shape[0]


# ----------------------------------------------------------------- localization in metres
def predicted_gps(sat_gps, tile_index, offsets=None, meters_per_pixel=ORIGINAL_METERS_PER_PIXEL):
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
                        meters_per_pixel=ORIGINAL_METERS_PER_PIXEL):
    """Metres between each panorama and its prediction in tile `tile_index` (VIGOR's
    generate_distances, with per-tile resolution)."""
    grd_gps = np.asarray(grd_gps, dtype=np.float64)
    prediction = predicted_gps(sat_gps, tile_index, offsets, meters_per_pixel)
    return gps2distance(grd_gps[:, 0], grd_gps[:, 1], prediction[:, 0], prediction[:, 1])


def fine_localization_errors(grd_gps, sat_gps, labels, offsets_positive,
                             meters_per_pixel=ORIGINAL_METERS_PER_PIXEL):
    """Metres of the offsets predicted inside each query's positive tile (labels[:, 0]):
    localization with the correct tile given."""
    positive = np.asarray(labels)[:, 0] if np.ndim(labels) == 2 else np.asarray(labels)
    return localization_errors(grd_gps, sat_gps, positive, offsets_positive, meters_per_pixel)


def true_offsets(grd_gps, sat_gps, tile_index, meters_per_pixel=ORIGINAL_METERS_PER_PIXEL):
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


# ----------------------------------------------------------------- calibration
def expected_inside(k: float) -> float:
    """Probability mass of a 2D Gaussian inside its k-sigma (Mahalanobis radius k) ellipse."""
    return 1.0 - math.exp(-k * k / 2.0)


def mahalanobis_radius(residual, sigma):
    """sqrt(r^T Sigma^-1 r) for (N, 2) residuals and (N, 2, 2) covariances."""
    residual = np.asarray(residual, dtype=np.float64)
    sigma = np.asarray(sigma, dtype=np.float64)
    solved = np.linalg.solve(sigma, residual[..., None])[..., 0]
    return np.sqrt(np.maximum(np.sum(residual * solved, axis=-1), 0.0))


def calibration(residual, sigma, levels: Sequence[float] = SIGMA_LEVELS) -> dict:
    """Observed vs expected share of truths inside the 1/2/3-sigma ellipses.

    residual = true point - predicted mean, in the coordinates Sigma is expressed in.
    """
    radius = mahalanobis_radius(residual, sigma)
    return {"observed": {_key(k): float(np.mean(radius <= k)) for k in levels},
            "expected": {_key(k): expected_inside(k) for k in levels},
            "median_radius": float(np.median(radius)),
            "count": int(radius.size)}


def uncertainty_from_sigma(sigma):
    """SAMP's scalar uncertainty: the sum of the 1-sigma ellipse's two axis lengths,
    2 sqrt(lambda_max) + 2 sqrt(lambda_min)."""
    eigenvalues = np.linalg.eigvalsh(np.asarray(sigma, dtype=np.float64))
    return 2.0 * np.sqrt(np.maximum(eigenvalues, 0.0)).sum(axis=-1)


def spearman(a, b) -> float:
    """Spearman rank correlation (ties get average ranks)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    ra, rb = stats.rankdata(a), stats.rankdata(b)
    ra -= ra.mean()
    rb -= rb.mean()
    denominator = math.sqrt(float(np.sum(ra * ra) * np.sum(rb * rb)))
    return float(np.sum(ra * rb) / denominator) if denominator > 0 else float("nan")


def error_by_quantile(uncertainty, error, bins: int = 5) -> list:
    """Mean and median error in each uncertainty quantile bin (quintiles by default),
    from the least to the most uncertain."""
    uncertainty = np.asarray(uncertainty, dtype=np.float64)
    error = np.asarray(error, dtype=np.float64)
    order = np.argsort(uncertainty, kind="stable")
    rows = []
    for members in np.array_split(order, bins):
        if members.size == 0:
            continue
        rows.append({"uncertainty_min": float(uncertainty[members].min()),
                     "uncertainty_max": float(uncertainty[members].max()),
                     "uncertainty_mean": float(uncertainty[members].mean()),
                     "error_mean": float(error[members].mean()),
                     "error_median": float(np.median(error[members])),
                     "count": int(members.size)})
    return rows


def uncertainty_report(residual, sigma, error, bins: int = 5) -> dict:
    """Calibration, Spearman(uncertainty, error) and error per uncertainty quantile."""
    uncertainty = uncertainty_from_sigma(sigma)
    report = calibration(residual, sigma)
    report["spearman_uncertainty_error"] = spearman(uncertainty, error)
    report["error_by_uncertainty_quantile"] = error_by_quantile(uncertainty, error, bins)
    return report


# ----------------------------------------------------------------- meters for logging
class AverageMeter:
    """Running average of a scalar (the last value, the sum, the count and the mean)."""

    def __init__(self, name: str = ""):
        self.name = name
        self.reset()

    def reset(self):
        self.val, self.sum, self.count = 0.0, 0.0, 0

    def update(self, val, n: int = 1):
        self.val = float(val)
        self.sum += float(val) * n
        self.count += n

    @property
    def avg(self) -> float:
        return self.sum / self.count if self.count else float("nan")

    def __str__(self):
        return f"{self.name} {self.val:.4f} ({self.avg:.4f})"


class MeterGroup:
    """Named AverageMeters updated together: group.update(loss=0.3, loss_1=0.2, n=14)."""

    def __init__(self, names: Optional[Iterable[str]] = None):
        self.meters = {name: AverageMeter(name) for name in (names or ())}

    def update(self, n: int = 1, **values):
        for name, value in values.items():
            self.meters.setdefault(name, AverageMeter(name)).update(value, n)

    def averages(self) -> dict:
        return {name: meter.avg for name, meter in self.meters.items()}

    def reset(self):
        for meter in self.meters.values():
            meter.reset()

    def __str__(self):
        return "  ".join(str(meter) for meter in self.meters.values())


def _key(value) -> str:
    return f"{value:g}"
