"""Does the predicted uncertainty mean something? Ellipse coverage, rank correlation with the
error, and the error per uncertainty quantile.
"""
import math
from typing import Sequence

import numpy as np
from scipy import stats

SIGMA_LEVELS = (1, 2, 3)


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


def _key(value) -> str:
    return f"{value:g}"
