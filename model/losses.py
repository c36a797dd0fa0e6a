"""Training losses of VIGOR and of SAMP's three stages (tf.compat.v1 ops), plus the numpy
weight of a semi-positive reference used in stage 3.

Offsets (delta) are in pixels of the 640x640 tile. A heatmap of side H is compared in its own
pixels: target row s (delta[0] + 320), column s (319 - delta[1]) with s = H / 640 (s = 1 for
SAMP's 640 heatmaps), so losses and Sigma are in heatmap pixels; divide by heatmap_scale to get
640-pixel units back.
"""
import numbers

import numpy as np
import tensorflow.compat.v1 as tf

from model import layers
from model.uncertainty import (get_log_det_sigma, get_mahalanobis_distance,
                               get_sigma_inverse, get_spatial_mean)

REFERENCE_SIDE = 640.0


def compute_loss(sat_global, grd_global, batch_hard_count=0, batch_size=14, loss_weight=10.0):
    """Weighted soft-margin triplet loss over all in-batch pairs, both directions.

    dist = 2 - 2 sat grd^T; each negative costs log(1 + exp(w (d_pos - d_neg))). With
    batch_hard_count = 0 the sums are divided by batch_size (batch_size - 1) (the diagonal
    log 2 terms included, as in VIGOR); otherwise each row keeps its batch_hard_count largest.
    """
    with tf.name_scope("weighted_soft_margin_triplet_loss"):
        dist = 2.0 - 2.0 * tf.matmul(sat_global, grd_global, transpose_b=True)
        pos_dist = tf.diag_part(dist)
        # [i, j]: positive pair of ground j against satellite i; the ground-to-satellite view
        # softplus = log(1 + exp(.)) without overflow (docs/FAITHFULNESS.md, M23)
        cost_g2s = tf.nn.softplus((pos_dist - dist) * loss_weight)
        # [i, j]: positive pair of satellite i against ground j
        cost_s2g = tf.nn.softplus((tf.expand_dims(pos_dist, 1) - dist) * loss_weight)
        if batch_hard_count == 0:
            pair_n = batch_size * (batch_size - 1.0)
            loss_g2s = tf.reduce_sum(cost_g2s) / pair_n
            loss_s2g = tf.reduce_sum(cost_s2g) / pair_n
        else:
            loss_g2s = tf.reduce_mean(tf.nn.top_k(tf.transpose(cost_g2s), batch_hard_count)[0])
            loss_s2g = tf.reduce_mean(tf.nn.top_k(cost_s2g, batch_hard_count)[0])
        return (loss_g2s + loss_s2g) / 2.0


def _similarities(sat_global_1, sat_global_2, grd_global):
    return (tf.reduce_sum(sat_global_1 * grd_global, axis=1),
            tf.reduce_sum(sat_global_2 * grd_global, axis=1))


def compute_loss_continuous_IOU(sat_global_1, sat_global_2, grd_global, ratio, batch_size=15):
    """VIGOR's positive triplet loss plus the IOU-ratio loss on the semi-positive.

    Returns (loss, loss_1, loss_2, loss_3): loss_1, loss_2 the triplet losses of the positive
    and semi-positive, loss_3 = mean((sim_semi / sim_pos - ratio)^2) / 10, loss = loss_1 + loss_3.
    """
    loss_1 = compute_loss(sat_global_1, grd_global, batch_size=batch_size)
    loss_2 = compute_loss(sat_global_2, grd_global, batch_size=batch_size)
    sim_1, sim_2 = _similarities(sat_global_1, sat_global_2, grd_global)
    error = sim_2 / sim_1 - ratio
    loss_3 = tf.reduce_mean(error * error) / 10.0
    return loss_1 + loss_3, loss_1, loss_2, loss_3


def compute_loss_continuous_IOU_weighted(sat_global_1, sat_global_2, grd_global, ratio, W_,
                                         batch_size=10):
    """SAMP stage 3: the IOU-ratio loss with per-sample weights W_ on the similarity ratio.

    Returns (loss, loss_1, loss_3, convince): convince = W_ sim_semi / sim_pos,
    loss_3 = mean((convince - ratio)^2) (no / 10 here), loss = loss_1 + loss_3.
    """
    loss_1 = compute_loss(sat_global_1, grd_global, batch_size=batch_size)
    sim_1, sim_2 = _similarities(sat_global_1, sat_global_2, grd_global)
    convince = W_ * (sim_2 / sim_1)
    error = convince - ratio
    loss_3 = tf.reduce_mean(error * error)
    return loss_1 + loss_3, loss_1, loss_3, convince


def get_weights(sat_global_1, sat_global_2, grd_global, ratio):
    """ratio sim_pos / sim_semi - 1 per sample (stage 3 uses W = 1 + this x semi weight)."""
    sim_1, sim_2 = _similarities(sat_global_1, sat_global_2, grd_global)
    return ratio * (sim_1 / sim_2) - 1.0


def semi_positive_weight(uncertainty, a=0.3, b=75.0, c=2.0):
    """Logistic weight 1 / (1 + c exp(a (b - u))) of a semi-positive with uncertainty u
    (640-pixel units): near 0 for confident (small u), near 1 for uncertain references."""
    u = np.asarray(uncertainty, dtype=np.float64)
    return 1.0 / (1.0 + c * np.exp(a * (b - u)))


def heatmap_scale(heatmap):  # docs/FAITHFULNESS.md, M25
    """s = H / 640 for a (B, H, W, 1) heatmap, or for a side H given as a number."""
    side = heatmap if isinstance(heatmap, numbers.Number) else layers.static_dim(
        heatmap, 1, "heatmap height")
    return side / REFERENCE_SIDE


def heatmap_target(heatmap, delta):
    """Ground-truth (row, col) of `delta` (B, 2) in the pixels of `heatmap`."""
    s = heatmap_scale(heatmap)
    return s * (delta[:, 0] + 320.0), s * (319.0 - delta[:, 1])


def E_loss_2_1(heatmap, delta):
    """Stage 2.1: mean Euclidean distance between the heatmap's spatial mean and the true
    position, / 10000."""
    row_mean, col_mean = get_spatial_mean(heatmap)
    row_true, col_true = heatmap_target(heatmap, delta)
    distance = tf.sqrt(tf.square(row_true - row_mean) + tf.square(col_true - col_mean))
    return tf.reduce_mean(distance) / 10000.0


def E_loss_2_2(heatmap, L, delta):
    """Stage 2.2: Gaussian negative log-likelihood of the true position around the heatmap's
    spatial mean with covariance Sigma = L L^T:
    mean(0.5 log det Sigma) + mean(r^T Sigma^-1 r), r = true - mean (SAMP omits the 1/2 on the
    second term)."""
    row_mean, col_mean = get_spatial_mean(heatmap)
    row_true, col_true = heatmap_target(heatmap, delta)
    residual = tf.stack([row_true - row_mean, col_true - col_mean], axis=1)
    log_det_term = 0.5 * get_log_det_sigma(L)
    mahalanobis = get_mahalanobis_distance(residual, get_sigma_inverse(L), residual)
    return tf.reduce_mean(log_det_term) + tf.reduce_mean(mahalanobis)
