"""Does the predicted 2D Gaussian mean what it says? Coverage of the k-sigma ellipses under the
two conventions a loss can aim at, the scale the predictions actually have, and whether the
scalar uncertainty follows the error and the known difficulty of a query.

SAMP's stage-2.2 loss is 1/2 log det Sigma + r^T Sigma^-1 r (no 1/2 on the second term). For
residuals r ~ N(0, C) its expectation 1/2 log det Sigma + tr(Sigma^-1 C) is smallest where
1/2 Sigma^-1 - Sigma^-1 C Sigma^-1 = 0, i.e. Sigma = 2 C. With Sigma = s C the squared
Mahalanobis radius r^T Sigma^-1 r is chi2(2) / s, so the k-sigma ellipse holds
1 - exp(-s k^2 / 2): 39.3 / 86.5 / 98.9 % for s = 1 (a calibrated Gaussian, the optimum of the
textbook NLL with 1/2 on both terms) and 63.2 / 98.2 / 99.99 % for s = 2 (SAMP's loss).
docs/CALIBRATION.md has the derivation; tests/evaluation/test_calibration.py checks it on samples.
"""
import math
from typing import Optional, Sequence

import numpy as np
from scipy import stats

SIGMA_LEVELS = (1.0, 2.0, 3.0)
# Sigma / error covariance at the optimum of each loss: the two coverage targets.
CONVENTIONS = {"calibrated": 1.0, "samp_nll": 2.0}
LOSS_TARGET = "samp_nll"
TOLERANCE_POINTS = 15.0


def optimal_sigma_scale(mahalanobis_weight: float = 1.0, log_det_weight: float = 0.5) -> float:
    """s in Sigma* = s C for the loss log_det_weight log det Sigma + mahalanobis_weight r^T Sigma^-1 r."""
    return mahalanobis_weight / log_det_weight


def expected_inside(k: float, scale: float = 1.0) -> float:
    """Share of r ~ N(0, C) inside the k-sigma ellipse of Sigma = scale C: P(chi2(2) <= scale k^2)."""
    return 1.0 - math.exp(-scale * k * k / 2.0)


def mahalanobis_radius(residual, sigma):
    """sqrt(r^T Sigma^-1 r) for (N, 2) residuals and (N, 2, 2) covariances."""
    residual = np.asarray(residual, dtype=np.float64)
    sigma = np.asarray(sigma, dtype=np.float64)
    solved = np.linalg.solve(sigma, residual[..., None])[..., 0]
    return np.sqrt(np.maximum(np.sum(residual * solved, axis=-1), 0.0))


def fitted_scale(radius) -> float:
    """The s for which the radii look like Sigma = s C: median chi2(2) (= 2 ln 2) / median r^2."""
    median = float(np.median(np.square(radius)))
    return 2.0 * math.log(2.0) / median if median > 0 else float("inf")


def _key(value) -> str:
    return f"{value:g}"


def calibration(residual, sigma, levels: Sequence[float] = SIGMA_LEVELS,
                tolerance_points: float = TOLERANCE_POINTS) -> dict:
    """Observed share of truths inside the k-sigma ellipses against both targets.

    residual = true point - predicted mean, in the coordinates Sigma is expressed in.
    "expected" is the calibrated Gaussian (kept for older readers); "targets" holds both
    conventions with the gap in percentage points; "loss_aims_at" names SAMP's.
    """
    radius = mahalanobis_radius(residual, sigma)
    observed = {_key(k): float(np.mean(radius <= k)) for k in levels}
    targets = {}
    for name, scale in CONVENTIONS.items():
        expected = {_key(k): expected_inside(k, scale) for k in levels}
        gap = {key: 100.0 * (observed[key] - expected[key]) for key in expected}
        targets[name] = {"sigma_over_error_covariance": scale, "expected": expected, "gap_points": gap,
                         "within_tolerance": bool(all(abs(g) <= tolerance_points for g in gap.values()))}
    return {"observed": observed, "expected": targets["calibrated"]["expected"], "targets": targets,
            "loss_aims_at": LOSS_TARGET, "tolerance_points": tolerance_points,
            "fitted_scale": fitted_scale(radius), "median_radius": float(np.median(radius)),
            "count": int(radius.size)}


