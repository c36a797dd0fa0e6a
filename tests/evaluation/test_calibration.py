"""The coverage targets of SAMP's Gaussian NLL, checked on samples from known Gaussians."""
import numpy as np
import pytest
import tensorflow.compat.v1 as tf
from scipy import optimize

from model.losses import E_loss_2_2
from utils.evaluation import calibration as cal

COVARIANCE = np.array([[90.0, -30.0], [-30.0, 40.0]])   # anisotropic and correlated, heatmap px^2


def gaussian_residuals(count, seed=0):
    return np.random.default_rng(seed).multivariate_normal([0.0, 0.0], COVARIANCE, size=count)


def binomial_slack(p, n):
    return 4.0 * np.sqrt(p * (1 - p) / n) + 1e-4


def fit_shared_sigma(loss_of_L, residual):
    """Minimise loss_of_L over one Cholesky factor shared by every sample; returns Sigma."""
    def value(x):
        return float(loss_of_L(x))
    start = np.array([3.0, 0.0, 3.0])
    result = optimize.minimize(value, start, method="Nelder-Mead",
                               options={"xatol": 1e-7, "fatol": 1e-10, "maxiter": 4000})
    lower = np.array([[result.x[0], 0.0], [result.x[1], result.x[2]]])
    return lower @ lower.T


def test_samp_loss_optimum_is_twice_the_error_covariance(graph):
    """The project's own E_loss_2_2 op, minimised over Sigma, lands on 2 x the residuals' second moment;
    the textbook NLL (1/2 on both terms) on 1 x."""
    residual = gaussian_residuals(2000)
    side = 64                                            # heatmap 64 px: scale 0.1 of the 640 tile
    heatmap = np.zeros((len(residual), side, side, 1), np.float32)
    heatmap[:, 32, 32, 0] = 1.0                          # spatial mean exactly at (32, 32)
    scale = side / 640.0
    # delta such that the target (s (d0 + 320), s (319 - d1)) = (32, 32) + residual
    delta = np.stack([(32 + residual[:, 0]) / scale - 320.0, 319.0 - (32 + residual[:, 1]) / scale], axis=1)
    L_in = tf.placeholder(tf.float64, [3])
    L = tf.tile(tf.cast(L_in, tf.float32)[None, :], [len(residual), 1])
    loss = E_loss_2_2(tf.constant(heatmap), L, tf.constant(delta, tf.float32))
    with tf.Session() as sess:
        sigma = fit_shared_sigma(lambda x: sess.run(loss, {L_in: x}), residual)
    second_moment = residual.T @ residual / len(residual)
    np.testing.assert_allclose(sigma, 2.0 * second_moment, rtol=2e-3, atol=0.2)

    def textbook(x):
        lower = np.array([[x[0], 0.0], [x[1], x[2]]])
        s = lower @ lower.T
        solved = np.linalg.solve(s, residual.T)
        return 0.5 * np.log(np.linalg.det(s)) + 0.5 * np.mean(np.sum(residual.T * solved, axis=0))
    np.testing.assert_allclose(fit_shared_sigma(textbook, residual), second_moment, rtol=2e-3, atol=0.2)
    assert cal.optimal_sigma_scale(1.0, 0.5) == 2.0 and cal.optimal_sigma_scale(0.5, 0.5) == 1.0


@pytest.mark.parametrize("scale, expected", [(1.0, (0.3935, 0.8647, 0.9889)),     # calibrated Gaussian
                                             (2.0, (0.6321, 0.9817, 0.9999)),     # SAMP's NLL optimum
                                             (0.5, (0.2212, 0.6321, 0.8946))])    # Sigma = C / 2: not SAMP's
def test_coverage_of_known_gaussians_under_both_conventions(scale, expected):
    residual = gaussian_residuals(20000, seed=1)
    sigma = np.broadcast_to(scale * COVARIANCE, (len(residual), 2, 2))
    report = cal.calibration(residual, sigma)
    for k, want in zip(("1", "2", "3"), expected):
        assert cal.expected_inside(float(k), scale) == pytest.approx(want, abs=1e-4)
        assert report["observed"][k] == pytest.approx(want, abs=binomial_slack(want, len(residual)))
    assert report["fitted_scale"] == pytest.approx(scale, rel=0.05)
    assert report["loss_aims_at"] == "samp_nll"
    assert report["targets"]["samp_nll"]["within_tolerance"] == (scale == 2.0)
    assert report["targets"]["calibrated"]["within_tolerance"] == (scale == 1.0)
    assert report["expected"] == report["targets"]["calibrated"]["expected"]


def test_uncertainty_follows_a_known_difficulty():
    rng = np.random.default_rng(2)
    difficulty = rng.uniform(0, 1, 300)
    error = (1 + 4 * difficulty) * np.abs(rng.normal(size=300))
    uncertainty = 10 + 20 * difficulty
    report = cal.difficulty_report(uncertainty, error, {"difficulty": difficulty, "noise": rng.normal(size=300)})
    assert report["spearman_uncertainty"]["difficulty"] == pytest.approx(1.0)
    assert abs(report["spearman_uncertainty"]["noise"]) < 0.2
    assert report["spearman_error"]["difficulty"] > 0.3
    terciles = report["by_difficulty"]
    assert [r["count"] for r in terciles] == [100, 100, 100]
    assert terciles[0]["uncertainty"] < terciles[1]["uncertainty"] < terciles[2]["uncertainty"]
    assert terciles[0]["error"] < terciles[2]["error"]
    assert cal.spearman(np.ones(5), np.arange(5)) is None
