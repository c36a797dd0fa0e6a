"""Within-tile statistics of predicted against true points (utils/evaluation/position.py)."""
import numpy as np
import pytest

from utils.evaluation import position


def panoramas(seed=0, tiles=12, per_tile=(1, 6)):
    rng = np.random.default_rng(seed)
    counts = rng.integers(per_tile[0], per_tile[1] + 1, tiles)
    tile = np.repeat(np.arange(tiles) * 7 + 3, counts)          # tile ids need not be 0..n-1
    true = rng.uniform(-160, 160, (len(tile), 2))
    return tile, true, rng


def direct(predicted, true, tile):
    """The statistics by a second route: group means by np.add.at, pooled sums of products."""
    ids, inverse, counts = np.unique(tile, return_inverse=True, return_counts=True)
    def group_mean(x):
        sums = np.zeros((len(ids), 2))
        np.add.at(sums, inverse, x)
        return sums[inverse] / counts[inverse][:, None]
    keep = counts[inverse] >= 2
    p, t = (predicted - group_mean(predicted))[keep], (true - group_mean(true))[keep]
    corr = [np.sum(p[:, k] * t[:, k]) / np.sqrt(np.sum(p[:, k] ** 2) * np.sum(t[:, k] ** 2)) for k in (0, 1)]
    spread_p, spread_t = np.sqrt(np.mean(p ** 2)), np.sqrt(np.mean(t ** 2))
    blind = np.median(np.hypot(*(group_mean(predicted) - true).T))
    return corr, spread_p, spread_t, blind


def test_perfect_predictions_correlate_1_and_spread_like_the_truth():
    tile, true, _ = panoramas()
    m = position.measure(true.copy(), true, tile)
    assert m.correlation_rows == pytest.approx(1.0) and m.correlation_cols == pytest.approx(1.0)
    assert m.spread_ratio == pytest.approx(1.0)
    assert m.fine_median == 0.0
    assert m.centre_median == pytest.approx(np.median(np.hypot(true[:, 0], true[:, 1])))
    _, _, spread_t, blind = direct(true, true, tile)
    assert m.true_spread == pytest.approx(spread_t) and m.blind_median == pytest.approx(blind)


def test_one_point_per_tile_has_no_spread_and_the_blind_estimate_is_the_prediction():
    tile, true, rng = panoramas(seed=1)
    per_tile = {t: rng.uniform(-100, 100, 2) for t in np.unique(tile)}
    predicted = np.array([per_tile[t] for t in tile])
    m = position.measure(predicted, true, tile)
    assert m.predicted_spread < position.STILL_PX and m.spread_ratio < 1e-9
    assert m.correlation_rows == 0.0 and m.correlation_cols == 0.0
    assert m.blind_median == pytest.approx(m.fine_median)


def test_noisy_predictions_match_the_direct_formula():
    tile, true, rng = panoramas(seed=2)
    tile_offset = {t: rng.uniform(-50, 50, 2) for t in np.unique(tile)}
    predicted = (0.3 * true + rng.normal(0, 20, true.shape) + np.array([tile_offset[t] for t in tile]))
    m = position.measure(predicted, true, tile)
    corr, spread_p, spread_t, blind = direct(predicted, true, tile)
    assert [m.correlation_rows, m.correlation_cols] == pytest.approx(corr)
    assert m.predicted_spread == pytest.approx(spread_p) and m.true_spread == pytest.approx(spread_t)
    assert m.spread_ratio == pytest.approx(spread_p / spread_t)
    assert m.blind_median == pytest.approx(blind)
    assert m.fine_median == pytest.approx(np.median(np.hypot(*(predicted - true).T)))
    assert m.tiles == int(sum((tile == t).sum() >= 2 for t in np.unique(tile)))
    # a tile-level offset moves no within-tile statistic
    shifted = position.measure(predicted + np.array([tile_offset[t] for t in tile]), true, tile)
    assert shifted.correlation_rows == pytest.approx(m.correlation_rows)
    assert shifted.spread_ratio == pytest.approx(m.spread_ratio)
