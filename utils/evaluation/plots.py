"""Figures of the evaluation (matplotlib figures drawn without pyplot, so no backend is chosen
for the process; every function writes one PNG).

Tile coordinates are those of the 640-pixel tile: a point with offset delta is drawn at
x (column) = 320 - delta[1], y (row) = 320 + delta[0].
"""
from __future__ import annotations

import os
from typing import Optional, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Ellipse

TILE_SIDE = 640.0
_COLOURS = ["c", "m", "g", "r", "b", "y", "k", "tab:orange", "tab:brown", "tab:purple"]


def subplots(*grid, figsize, **options):
    """(figure, axes) like pyplot.subplots, on a Figure that no pyplot state holds."""
    figure = Figure(figsize=figsize)
    return figure, figure.subplots(*grid, **options)


def save_figure(figure, path):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path, dpi=110)
    return path


# ----------------------------------------------------------------- accuracy vs distance
def accuracy_curve(curves: Sequence[tuple], path: str, title: Optional[str] = None,
                   x_range=(1.0, 100.0)):
    """VIGOR's figure: localization accuracy (%) against the distance threshold (m).

    curves: (label, thresholds, accuracy fractions) per method, drawn on one log-x plot.
    """
    figure, axis = subplots(figsize=(6.4, 4.8))
    top = 0.0
    for i, (label, thresholds, accuracy) in enumerate(curves):
        thresholds = np.asarray(thresholds, dtype=np.float64)
        accuracy = 100.0 * np.asarray(accuracy, dtype=np.float64)
        axis.plot(thresholds, accuracy, "-", color=_COLOURS[i % len(_COLOURS)], label=label)
        visible = accuracy[(thresholds >= x_range[0]) & (thresholds <= x_range[1])]
        top = max(top, float(visible.max()) if visible.size else 0.0)
    axis.set_xscale("log")
    axis.set_xlim(*x_range)
    ticks = [t for t in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000) if x_range[0] <= t <= x_range[1]]
    axis.set_xticks(ticks, [f"{t:g}" for t in ticks])
    axis.set_ylim(0, min(100.0, max(10.0, 1.1 * top)))
    axis.set_xlabel("Threshold (m)", fontsize=13)
    axis.set_ylabel("Accuracy (%)", fontsize=13)
    axis.grid(linestyle="dotted", which="both")
    axis.legend(loc="upper left", fontsize=10)
    if title:
        axis.set_title(title)
    figure.tight_layout()
    return save_figure(figure, path)


# ----------------------------------------------------------------- calibration
def calibration_plot(report: dict, path: str, title: Optional[str] = None):
    """Left: observed vs expected share inside the 1/2/3-sigma ellipses. Right: error per
    uncertainty quantile (report as returned by calibration.uncertainty_report)."""
    figure, (left, right) = subplots(1, 2, figsize=(10, 4.2))
    levels = list(report["expected"].keys())
    x = np.arange(len(levels))
    targets = report.get("targets") or {"calibrated": {"expected": report["expected"]}}
    width = 0.8 / (len(targets) + 1)
    shades = {"calibrated": ("0.75", "calibrated Gaussian (Sigma = C)"),
              "samp_nll": ("0.45", "SAMP's NLL optimum (Sigma = 2C)")}
    for i, (name, target) in enumerate(targets.items()):
        colour, label = shades.get(name, ("0.6", name))
        label += " <- the loss" if name == report.get("loss_aims_at") else ""
        left.bar(x - 0.4 + width * (i + 0.5), [100 * target["expected"][k] for k in levels], width=width,
                 color=colour, label=label)
    observed = [100 * report["observed"][k] for k in levels]
    left.bar(x + 0.4 - width / 2, observed, width=width, color="tab:blue", label="observed")
    for xi, value in zip(x, observed):
        left.text(xi + 0.4 - width / 2, value + 1, f"{value:.1f}", ha="center", fontsize=8)
    left.set_xticks(x, [f"{k} sigma" for k in levels])
    left.set_ylim(0, 125)
    left.set_ylabel("truth inside the ellipse (%)")
    left.legend(loc="upper left", fontsize=7)
    left.grid(axis="y", linestyle="dotted")

    rows = report.get("error_by_uncertainty_quantile", [])
    if rows:
        q = np.arange(1, len(rows) + 1)
        right.bar(q, [r["error_mean"] for r in rows], color="tab:orange", label="mean error")
        right.plot(q, [r["error_median"] for r in rows], "ko-", label="median error")
        right.set_xticks(q, [f"Q{i}" for i in q])
    rho = report.get("spearman_uncertainty_error")
    right.set_title(f"Spearman(uncertainty, error) = {rho:.3f}" if rho is not None else "")
    right.set_xlabel("uncertainty quantile (low to high)")
    right.set_ylabel("error (m)")
    right.legend(loc="upper left", fontsize=9)
    right.grid(axis="y", linestyle="dotted")
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return save_figure(figure, path)


