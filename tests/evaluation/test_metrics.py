"""Evaluation maths on hand-made cases with known answers."""
import math

import numpy as np
import pytest

from utils.evaluation.calibration import (
    calibration,
    error_by_quantile,
    spearman,
    uncertainty_from_sigma,
    uncertainty_report,
)
from utils.evaluation.summaries import (
    localization_errors,
    meter_summary,
    predicted_gps,
    retrieval_summary,
    true_offsets,
)
from utils.metrics import Lat_Lng, distance_accuracy, distance_score, gps2distance, validate_top


def _angles(degrees):
    radians = np.radians(np.asarray(degrees, dtype=np.float64))
    return np.stack([np.cos(radians), np.sin(radians)], axis=1).astype(np.float32)


def _loop_validate_top(grd, sat, labels):
    """The original's per-query loop over the full distance matrix."""
    dist = 2 - 2 * np.matmul(grd, sat.T)
    top1_percent = int(dist.shape[1] * 0.01) + 1
    counts = np.zeros(4)
    for i in range(dist.shape[0]):
        gt = dist[i, labels[i][0]]
        prediction = np.sum(dist[i] < gt)
        keep = np.ones(dist.shape[1])
        keep[labels[i][1:]] = 0
        prediction_hit = np.sum((dist[i] < gt) * keep)
        counts += [prediction < top1_percent, prediction < 1, prediction < 5, prediction_hit < 1]
    return tuple(counts / dist.shape[0])


# ----------------------------------------------------------------- validate_top
def test_validate_top_hand_made():
    # references at 0..50 degrees, plus index 6 an exact copy of index 0 (a tie)
    sat = _angles([0, 10, 20, 30, 40, 50, 0])
    grd = _angles([0, 12, 45])
    labels = np.array([[0, 1, 2, 3]] * 3)
    # query 0: nothing strictly closer than its positive (the copy ties) -> top1, top5, hit
    # query 1: two semi-positives (10 and 20 deg) closer -> rank 2: top5 and hit, not top1
    # query 2: refs 1..5 closer, two of them (40, 50 deg) not semi-positive -> nothing
    top1_percent, top1, top5, hit = validate_top(grd, sat, labels)
    assert int(sat.shape[0] * 0.01) + 1 == 1
    assert (top1_percent, top1, top5, hit) == pytest.approx((1 / 3, 1 / 3, 2 / 3, 2 / 3))


def test_validate_top_equals_original_loop():
    rng = np.random.default_rng(3)
    grd = rng.standard_normal((150, 12)).astype(np.float32)
    sat = rng.standard_normal((400, 12)).astype(np.float32)
    grd /= np.linalg.norm(grd, axis=1, keepdims=True)
    sat /= np.linalg.norm(sat, axis=1, keepdims=True)
    labels = rng.integers(0, 400, (150, 4))
    grd[:60] = sat[labels[:60, 0]] + 0.3 * grd[:60]  # some queries near their positive
    grd /= np.linalg.norm(grd, axis=1, keepdims=True)
    sat[7] = sat[8]
    assert validate_top(grd, sat, labels) == _loop_validate_top(grd, sat, labels)
    g64, s64 = grd.astype(np.float64), sat.astype(np.float64)
    assert validate_top(g64, s64, labels) == _loop_validate_top(g64, s64, labels)


def test_retrieval_summary_from_ranks():
    summary = retrieval_summary(np.array([0, 2, 5, 0]), np.array([0, 0, 2, 1]), 400)
    assert summary["top1"] == 0.5 and summary["top5"] == 0.75
    assert summary["top1_percent_k"] == 5 and summary["top1_percent"] == 0.75
    assert summary["hit_rate"] == 0.5
    assert summary["recall"]["10"] == 1.0
    assert summary["median_rank"] == 2.0


# ----------------------------------------------------------------- distance_score
def test_distance_score_iou():
    zero = np.zeros((3, 2))
    half = np.array([[320.0, 0.0], [0.0, -320.0], [320.0, 320.0]])
    # IOU of two 640-px squares: 1 at zero offset; 1/3 at half a side; (1/4)/(7/4) at both
    np.testing.assert_allclose(distance_score(zero, half), [1 / 3, 1 / 3, 1 / 7])
    border = np.array([[640.0, 0.0], [0.0, 640.0], [-640.0, 100.0]])
    np.testing.assert_allclose(distance_score(zero, border), [0.0, 0.0, 0.0])
    with np.errstate(divide="ignore"):
        assert np.all(np.isinf(distance_score(border, zero)))
    np.testing.assert_allclose(distance_score(zero, zero), [1.0, 1.0, 1.0])
    np.testing.assert_allclose(distance_score(half[:1], half[:1], L=1280.0), [1.0])


def test_distance_score_distance_mode():
    ratio = distance_score(np.array([[3.0, 4.0]]), np.array([[6.0, -8.0]]), mode="distance")
    np.testing.assert_allclose(ratio, [0.5])
    with pytest.raises(ValueError, match="mode"):
        distance_score(np.zeros((1, 2)), np.zeros((1, 2)), mode="area")


# ----------------------------------------------------------------- GPS and metres
def test_lat_lng_and_gps2distance_known_values():
    # 320 px at 0.114 m/px = 36.48 m. The arccos great circle is ill-conditioned at short
    # range: a few tenths of a millimetre of rounding at tens of metres.
    units = Lat_Lng(40.7, -74.0)
    assert units[0] == pytest.approx(36.48 / 6371004.0 * 180 / math.pi)
    assert gps2distance(40.7, -74.0, 40.7 + units[0], -74.0) == pytest.approx(36.48, abs=2e-3)
    assert gps2distance(40.7, -74.0, 40.7, -74.0 + units[1]) == pytest.approx(36.48, abs=2e-3)
    # one degree of latitude on VIGOR's sphere
    assert gps2distance(0.0, 0.0, 1.0, 0.0) == pytest.approx(6371004.0 * math.pi / 180)


