"""Linear probes: how much of the true offset a layer's activations still carry.

A ridge regression from features (N, D) to the true offset (N, 2), fitted on the training
split (its alpha chosen by K-fold cross-validation on the training split only) and read on the
test split, as the correlation per axis (rows, columns) and R^2 of its predictions.

`within_tile=True` first subtracts, within each split, every positive tile's mean from the
features and from the offsets of its panoramas: the probe then cannot use which tile it is
(the tile's mean offset), only where the panorama lies inside it. A layer whose features are
the same for every panorama of a tile (the satellite branch) reads zero there.

Conv maps are average-pooled to a small grid first (`pool_map`), so D stays in the thousands.
numpy only.
"""
from dataclasses import dataclass

import numpy as np

ALPHA_GRID = np.logspace(-4, 2, 13)   # times the mean squared singular value of the training features
FOLDS = 5


def pool_map(x, grid):
    """(N, H, W, C) -> (N, gh * gw * C): the mean over gh x gw blocks (np.array_split's, so any side
    works; a side smaller than the grid is kept). A (N, D) array is returned as it is."""
    x = np.asarray(x, np.float64)
    if x.ndim == 2:
        return x
    if x.ndim != 4:
        raise ValueError(f"pool_map takes (N, D) or (N, H, W, C) arrays, not shape {x.shape}")
    rows = np.array_split(np.arange(x.shape[1]), min(grid[0], x.shape[1]))
    cols = np.array_split(np.arange(x.shape[2]), min(grid[1], x.shape[2]))
    blocks = [x[:, r[0]:r[-1] + 1, c[0]:c[-1] + 1, :].mean(axis=(1, 2)) for r in rows for c in cols]
    return np.concatenate(blocks, axis=1)


def demean_by_group(values, groups):
    """values minus the mean of their group's rows."""
    values = np.asarray(values, np.float64)
    groups = np.asarray(groups)
    _, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    sums = np.zeros((len(counts),) + values.shape[1:])
    np.add.at(sums, inverse, values)
    return values - (sums / counts.reshape((-1,) + (1,) * (values.ndim - 1)))[inverse]


@dataclass
class Standardiser:
    mean: np.ndarray
    scale: np.ndarray            # 0 for a column that does not vary on the training split (dropped)

    @classmethod
    def fit(cls, x):
        mean, std = x.mean(0), x.std(0)
        live = std > 1e-6 * (np.abs(mean) + std.max() + 1e-30)
        return cls(mean, np.where(live, 1.0 / np.where(live, std, 1.0), 0.0))

    def __call__(self, x):
        return (x - self.mean) * self.scale


def ridge_weights(x, y, alpha):
    """argmin_w |x w - y|^2 + alpha |w|^2 (no intercept), in its dual form x^T (x x^T + alpha I)^-1 y."""
    return x.T @ np.linalg.solve(x @ x.T + alpha * np.eye(len(x)), y)


def _folds(n, folds, seed, groups=None):
    """Held-out rows of each fold: random rows, or whole groups when groups are given (rows
    demeaned within a group sum to zero, so held-out rows of a group seen in training would leak)."""
    rng = np.random.default_rng(seed)
    if groups is None:
        return np.array_split(rng.permutation(n), folds)
    names, inverse = np.unique(np.asarray(groups), return_inverse=True)
    return [np.flatnonzero(np.isin(inverse, part)) for part in np.array_split(rng.permutation(len(names)), folds)]


def _cv_errors(gram, y, alphas, folds, seed, groups=None):
    """Mean squared validation error of each alpha over `folds` folds (see _folds), from the Gram
    matrix of the standardised features (dual ridge: a fold costs an eigendecomposition of its
    rows' Gram block, whatever the number of features)."""
    order = np.arange(len(y))
    errors = np.zeros(len(alphas))
    for held in _folds(len(y), folds, seed, groups):
        kept = np.setdiff1d(order, held)
        values, vectors = np.linalg.eigh(gram[np.ix_(kept, kept)])
        centre = y[kept].mean(0)
        projected, cross = vectors.T @ (y[kept] - centre), gram[np.ix_(held, kept)] @ vectors
        for k, alpha in enumerate(alphas):
            predicted = cross @ (projected / (np.maximum(values, 0.0) + alpha)[:, None]) + centre
            errors[k] += np.sum((predicted - y[held]) ** 2)
    return errors / len(y)


