"""Top-k fusion: the retrieved tiles' Gaussians as one similarity-weighted mixture in metres.

Each retrieved tile i predicts the panorama at mean mu_i with covariance S_i (SAMP's heatmap
mean and Cholesky Sigma, mapped to the metric frame). The mixture sum_i w_i N(x; mu_i, S_i),
w = softmax(similarity / temperature), lets overlapping tiles of a dense database vote for the
same spot. The fused position is its mode, found by the fixed-point iteration
x <- (sum_i r_i(x) S_i^-1)^-1 sum_i r_i(x) S_i^-1 mu_i (r: responsibilities) started from every
mean; the same iteration over a product of shifted mixtures localizes several panoramas jointly.

A mixture may carry a flat floor (a density per square metre, the same everywhere): an outlier
term for "none of my tiles is right". It adds to the density but not to the iteration's
precision, so a factor with no component near x neither pulls x nor vetoes it.
"""
from dataclasses import dataclass, field

import numpy as np
from scipy.special import logsumexp, softmax

CHI2_2D_95 = 5.991464547107979      # Mahalanobis radius squared holding 95 % of a 2D Gaussian
LOG_2PI = float(np.log(2.0 * np.pi))


@dataclass
class Mixture:
    means: np.ndarray      # (K, 2) metres
    covs: np.ndarray       # (K, 2, 2)
    weights: np.ndarray    # (K,) summing to 1, or to 1 - the floor's share
    floor: float = 0.0     # flat outlier density added everywhere (per square metre)
    precisions: np.ndarray = field(init=False, repr=False)
    log_norms: np.ndarray = field(init=False, repr=False)   # log w_i - log det(2 pi S_i) / 2

    def __post_init__(self):
        self.precisions = np.linalg.inv(self.covs)
        with np.errstate(divide="ignore"):
            self.log_norms = np.log(self.weights) - 0.5 * np.linalg.slogdet(self.covs)[1] - LOG_2PI


@dataclass
class Estimate:
    mean: np.ndarray       # (2,) metres
    cov: np.ndarray        # (2, 2)
    confidence: float      # share of the weighted vote whose 95 % ellipse holds the mean


def similarity_weights(similarities, temperature):
    return softmax(np.asarray(similarities, np.float64) / float(temperature))


def build_mixture(means, covs, similarities, temperature, sigma_scale=1.0, min_sigma_m=0.0):
    """Mixture of tile predictions; covariances scaled by sigma_scale^2 plus min_sigma_m^2 I."""
    covs = float(sigma_scale) ** 2 * np.asarray(covs, np.float64) + float(min_sigma_m) ** 2 * np.eye(2)
    return Mixture(np.asarray(means, np.float64), covs, similarity_weights(similarities, temperature))


def _mahalanobis_sq(mix, x):
    """(..., K) squared Mahalanobis distances of points x (..., 2) to every component."""
    diff = np.asarray(x, np.float64)[..., None, :] - mix.means
    return np.einsum("...ki,kij,...kj->...k", diff, mix.precisions, diff)


def _all_log_terms(mix, x):
    """(..., K + 1): log w_i + log N(x; mu_i, S_i) for each component, then the floor's log (-inf without)."""
    terms = mix.log_norms - 0.5 * _mahalanobis_sq(mix, x)
    with np.errstate(divide="ignore"):
        floor = np.full(terms.shape[:-1] + (1,), np.log(mix.floor))
    return np.concatenate([terms, floor], axis=-1)


def log_density(mix, x):
    """log p(x) at points x (..., 2)."""
    value = logsumexp(_all_log_terms(mix, x), axis=-1)
    return float(value) if np.ndim(value) == 0 else value


def responsibilities(mix, x):
    """(..., K): each component's share of the density at x (..., 2) (the floor takes the rest)."""
    return softmax(_all_log_terms(mix, x), axis=-1)[..., :-1]