@pytest.mark.parametrize("delta, metres", [((100.0, 0.0), 11.4), ((0.0, -100.0), 11.4),
                                           ((-320.0, 0.0), 36.48), ((0.0, 0.0), 0.0),
                                           ((300.0, 400.0), 57.0)])
def test_offset_gps_round_trip(delta, metres):
    centre = np.array([[41.88, -87.63]])
    error = localization_errors(centre, centre, [0], np.array([delta]))
    assert error[0] == pytest.approx(metres, abs=0.01)


def test_predicted_gps_matches_vigor_formula_and_directions():
    rng = np.random.default_rng(4)
    sat_gps = np.column_stack([rng.uniform(37, 48, 5), rng.uniform(-123, -73, 5)])
    resolution = np.array([0.114, 0.1, 0.12, 0.111, 0.118])
    tile = np.array([0, 3, 4, 1, 2, 2])
    delta = rng.uniform(-320, 320, (6, 2))
    ours = predicted_gps(sat_gps, tile, delta, resolution)
    for i, t in enumerate(tile):  # generate_distances, one query at a time
        centre = sat_gps[t]
        r = resolution[t]
        expected = centre - Lat_Lng(centre[0], centre[1], [320 * r, 320 * r]) * delta[i] / 320.0
        np.testing.assert_allclose(ours[i], expected, rtol=0, atol=1e-12)
    # delta[0] > 0 is south (row down), delta[1] > 0 is west (column left)
    south_west = predicted_gps(sat_gps[:1], [0], np.array([[10.0, 10.0]]))
    assert south_west[0, 0] < sat_gps[0, 0] and south_west[0, 1] < sat_gps[0, 1]
    np.testing.assert_array_equal(predicted_gps(sat_gps, tile), sat_gps[tile])


def test_per_tile_resolution_and_true_offsets():
    sat_gps = np.array([[40.0, -74.0], [47.6, -122.3]])
    delta = np.array([[100.0, 0.0], [100.0, 0.0]])
    grd = predicted_gps(sat_gps, [0, 1], delta, np.array([0.114, 0.1]))
    errors = localization_errors(grd, sat_gps, [0, 1], None, np.array([0.114, 0.1]))
    np.testing.assert_allclose(errors, [11.4, 10.0], atol=2e-3)
    recovered = true_offsets(grd, sat_gps, [0, 1], np.array([0.114, 0.1]))
    np.testing.assert_allclose(recovered, delta, atol=1e-6)


def test_distance_accuracy_thresholds():
    thresholds, accuracy = distance_accuracy(np.array([0.5, 1.0, 5.0, 100.0]))
    assert thresholds.shape == accuracy.shape == (499,)
    assert thresholds[0] == 1.1 ** (1 / 5.0) and thresholds[-1] == 1.1 ** (499 / 5.0)
    assert accuracy[0] == 0.5
    assert accuracy[np.searchsorted(thresholds, 5.0)] == 0.75  # first threshold above 5 m
    assert accuracy[np.searchsorted(thresholds, 5.0) - 1] == 0.5  # strict '<'
    assert accuracy[-1] == 1.0
    _, with_nan = distance_accuracy(np.array([np.nan, 0.1]))
    assert with_nan[-1] == 0.5


def test_meter_summary():
    summary = meter_summary([0.5, 4.0, 12.0, 30.0, 60.0])
    assert summary["mean"] == pytest.approx(21.3) and summary["median"] == 12.0
    assert summary["within"] == {"1": 0.2, "5": 0.4, "10": 0.4, "25": 0.6, "50": 0.8}


# ----------------------------------------------------------------- calibration
def test_calibration_of_known_gaussians():
    rng = np.random.default_rng(5)
    n = 40000
    lower = np.zeros((n, 2, 2))
    lower[:, 0, 0] = rng.uniform(1, 30, n)
    lower[:, 1, 0] = rng.uniform(-10, 10, n)
    lower[:, 1, 1] = rng.uniform(1, 30, n)
    sigma = lower @ np.transpose(lower, (0, 2, 1))
    residual = (lower @ rng.standard_normal((n, 2, 1)))[..., 0]
    report = calibration(residual, sigma)
    for k, expected in (("1", 0.393), ("2", 0.865), ("3", 0.989)):
        assert report["expected"][k] == pytest.approx(expected, abs=5e-4)
        assert report["observed"][k] == pytest.approx(expected, abs=0.01)
    over = calibration(residual, sigma * 4)  # too wide: more inside than expected
    assert over["observed"]["1"] > 0.6


def test_uncertainty_spearman_and_quintiles():
    sigma = np.array([[[4.0, 0.0], [0.0, 9.0]], [[1.0, 0.0], [0.0, 1.0]]])
    np.testing.assert_allclose(uncertainty_from_sigma(sigma), [10.0, 4.0])
    u = np.arange(100.0)
    assert spearman(u, u ** 3) == pytest.approx(1.0)
    assert spearman(u, -np.exp(u / 10)) == pytest.approx(-1.0)
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(0.9486833)
    rows = error_by_quantile(u, 2 * u)
    assert [r["count"] for r in rows] == [20] * 5
    assert [r["error_mean"] for r in rows] == [19.0, 59.0, 99.0, 139.0, 179.0]
    report = uncertainty_report(np.zeros((2, 2)), sigma, [1.0, 0.5])
    assert report["spearman_uncertainty_error"] == pytest.approx(1.0)
