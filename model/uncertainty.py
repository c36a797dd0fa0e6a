"""SAMP's localisation uncertainty: a Cholesky head predicts L = [l0, l1, l2] (elu + 1 > 0),
the covariance is Sigma = L L^T with L = [[l0, 0], [l1, l2]], and the uncertainty of a sample
is the sum of its ellipse axes, 2 sqrt(lambda_max) + 2 sqrt(lambda_min).

Also the heatmap's spatial mean (row, column) and the Mahalanobis form x^T Sigma^-1 y, with
numpy twins for evaluation. Units are heatmap pixels (see losses.heatmap_scale).
"""
import re

import numpy as np
import tensorflow.compat.v1 as tf

from model import layers

EPSILON = 1e-5  # SAMP's Constants.EPSILON: keeps the spatial mean finite on all-zero heatmaps
_BLOCK_NAME = re.compile(r"cholesky_block(_\d+)?$")


def cholesky_head_names(index):  # docs/FAITHFULNESS.md, M17
    """Keras' automatic names of the index-th CholeskyBlock of a graph and its two Dense layers:
    (cholesky_block, dense, dense_1), (cholesky_block_1, dense_2, dense_3), ..."""
    def numbered(base, i):
        return base if i == 0 else "%s_%d" % (base, i)
    return (numbered("cholesky_block", index), numbered("dense", 2 * index),
            numbered("dense", 2 * index + 1))


def _heads_in_graph():
    """How many Cholesky heads the default graph holds already."""
    return len({part for v in tf.global_variables() for part in v.op.name.split("/")
                if _BLOCK_NAME.match(part)})


def elu_plus(x):
    return tf.nn.elu(x) + 1.0


def initial_sigma_bias(sigma_px, off_diagonal=0.05):
    """Output bias that makes a fresh head start at L = [s, off_diagonal, s] (Sigma ~ s^2 I) instead
    of elu(0) + 1 = 1: the inverse of elu(x) + 1 per entry (docs/FAITHFULNESS.md, T14)."""
    def inverse(y):
        return y - 1.0 if y >= 1.0 else float(np.log(y))
    return [inverse(sigma_px), inverse(off_diagonal), inverse(sigma_px)]


def get_cholesky(bottleneck, hidden_units=512, index=None, trainable=True, initial_sigma_px=None):
    """L (B, 3) from the bottleneck (B, D): Dense(hidden, sigmoid) -> Dense(3) -> elu + 1.

    Dense layers use Keras' defaults: glorot-uniform kernel, zero bias (the original);
    initial_sigma_px=s starts the output bias at L = [s, 0.05, s] instead. With index=None the
    head takes the next Keras-style number in this graph (the first call builds
    `cholesky_block/dense*`, the second `cholesky_block_1/dense_2, dense_3`).
    """
    output_bias = (tf.zeros_initializer() if initial_sigma_px is None
                   else tf.constant_initializer(initial_sigma_bias(initial_sigma_px)))
    if index is None:
        index = _heads_in_graph()
    block, hidden_name, output_name = cholesky_head_names(index)
    features = layers.static_dim(bottleneck, -1, "get_cholesky bottleneck")
    x = tf.reshape(bottleneck, [-1, features])
    with tf.variable_scope(block):
        x = layers.dense(x, hidden_units, hidden_name, layers.glorot_uniform(),
                         tf.zeros_initializer(), activation=tf.nn.sigmoid, trainable=trainable,
                         kernel_name="kernel", bias_name="bias")
        coefficients = layers.dense(x, 3, output_name, layers.glorot_uniform(),
                                    output_bias, trainable=trainable,
                                    kernel_name="kernel", bias_name="bias")
    return elu_plus(coefficients)


def _cholesky_entries(L):
    return L[:, 0], L[:, 1], L[:, 2]


def get_sigma(L):
    """Sigma = L L^T, (B, 2, 2), for L = [[l0, 0], [l1, l2]]."""
    l0, l1, l2 = _cholesky_entries(L)
    zeros = tf.zeros_like(l0)
    lower = tf.reshape(tf.stack([l0, zeros, l1, l2], axis=1), [-1, 2, 2])
    return tf.matmul(lower, lower, transpose_b=True)


def get_sigma_inverse(L):  # docs/FAITHFULNESS.md, M20
    """Sigma^-1 = L^-T L^-1 (B, 2, 2), from the triangular inverse: no determinant cancellation."""
    l0, l1, l2 = _cholesky_entries(L)
    zeros = tf.zeros_like(l0)
    inv_lower = tf.reshape(tf.stack([1.0 / l0, zeros, -l1 / (l0 * l2), 1.0 / l2], axis=1),
                           [-1, 2, 2])
    return tf.matmul(inv_lower, inv_lower, transpose_a=True)