@dataclass
class RidgeProbe:
    scaler: Standardiser
    weights: np.ndarray          # (D, 2) on standardised features
    intercept: np.ndarray        # (2,) the training offsets' mean
    alpha: float

    def predict(self, x):
        return self.scaler(np.asarray(x, np.float64)) @ self.weights + self.intercept


def fit_probe(x, y, alpha_grid=ALPHA_GRID, folds=FOLDS, seed=0, groups=None):
    """Ridge probe x (N, D) -> y (N, k) on standardised x; alpha = grid x mean(s^2) of the
    standardised x, the one with the smallest K-fold cross-validated error on (x, y) (folds of
    whole groups when given; the features are standardised once, on all of x)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError(f"probe features hold {int(np.sum(~np.isfinite(x)))} non-finite values")
    scaler = Standardiser.fit(x)
    a = scaler(x)
    gram = a @ a.T
    alphas = np.asarray(alpha_grid) * max(float(np.trace(gram)) / min(a.shape), 1e-12)
    alpha = float(alphas[int(np.argmin(_cv_errors(gram, y, alphas, folds, seed, groups)))])
    centre = y.mean(0)
    dual = np.linalg.solve(gram + alpha * np.eye(len(a)), y - centre)
    return RidgeProbe(scaler, a.T @ dual, centre, alpha)


def correlation(a, b):
    """Pearson correlation; 0 where either side is constant."""
    a, b = a - a.mean(), b - b.mean()
    norm = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / norm) if norm > 1e-30 else 0.0


@dataclass
class ProbeResult:
    correlation: tuple           # (rows, columns) on the test split
    r2: float                    # 1 - SSE / SST over both axes, test split
    alpha: float
    dims: int


def probe(train_x, train_y, test_x, test_y, train_tiles=None, test_tiles=None, within_tile=False, seed=0):
    """Fit on the training split, read on the test split.

    within_tile: features and offsets minus their tile's mean in each split (tiles needed); the
    panoramas alone in their tile are left out, and so are the columns that do not vary within
    tiles (std below 1e-5 of the column's raw scale: a satellite feature, up to float noise)."""
    train_x, test_x = np.asarray(train_x, np.float64), np.asarray(test_x, np.float64)
    train_y, test_y = np.asarray(train_y, np.float64), np.asarray(test_y, np.float64)
    groups = None
    if within_tile:
        if train_tiles is None or test_tiles is None:
            raise ValueError("a within-tile probe needs the positive tile of every panorama of both splits")
        raw_scale = train_x.std(0) + np.abs(train_x.mean(0))
        train_x, train_y, shared = _within(train_x, train_y, train_tiles)
        groups = np.asarray(train_tiles)[shared]
        test_x, test_y, _ = _within(test_x, test_y, test_tiles)
        varies = train_x.std(0) > 1e-5 * raw_scale
        train_x, test_x = train_x[:, varies], test_x[:, varies]
    if train_x.shape[1] == 0:
        return ProbeResult((0.0,) * test_y.shape[1], 0.0, float("nan"), 0)
    fitted = fit_probe(train_x, train_y, seed=seed, groups=groups)
    predicted = fitted.predict(test_x)
    sst = float(np.sum((test_y - test_y.mean(0)) ** 2))
    r2 = 1.0 - float(np.sum((predicted - test_y) ** 2)) / sst if sst > 0 else 0.0
    return ProbeResult(tuple(correlation(predicted[:, k], test_y[:, k]) for k in range(test_y.shape[1])),
                       r2, fitted.alpha, train_x.shape[1])


def _within(x, y, tiles):
    """x and y minus their tile's mean, for the rows whose tile holds at least two of them."""
    tiles = np.asarray(tiles)
    _, inverse, counts = np.unique(tiles, return_inverse=True, return_counts=True)
    shared = counts[inverse] >= 2
    return demean_by_group(x[shared], tiles[shared]), demean_by_group(y[shared], tiles[shared]), shared