def coverage_markdown(report: dict) -> list:
    """Markdown lines: observed coverage against both targets, which one the loss aims at."""
    levels = list(report["observed"])
    lines = ["| truth inside the k-sigma ellipse (%) | " + " | ".join(f"{k} sigma" for k in levels) + " |",
             "|---" * (len(levels) + 1) + "|",
             "| observed | " + " | ".join(f"{100 * report['observed'][k]:.1f}" for k in levels) + " |"]
    labels = {"calibrated": "calibrated Gaussian (Sigma = C)", "samp_nll": "SAMP's NLL optimum (Sigma = 2C)"}
    for name, target in report.get("targets", {}).items():
        aimed = " (what the loss fits)" if name == report.get("loss_aims_at") else ""
        lines.append(f"| {labels.get(name, name)}{aimed} | "
                     + " | ".join(f"{100 * target['expected'][k]:.1f}" for k in levels) + " |")
    if "fitted_scale" in report:
        lines += ["", f"The predicted Sigma is {report['fitted_scale']:.3g} x the covariance the residuals "
                      f"have (fitted from the median Mahalanobis radius); the loss aims at 2."]
    return lines


def uncertainty_from_sigma(sigma):
    """SAMP's scalar uncertainty: the sum of the 1-sigma ellipse's two axis lengths,
    2 sqrt(lambda_max) + 2 sqrt(lambda_min)."""
    eigenvalues = np.linalg.eigvalsh(np.asarray(sigma, dtype=np.float64))
    return 2.0 * np.sqrt(np.maximum(eigenvalues, 0.0)).sum(axis=-1)


def spearman(a, b) -> Optional[float]:
    """Spearman rank correlation (ties get average ranks); None when either side is constant (or
    holds a NaN)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.size < 2 or np.all(a == a.flat[0]) or np.all(b == b.flat[0]):
        return None
    value = float(stats.spearmanr(a, b).statistic)
    return None if math.isnan(value) else value


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
    """Calibration against both targets, Spearman(uncertainty, error), error per uncertainty quantile."""
    uncertainty = uncertainty_from_sigma(sigma)
    report = calibration(residual, sigma)
    report["spearman_uncertainty_error"] = spearman(uncertainty, error)
    report["error_by_uncertainty_quantile"] = error_by_quantile(uncertainty, error, bins)
    return report


def by_quantile(key, values: dict, bins: int = 5) -> list:
    """Mean of each array in `values` inside the quantile bins of `key` (low to high)."""
    key = np.asarray(key, dtype=np.float64)
    order = np.argsort(key, kind="stable")
    rows = []
    for members in np.array_split(order, bins):
        if members.size:
            row = {"min": float(key[members].min()), "max": float(key[members].max()), "count": int(members.size)}
            row.update({name: float(np.mean(np.asarray(v, dtype=np.float64)[members])) for name, v in values.items()})
            rows.append(row)
    return rows


def difficulty_report(uncertainty, error, difficulty: dict, bins: int = 3) -> dict:
    """Does the uncertainty (and the error) follow each known difficulty of the queries?

    difficulty: name -> (N,) array, e.g. the synthetic city's per-panorama ambiguity sources and
    their combined score. Returns Spearman(uncertainty, d), Spearman(error, d) per name and, for
    the combined score ("difficulty" if present), mean uncertainty and error per tercile.
    """
    report = {"spearman_uncertainty": {}, "spearman_error": {}}
    for name, values in difficulty.items():
        report["spearman_uncertainty"][name] = spearman(uncertainty, values)
        report["spearman_error"][name] = spearman(error, values)
    if "difficulty" in difficulty:
        report["by_difficulty"] = by_quantile(difficulty["difficulty"],
                                              {"uncertainty": uncertainty, "error": error}, bins)
    return report