def get_log_det_sigma(L):  # docs/FAITHFULNESS.md, M20
    """log det Sigma = 2 log |l0 l2|."""
    l0, _, l2 = _cholesky_entries(L)
    return 2.0 * tf.log(tf.abs(l0 * l2))


def symmetric_2x2_eigenvalues(Sigma):
    """Closed-form eigenvalues (major, minor) of symmetric 2x2 matrices (B, 2, 2)."""
    a, b, c = Sigma[:, 0, 0], 0.5 * (Sigma[:, 0, 1] + Sigma[:, 1, 0]), Sigma[:, 1, 1]
    mean = 0.5 * (a + c)
    radius = tf.sqrt(tf.square(0.5 * (a - c)) + tf.square(b))
    return mean + radius, mean - radius


def ellipse_axes(Sigma):
    """Axis lengths (major, minor) = 2 sqrt(eigenvalues) of covariance matrices (B, 2, 2)."""
    major, minor = symmetric_2x2_eigenvalues(Sigma)
    return 2.0 * tf.sqrt(tf.maximum(major, 0.0)), 2.0 * tf.sqrt(tf.maximum(minor, 0.0))


def get_uncertainty(L):  # closed form of the original's eigvals (docs/FAITHFULNESS.md, M19)
    """Sum of the ellipse axes of Sigma = L L^T, (B,).

    Uses sqrt(l_max) + sqrt(l_min) = sqrt(trace + 2 sqrt(det)), with trace = l0^2 + l1^2 + l2^2
    and sqrt(det) = |l0 l2|: the same number as the eigenvalue route, but finite gradients
    also where the two eigenvalues coincide.
    """
    l0, l1, l2 = _cholesky_entries(L)
    trace = tf.square(l0) + tf.square(l1) + tf.square(l2)
    return 2.0 * tf.sqrt(trace + 2.0 * tf.abs(l0 * l2))


def get_spatial_mean(htp):  # docs/FAITHFULNESS.md, M21
    """Heatmap-weighted mean position of (B, H, W, 1) heatmaps: (row_mean, col_mean), each (B,).

    SAMP calls them (x_pts, y_pts); x runs down the rows (VIGOR's delta[0] axis).
    """
    height = layers.static_dim(htp, 1, "get_spatial_mean heatmap height")
    width = layers.static_dim(htp, 2, "get_spatial_mean heatmap width")
    total = tf.reduce_sum(htp, axis=[1, 2, 3]) + EPSILON
    row_mass = tf.reduce_sum(htp, axis=[2, 3])
    col_mass = tf.reduce_sum(htp, axis=[1, 3])
    rows = tf.range(height, dtype=htp.dtype)
    cols = tf.range(width, dtype=htp.dtype)
    row_mean = tf.reduce_sum(row_mass * rows, axis=1) / total
    col_mean = tf.reduce_sum(col_mass * cols, axis=1) / total
    return row_mean, col_mean


def get_mahalanobis_distance(x, Sigma_inverse, y):
    """x^T Sigma_inverse y per sample: x, y (B, 2), Sigma_inverse (B, 2, 2) -> (B,)."""
    return tf.einsum("bi,bij,bj->b", x, Sigma_inverse, y)


# ----------------------------------------------------------------- numpy twins (evaluation)

def sigma_np(L):
    L = np.asarray(L, dtype=np.float64)
    lower = np.zeros((L.shape[0], 2, 2))
    lower[:, 0, 0], lower[:, 1, 0], lower[:, 1, 1] = L[:, 0], L[:, 1], L[:, 2]
    return lower @ lower.transpose(0, 2, 1)


def ellipse_axes_np(Sigma):
    """(major, minor) axis lengths 2 sqrt(eigenvalues) of symmetric (B, 2, 2) matrices."""
    eigenvalues = np.linalg.eigvalsh(np.asarray(Sigma, dtype=np.float64))
    eigenvalues = np.maximum(eigenvalues, 0.0)
    return 2.0 * np.sqrt(eigenvalues[:, 1]), 2.0 * np.sqrt(eigenvalues[:, 0])


def uncertainty_np(L):
    major, minor = ellipse_axes_np(sigma_np(L))
    return major + minor


def spatial_mean_np(htp):
    """(row_mean, col_mean) of (B, H, W[, 1]) heatmaps, as get_spatial_mean."""
    htp = np.asarray(htp, dtype=np.float64).reshape(len(htp), htp.shape[1], htp.shape[2])
    total = htp.sum(axis=(1, 2)) + EPSILON
    rows = np.arange(htp.shape[1])
    cols = np.arange(htp.shape[2])
    return (htp.sum(axis=2) @ rows) / total, (htp.sum(axis=1) @ cols) / total