# ----------------------------------------------------------------- one query
def delta_to_xy(delta) -> np.ndarray:
    """(x = column, y = row) in the 640-px tile of offsets (..., 2)."""
    delta = np.asarray(delta, dtype=np.float64)
    return np.stack([TILE_SIDE / 2 - delta[..., 1], TILE_SIDE / 2 + delta[..., 0]], axis=-1)


def sigma_to_xy(sigma) -> np.ndarray:
    """Covariance over (delta[0], delta[1]) -> over (x, y); x runs against delta[1]."""
    sigma = np.asarray(sigma, dtype=np.float64)
    return np.array([[sigma[1, 1], -sigma[1, 0]], [-sigma[0, 1], sigma[0, 0]]])


def sigma_ellipse(centre_xy, covariance_xy, k: float, **style) -> Ellipse:
    """The k-sigma ellipse (Mahalanobis radius k) of a 2D Gaussian."""
    eigenvalues, eigenvectors = np.linalg.eigh(covariance_xy)
    eigenvalues = np.maximum(eigenvalues, 0.0)
    angle = np.degrees(np.arctan2(eigenvectors[1, 1], eigenvectors[0, 1]))
    return Ellipse(tuple(centre_xy), width=2 * k * np.sqrt(eigenvalues[1]),
                   height=2 * k * np.sqrt(eigenvalues[0]), angle=angle, fill=False, **style)


def read_rgb(path: Optional[str]) -> Optional[np.ndarray]:
    """An image as RGB floats in [0, 1], or None if it cannot be read."""
    if not path or not os.path.exists(path):
        return None
    import cv2
    image = cv2.imread(path)
    return None if image is None else image[:, :, ::-1].astype(np.float32) / 255.0


def query_figure(path: str, sat_image=None, grd_image=None, heatmap=None, pred_delta=None,
                 true_delta=None, sigma=None, title: Optional[str] = None):
    """The tile with the heatmap, the predicted and true points and the 1- and 2-sigma
    ellipses (sigma over delta coordinates), beside the panorama. Missing parts are skipped."""
    figure, (left, right) = subplots(1, 2, figsize=(12, 4.6),
                                         gridspec_kw={"width_ratios": [1, 2]})
    extent = (0, TILE_SIDE, TILE_SIDE, 0)
    if sat_image is not None:
        left.imshow(sat_image, extent=extent)
    else:
        left.imshow(np.full((8, 8, 3), 0.85), extent=extent)
        left.text(TILE_SIDE / 2, 40, "tile image not available", ha="center", fontsize=8)
    if heatmap is not None:
        heat = np.asarray(heatmap, dtype=np.float64)
        heat = heat / heat.max() if heat.max() > 0 else heat
        left.imshow(heat, extent=extent, cmap="jet", alpha=0.45)
    if true_delta is not None:
        x, y = delta_to_xy(true_delta)
        left.plot(x, y, "o", color="lime", markersize=8, markeredgecolor="k", label="true")
    if pred_delta is not None:
        x, y = delta_to_xy(pred_delta)
        left.plot(x, y, "X", color="red", markersize=9, markeredgecolor="k", label="predicted")
        if sigma is not None:
            covariance = sigma_to_xy(sigma)
            for k, style in ((1, "-"), (2, "--")):
                left.add_patch(sigma_ellipse((x, y), covariance, k, color="white",
                                             linestyle=style, linewidth=1.5))
    left.set_xlim(0, TILE_SIDE)
    left.set_ylim(TILE_SIDE, 0)
    left.set_title("aerial tile" + (" (ellipses: 1 and 2 sigma)" if sigma is not None else ""),
                   fontsize=9)
    if pred_delta is not None or true_delta is not None:
        left.legend(loc="lower right", fontsize=8)
    left.axis("off")
    if grd_image is not None:
        right.imshow(grd_image)
    else:
        right.imshow(np.full((8, 16, 3), 0.85))
        right.text(8, 1, "panorama not available", ha="center", fontsize=8)
    right.set_title("ground panorama", fontsize=9)
    right.axis("off")
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return save_figure(figure, path)