def _climb(mixtures, shifts, starts, iterations=200, tolerance=1e-7):
    """Fixed-point iteration from every start at once, (S, 2) -> (S, 2)."""
    x = np.array(starts, np.float64)
    for _ in range(iterations):
        precision_sum, target = np.zeros((len(x), 2, 2)), np.zeros((len(x), 2))
        for mix, shift in zip(mixtures, shifts):
            r = responsibilities(mix, x + shift)
            precision_sum += np.einsum("sk,kij->sij", r, mix.precisions)
            target += np.einsum("sk,kij,kj->si", r, mix.precisions, mix.means - shift)
        pulled = np.linalg.det(precision_sum) > 1e-300     # else every factor is in its floor: stay
        new = x.copy()
        new[pulled] = np.linalg.solve(precision_sum[pulled], target[pulled][..., None])[..., 0]
        moved = np.linalg.norm(new - x, axis=1)
        x = new
        if moved.max() < tolerance:
            break
    return x


def product_mean(means, covs):
    """Mean of the product of Gaussians N(means[i], covs[i])."""
    precisions = np.linalg.inv(np.asarray(covs, np.float64))
    return np.linalg.solve(precisions.sum(axis=0), np.einsum("kij,kj->i", precisions, np.asarray(means, np.float64)))


def _starts(mixtures, shifts, pairs):
    """Every (shifted) component mean; with pairs, also the product of every two components of
    different factors (where the product of all factors has its modes when two agree)."""
    comps = [(j, mean - shift, cov) for j, (mix, shift) in enumerate(zip(mixtures, shifts))
             for mean, cov in zip(mix.means, mix.covs)]
    starts = [mean for _, mean, _ in comps]
    if pairs:
        starts += [product_mean([a[1], b[1]], [a[2], b[2]])
                   for n, a in enumerate(comps) for b in comps[n + 1:] if a[0] != b[0]]
    return np.array(starts)


def find_mode(mixtures, shifts=None, pairs=False):
    """argmax_x prod_j p_j(x + shift_j): the highest of the modes reached from every start."""
    shifts = np.zeros((len(mixtures), 2)) if shifts is None else np.asarray(shifts, np.float64)
    modes = _climb(mixtures, shifts, _starts(mixtures, shifts, pairs))
    scores = sum(log_density(m, modes + s) for m, s in zip(mixtures, shifts))
    return modes[int(np.argmax(scores))]


def local_covariance(mix, x):
    """Moment-matched covariance of the components, weighted by their responsibility at x: the
    panorama's local Gaussian there (the spread of agreeing votes widens it)."""
    r = responsibilities(mix, x)
    r = r / max(r.sum(), 1e-300)
    spread = mix.means - r @ mix.means
    return np.einsum("k,kij->ij", r, mix.covs) + np.einsum("k,ki,kj->ij", r, spread, spread)


def vote_share(mix, x, level=CHI2_2D_95):
    return float(mix.weights[_mahalanobis_sq(mix, x) <= level].sum())


def fuse(mix):
    """The mixture's mode with its local covariance and the share of the vote that agrees."""
    x = find_mode([mix])
    return Estimate(mean=x, cov=local_covariance(mix, x), confidence=vote_share(mix, x))


def top1(mix):
    """The first component alone (the top-1 tile's prediction), for comparison."""
    return Estimate(mean=mix.means[0].copy(), cov=mix.covs[0].copy(), confidence=float(mix.weights[0]))


def ellipse(mean, cov, k, vertices=64):
    """(vertices + 1, 2) closed ring of the k-sigma ellipse of a 2D Gaussian."""
    values, vectors = np.linalg.eigh(np.asarray(cov, np.float64))
    angles = np.linspace(0.0, 2.0 * np.pi, vertices + 1)
    circle = np.stack([np.cos(angles), np.sin(angles)], axis=-1)
    ring = np.asarray(mean) + k * (circle * np.sqrt(np.maximum(values, 0.0))) @ vectors.T
    ring[-1] = ring[0]
    return ring
