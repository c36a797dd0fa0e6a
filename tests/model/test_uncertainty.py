"""model/uncertainty.py against independent numpy computations."""
import numpy as np
import tensorflow.compat.v1 as tf

from model import uncertainty as unc


def _random_L(rng, n=6):
    """Cholesky coefficients as the head gives them: elu + 1 > 0."""
    return rng.uniform(0.2, 3.0, size=(n, 3)).astype(np.float32)


def _lower(L):
    lower = np.zeros((len(L), 2, 2))
    for i, (l0, l1, l2) in enumerate(L.astype(np.float64)):
        lower[i] = [[l0, 0.0], [l1, l2]]
    return lower


def test_sigma_inverse_and_log_det(graph):
    L_val = _random_L(np.random.default_rng(0))
    L = tf.constant(L_val)
    with tf.Session() as sess:
        sigma, inverse, log_det = sess.run(
            [unc.get_sigma(L), unc.get_sigma_inverse(L), unc.get_log_det_sigma(L)])
    expected = np.stack([m @ m.T for m in _lower(L_val)])
    np.testing.assert_allclose(sigma, expected, rtol=1e-5)
    np.testing.assert_allclose(inverse, np.linalg.inv(expected), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(log_det, np.log(np.linalg.det(expected)), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(unc.sigma_np(L_val), expected, rtol=1e-6)


def test_uncertainty_is_sum_of_ellipse_axes(graph):
    rng = np.random.default_rng(1)
    L_val = _random_L(rng, 8)
    L = tf.constant(L_val)
    sigma = unc.get_sigma(L)
    major_axis, minor_axis = unc.ellipse_axes(sigma)
    with tf.Session() as sess:
        total, major, minor = sess.run([unc.get_uncertainty(L), major_axis, minor_axis])
    eigenvalues = np.stack([np.sort(np.linalg.eigvals(m @ m.T).real) for m in _lower(L_val)])
    np.testing.assert_allclose(major, 2 * np.sqrt(eigenvalues[:, 1]), rtol=1e-4)
    np.testing.assert_allclose(minor, 2 * np.sqrt(eigenvalues[:, 0]), rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(total, 2 * np.sqrt(eigenvalues).sum(axis=1), rtol=1e-5)
    np.testing.assert_allclose(unc.uncertainty_np(L_val), total, rtol=1e-5)
    np_major, np_minor = unc.ellipse_axes_np(unc.sigma_np(L_val))
    np.testing.assert_allclose(np_major, major, rtol=1e-4)


def test_uncertainty_gradient_finite_at_repeated_eigenvalue(graph):
    # L = [1, 0, 1] gives Sigma = I: both eigenvalues 1, where sqrt(radius^2) has no gradient.
    L = tf.constant([[1.0, 0.0, 1.0], [2.0, 0.0, 2.0]])
    (grad,) = tf.gradients(tf.reduce_sum(unc.get_uncertainty(L)), [L])
    with tf.Session() as sess:
        value, grad_val = sess.run([unc.get_uncertainty(L), grad])
    np.testing.assert_allclose(value, [4.0, 8.0], rtol=1e-6)
    assert np.all(np.isfinite(grad_val))
    # d/dl0 of 2 sqrt(l0^2 + l1^2 + l2^2 + 2 l0 l2) = 2 (l0 + l2) / sqrt(...) = 2 at l0 = l2
    np.testing.assert_allclose(grad_val[:, 0], [2.0, 2.0], rtol=1e-6)


def test_spatial_mean_against_original_grid_convention(graph):
    rng = np.random.default_rng(2)
    htp_val = rng.uniform(0.0, 1.0, size=(3, 12, 20, 1)).astype(np.float32)
    htp_val[2] = 0.0  # all-zero heatmap: EPSILON keeps it finite (0)
    with tf.Session() as sess:
        rows, cols = sess.run(unc.get_spatial_mean(tf.constant(htp_val)))
    # SAMP: x grid holds the row index, y grid the column index, mean = sum(g h) / (sum h + eps)
    row_grid, col_grid = np.meshgrid(np.arange(12.0), np.arange(20.0), indexing="ij")
    h = htp_val[..., 0].astype(np.float64)
    total = h.sum(axis=(1, 2)) + 1e-5
    np.testing.assert_allclose(rows, (row_grid * h).sum(axis=(1, 2)) / total, rtol=1e-5)
    np.testing.assert_allclose(cols, (col_grid * h).sum(axis=(1, 2)) / total, rtol=1e-5)
    assert rows[2] == 0.0 and cols[2] == 0.0
    np_rows, np_cols = unc.spatial_mean_np(htp_val)
    np.testing.assert_allclose(np_rows, rows, rtol=1e-5)
    np.testing.assert_allclose(np_cols, cols, rtol=1e-5)


def test_spatial_mean_of_a_single_peak(graph):
    htp_val = np.zeros((1, 640, 640, 1), np.float32)
    htp_val[0, 100, 500, 0] = 3.0
    with tf.Session() as sess:
        rows, cols = sess.run(unc.get_spatial_mean(tf.constant(htp_val)))
    np.testing.assert_allclose([rows[0], cols[0]], [100.0, 500.0], rtol=1e-5)


def test_mahalanobis_distance(graph):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 2)).astype(np.float32)
    y = rng.standard_normal((5, 2)).astype(np.float32)
    m = rng.standard_normal((5, 2, 2)).astype(np.float32)
    with tf.Session() as sess:
        value = sess.run(unc.get_mahalanobis_distance(tf.constant(x), tf.constant(m),
                                                      tf.constant(y)))
    expected = [float(x[i] @ m[i] @ y[i]) for i in range(5)]
    np.testing.assert_allclose(value, expected, rtol=1e-5, atol=1e-6)


def test_cholesky_heads_take_keras_names_and_are_positive(graph):
    bottleneck_val = np.random.default_rng(4).standard_normal((4, 32)).astype(np.float32)
    bottleneck = tf.constant(bottleneck_val)
    with tf.variable_scope("L"):
        L = unc.get_cholesky(bottleneck, hidden_units=16)
    with tf.variable_scope("L_semi"):
        unc.get_cholesky(bottleneck, hidden_units=16)
    names = [v.name for v in tf.global_variables()]
    assert names == ["L/cholesky_block/dense/kernel:0", "L/cholesky_block/dense/bias:0",
                     "L/cholesky_block/dense_1/kernel:0", "L/cholesky_block/dense_1/bias:0",
                     "L_semi/cholesky_block_1/dense_2/kernel:0",
                     "L_semi/cholesky_block_1/dense_2/bias:0",
                     "L_semi/cholesky_block_1/dense_3/kernel:0",
                     "L_semi/cholesky_block_1/dense_3/bias:0"]
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        L_val, (kernel1, bias1, kernel2, bias2) = sess.run([L, tf.global_variables()[:4]])
    assert not bias1.any() and not bias2.any()  # Keras Dense: zero bias
    assert np.abs(kernel1).max() <= np.sqrt(6.0 / (32 + 16))  # glorot-uniform bound
    hidden = 1.0 / (1.0 + np.exp(-(bottleneck_val @ kernel1)))
    raw = hidden @ kernel2
    expected = np.where(raw > 0, raw, np.expm1(raw)) + 1.0  # elu + 1
    np.testing.assert_allclose(L_val, expected, rtol=1e-5)
    assert (L_val > 0).all()


def test_an_initial_sigma_starts_the_head_at_that_scale(graph):
    """model.cholesky_initial_sigma_px: only the output bias changes; names stay Keras'."""
    bottleneck = tf.constant(np.random.default_rng(5).standard_normal((6, 32)).astype(np.float32))
    with tf.variable_scope("L"):
        L = unc.get_cholesky(bottleneck, hidden_units=16, index=0, initial_sigma_px=20.0)
    assert [v.op.name for v in tf.global_variables()][-1] == "L/cholesky_block/dense_1/bias"
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        L_val, bias, kernel = sess.run([L, tf.global_variables()[-1], tf.global_variables()[-2]])
    np.testing.assert_allclose(bias, [19.0, np.log(0.05), 19.0], rtol=1e-6)
    # elu(bias + x) + 1 for the head's own small output x: about [20, 0.05, 20]
    assert np.all(np.abs(L_val[:, [0, 2]] - 20.0) < np.abs(kernel).sum(axis=0)[[0, 2]] + 1e-4)
    assert np.all((L_val[:, 1] > 0) & (L_val[:, 1] < 0.05 * np.exp(np.abs(kernel[:, 1]).sum()) + 1e-6))
