"""model/losses.py against independent numpy computations (float64, explicit loops)."""
import math

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from model import losses


def _unit_rows(rng, n, d):
    x = rng.standard_normal((n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _descriptors(seed, n=6, d=16):
    """Unit descriptors, the satellite ones near their ground ones (similarities well above 0,
    so the similarity ratios are well conditioned), and IOU ratios."""
    rng = np.random.default_rng(seed)
    grd = _unit_rows(rng, n, d)
    near = lambda: grd + 0.3 * _unit_rows(rng, n, d)
    sat, semi = (x / np.linalg.norm(x, axis=1, keepdims=True) for x in (near(), near()))
    ratio = rng.uniform(0.1, 0.9, n).astype(np.float32)
    return sat.astype(np.float32), semi.astype(np.float32), grd, ratio


def _run(tensors):
    with tf.Session() as sess:
        return sess.run(tensors)


def triplet_np(sat, grd, batch_hard_count=0, batch_size=14, w=10.0):
    n = len(sat)
    dist = np.array([[2 - 2 * float(sat[i] @ grd[j]) for j in range(n)] for i in range(n)])
    g2s = np.zeros((n, n))  # g2s[j, i]: ground j, its satellite against satellite i
    s2g = np.zeros((n, n))  # s2g[i, j]: satellite i, its ground against ground j
    for i in range(n):
        for j in range(n):
            g2s[j, i] = math.log(1 + math.exp(w * (dist[j, j] - dist[i, j])))
            s2g[i, j] = math.log(1 + math.exp(w * (dist[i, i] - dist[i, j])))
    if batch_hard_count == 0:
        pair_n = batch_size * (batch_size - 1.0)
        return (g2s.sum() / pair_n + s2g.sum() / pair_n) / 2
    top = lambda m: np.mean([sorted(row, reverse=True)[:batch_hard_count] for row in m])
    return (top(g2s) + top(s2g)) / 2


@pytest.mark.parametrize("hard", [0, 3])
def test_compute_loss(graph, hard):
    sat, _, grd, _ = _descriptors(0)
    value = _run(losses.compute_loss(tf.constant(sat), tf.constant(grd), batch_hard_count=hard,
                                     batch_size=6))
    np.testing.assert_allclose(value, triplet_np(sat, grd, hard, batch_size=6), rtol=1e-5)


def test_compute_loss_default_batch_size_normalisation(graph):
    sat, _, grd, _ = _descriptors(1, n=4)
    value = _run(losses.compute_loss(tf.constant(sat), tf.constant(grd)))
    np.testing.assert_allclose(value, triplet_np(sat, grd, batch_size=14), rtol=1e-5)


def test_compute_loss_continuous_IOU(graph):
    sat, semi, grd, ratio = _descriptors(2)
    outs = _run(losses.compute_loss_continuous_IOU(
        tf.constant(sat), tf.constant(semi), tf.constant(grd), tf.constant(ratio), batch_size=6))
    loss_1 = triplet_np(sat, grd, batch_size=6)
    loss_2 = triplet_np(semi, grd, batch_size=6)
    loss_3 = np.mean([(float(semi[i] @ grd[i]) / float(sat[i] @ grd[i]) - ratio[i]) ** 2
                      for i in range(6)]) / 10
    np.testing.assert_allclose(outs, [loss_1 + loss_3, loss_1, loss_2, loss_3], rtol=1e-5)


def test_compute_loss_continuous_IOU_weighted_and_get_weights(graph):
    sat, semi, grd, ratio = _descriptors(3)
    w = np.random.default_rng(3).uniform(0.5, 1.5, 6).astype(np.float32)
    args = [tf.constant(a) for a in (sat, semi, grd, ratio)]
    loss, loss_1, loss_3, convince = _run(
        losses.compute_loss_continuous_IOU_weighted(*args, tf.constant(w), batch_size=6))
    weights = _run(losses.get_weights(*args))
    sim_pos = np.array([float(sat[i] @ grd[i]) for i in range(6)])
    sim_semi = np.array([float(semi[i] @ grd[i]) for i in range(6)])
    expected_convince = w * sim_semi / sim_pos
    expected_loss_3 = np.mean((expected_convince - ratio) ** 2)
    expected_loss_1 = triplet_np(sat, grd, batch_size=6)
    np.testing.assert_allclose(convince, expected_convince, rtol=1e-5)
    np.testing.assert_allclose([loss, loss_1, loss_3],
                               [expected_loss_1 + expected_loss_3, expected_loss_1,
                                expected_loss_3], rtol=1e-5)
    np.testing.assert_allclose(weights, ratio * sim_pos / sim_semi - 1, rtol=1e-5, atol=1e-6)


def test_semi_positive_weight():
    u = np.array([0.0, 30.0, 75.0, 90.0, 400.0])
    expected = [1.0 / (1.0 + 2.0 * math.exp(0.3 * (75.0 - x))) for x in u]
    np.testing.assert_allclose(losses.semi_positive_weight(u), expected, rtol=1e-12)
    assert losses.semi_positive_weight(75.0) == pytest.approx(1.0 / 3.0)
    np.testing.assert_allclose(losses.semi_positive_weight(u, a=0.1, b=10.0, c=1.0),
                               [1.0 / (1.0 + math.exp(0.1 * (10.0 - x))) for x in u])


def _heatmaps(seed, batch, side):
    rng = np.random.default_rng(seed)
    htp = rng.uniform(0.0, 1.0, (batch, side, side, 1)) ** 8  # peaky, like a trained heatmap
    delta = rng.uniform(-300.0, 300.0, (batch, 2))
    return htp.astype(np.float32), delta.astype(np.float32)


def _spatial_mean_np(htp):
    h = htp[..., 0].astype(np.float64)
    side_r, side_c = h.shape[1:]
    total = h.sum(axis=(1, 2)) + 1e-5
    rows = np.einsum("bij,i->b", h, np.arange(side_r)) / total
    cols = np.einsum("bij,j->b", h, np.arange(side_c)) / total
    return rows, cols


@pytest.mark.parametrize("side", [640, 128])
def test_E_loss_2_1(graph, side):
    htp, delta = _heatmaps(5, 2, side)
    value = _run(losses.E_loss_2_1(tf.constant(htp), tf.constant(delta)))
    s = side / 640.0
    rows, cols = _spatial_mean_np(htp)
    distance = np.hypot(s * (delta[:, 0] + 320) - rows, s * (319 - delta[:, 1]) - cols)
    np.testing.assert_allclose(value, distance.mean() / 10000.0, rtol=1e-5)


@pytest.mark.parametrize("side", [640, 128])
def test_E_loss_2_2(graph, side):
    htp, delta = _heatmaps(6, 3, side)
    L_val = np.random.default_rng(6).uniform(0.5, 20.0, (3, 3)).astype(np.float32)
    value = _run(losses.E_loss_2_2(tf.constant(htp), tf.constant(L_val), tf.constant(delta)))
    s = side / 640.0
    rows, cols = _spatial_mean_np(htp)
    log_det, maha = [], []
    for i, (l0, l1, l2) in enumerate(L_val.astype(np.float64)):
        lower = np.array([[l0, 0.0], [l1, l2]])
        sigma = lower @ lower.T
        r = np.array([s * (delta[i, 0] + 320) - rows[i], s * (319 - delta[i, 1]) - cols[i]])
        log_det.append(0.5 * np.log(np.linalg.det(sigma)))
        maha.append(r @ np.linalg.inv(sigma) @ r)
    np.testing.assert_allclose(value, np.mean(log_det) + np.mean(maha), rtol=1e-4)


def test_heatmap_scale_and_target(graph):
    htp = tf.zeros([2, 128, 128, 1])
    assert losses.heatmap_scale(htp) == 0.2
    assert losses.heatmap_scale(640) == 1.0
    rows, cols = _run(losses.heatmap_target(htp, tf.constant([[10.0, -20.0]])))
    np.testing.assert_allclose([rows[0], cols[0]], [0.2 * 330, 0.2 * 339], rtol=1e-6)
