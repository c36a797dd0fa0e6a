"""Whether the fine localization reads the panorama: where in its tile each panorama is predicted,
against where it is, among the panoramas of one tile.

A heatmap that reads the panorama moves its point with the panorama (predicted points spread like
the true ones and correlate with them within a tile); a satellite-only prior puts every panorama
of a tile at about the same point, and then the tile's mean prediction errs as little as the
prediction itself.
"""
from dataclasses import asdict, dataclass

import numpy as np

from model.uncertainty import spatial_mean_np, uncertainty_np
from utils.data.prefetch import scan_pairs
from utils.evaluation.scan import heatmap_to_delta

HEAD_INPUT = "L/cholesky_block/dense/xw_plus_b/MatMul"   # its first input: the head's view of the bottleneck


@dataclass
class WithinTile:
    """Offsets in 640-px units; correlations per axis (rows, columns)."""
    predicted_spread: float    # std of the predicted points about their tile's mean prediction
    true_spread: float         # std of the true points about their tile's mean
    spread_ratio: float        # predicted_spread / true_spread
    correlation_rows: float
    correlation_cols: float
    fine_median: float         # median |prediction - truth|
    centre_median: float       # median |truth|: every panorama at its tile's centre
    blind_median: float        # median |tile's mean prediction - truth|: the panorama-blind estimate
    tiles: int                 # tiles with at least 2 panoramas (the within-tile statistics use only those)

    def as_dict(self):
        return asdict(self)


def within_tile(predicted, true, tiles):
    """Per tile, offsets minus the tile's mean (tiles with >= 2 panoramas): (predicted std, true std,
    correlation per axis), and the median error of the panorama-blind estimate (the tile's mean
    prediction for each of its panoramas)."""
    blind = np.empty_like(predicted)
    centred_predicted, centred_true = [], []
    for tile in np.unique(tiles):
        rows = tiles == tile
        blind[rows] = predicted[rows].mean(0)
        if rows.sum() >= 2:
            centred_predicted.append(predicted[rows] - predicted[rows].mean(0))
            centred_true.append(true[rows] - true[rows].mean(0))
    p, t = np.concatenate(centred_predicted), np.concatenate(centred_true)
    correlation = [_correlation(p[:, k], t[:, k]) for k in (0, 1)]
    return p.std(), t.std(), correlation, float(np.median(np.linalg.norm(blind - true, axis=1)))


STILL_PX = 1e-6   # a spread below this (640-px units) is rounding in the tile means, not movement


def _correlation(a, b):
    """Pearson's r; 0 when one side does not vary (a constant prediction carries no position)."""
    if a.std() < STILL_PX or b.std() < STILL_PX:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def measure(predicted, true, tiles):
    """The WithinTile summary of predicted (N, 2) against true (N, 2) offsets of panoramas in `tiles` (N,)."""
    predicted, true = np.asarray(predicted, np.float64), np.asarray(true, np.float64)
    spread, true_spread, correlation, blind = within_tile(predicted, true, np.asarray(tiles))
    return WithinTile(predicted_spread=float(spread), true_spread=float(true_spread),
                      spread_ratio=float(spread / true_spread) if true_spread > 0 else float("nan"),
                      correlation_rows=correlation[0], correlation_cols=correlation[1],
                      fine_median=float(np.median(np.linalg.norm(predicted - true, axis=1))),
                      centre_median=float(np.median(np.linalg.norm(true, axis=1))), blind_median=blind,
                      tiles=int(sum((tiles == t).sum() >= 2 for t in np.unique(tiles))))


def position_probe(train_x, train_true, test_x, test_true, alpha=10.0):
    """Correlation (rows, columns) on the test split of ridge(bottleneck -> true offset), fitted on
    the training split: whether the bottleneck, the decoder's only view of the panorama, carries
    where in the tile the panorama is."""
    mean, std = train_x.mean(0), train_x.std(0) + 1e-8
    a, b = (train_x - mean) / std, (test_x - mean) / std
    w = np.linalg.solve(a.T @ a + alpha * np.eye(a.shape[1]), a.T @ (train_true - train_true.mean(0)))
    predicted = b @ w
    return [float(np.corrcoef(predicted[:, k], test_true[:, k])[0, 1]) for k in (0, 1)]


def positive_pairs(network, loader, index, batch):
    """(bottleneck (N, D), offsets (N, 2), error (N,) in 640-px units, uncertainty (N,)) of a SAMP
    network over a split, each panorama with its positive tile."""
    bottleneck = network.sess.graph.get_operation_by_name(HEAD_INPUT).inputs[0]
    parts = {"bottleneck": [], "offsets": [], "uncertainty": []}
    for (sat, grd), _ in scan_pairs(loader, index, index.labels[:, 0], batch, with_bad=True):
        feed = network.sat_feed(sat)
        feed[network.inputs.grd] = grd
        features, heatmap, L = network.sess.run([bottleneck, network.net["heatmap"], network.net["L"]], feed)
        parts["bottleneck"].append(features)
        parts["offsets"].append(heatmap_to_delta(*spatial_mean_np(heatmap), heatmap.shape[1]))
        parts["uncertainty"].append(uncertainty_np(L))
    offsets = np.concatenate(parts["offsets"])
    error = np.linalg.norm(offsets - index.deltas[:, 0, :], axis=1)
    return np.concatenate(parts["bottleneck"]), offsets, error, np.concatenate(parts["uncertainty"])
