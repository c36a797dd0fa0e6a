"""A location predictor on the reference graph: the position where the Gaussians of overlapping,
similar-looking candidate tiles agree, rather than the top-1 tile's own prediction.

Each of a panorama's K candidate tiles t predicts a Gaussian N(mu_t, S_t) (metres) and has a
weight w_t = softmax(similarity / temperature). Two candidates support each other when their
footprints overlap and their Gaussians agree on the ground point, the same point seen from two
tiles: agreement_tu = IoU_tu x exp(-d_tu^2 / 2), d_tu the Mahalanobis distance between mu_t and
mu_u under S_t + S_u. A tile's vote becomes w_t + support x sum_u agreement_tu w_u (renormalised),
so a look-alike whose overlapping neighbours disagree or look unlike the panorama counts less
than a tile confirmed by its neighbours. The estimate is the mode of the re-weighted mixture.
"""
import numpy as np

from utils.localization.footprints import footprint_iou


def agreement(means, covs, centres, widths):
    """(K, K) IoU of the footprints x how well the two Gaussians agree; 0 on the diagonal."""
    means, covs = np.asarray(means, np.float64), np.asarray(covs, np.float64)
    diff = means[:, None] - means[None]
    squared = np.einsum("tui,tuij,tuj->tu", diff, np.linalg.inv(covs[:, None] + covs[None]), diff)
    return footprint_iou(centres, widths) * np.exp(-0.5 * squared) * (1.0 - np.eye(len(means)))


def graph_weights(weights, agreements, support):
    """(K,) mixture weights after each tile gathers support x its agreeing neighbours' weights."""
    weights = np.asarray(weights, np.float64)
    voted = weights + float(support) * np.asarray(agreements, np.float64) @ weights
    return voted / voted.sum()
