"""Top-k fusion: the retrieved tiles' Gaussians as one similarity-weighted mixture in metres.

Each retrieved tile i predicts the panorama at mean mu_i with covariance S_i (SAMP's heatmap
mean and Cholesky Sigma, mapped to the metric frame). The mixture sum_i w_i N(x; mu_i, S_i),
w = softmax(similarity / temperature), lets overlapping tiles of a dense database vote for the
same spot. The fused position is its mode, found by the fixed-point iteration
x <- (sum_i r_i(x) S_i^-1)^-1 sum_i r_i(x) S_i^-1 mu_i (r: responsibilities) started from every
mean; the same iteration over a product of shifted mixtures localizes several panoramas jointly.
"""
from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp, softmax

CHI2_2D_95 = 5.991464547107979      # Mahalanobis radius squared holding 95 % of a 2D Gaussian
LOG_2PI = float(np.log(2.0 * np.pi))


@dataclass
class Mixture:
    means: np.ndarray      # (K, 2) metres
    covs: np.ndarray       # (K, 2, 2)
    weights: np.ndarray    # (K,) summing to 1


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
    diff = np.asarray(x, np.float64) - mix.means
    return np.einsum("ki,kij,kj->k", diff, np.linalg.inv(mix.covs), diff)


def _log_terms(mix, x):
    """log w_i + log N(x; mu_i, S_i), (K,)."""
    _, logdet = np.linalg.slogdet(mix.covs)
    with np.errstate(divide="ignore"):
        return np.log(mix.weights) - 0.5 * (_mahalanobis_sq(mix, x) + logdet) - LOG_2PI


def log_density(mix, x):
    return float(logsumexp(_log_terms(mix, x)))


def responsibilities(mix, x):
    return softmax(_log_terms(mix, x))


def _climb(mixtures, shifts, start, iterations=200, tolerance=1e-7):
    x = np.asarray(start, np.float64)
    for _ in range(iterations):
        precision_sum, target = np.zeros((2, 2)), np.zeros(2)
        for mix, shift in zip(mixtures, shifts):
            r = responsibilities(mix, x + shift)
            precisions = np.linalg.inv(mix.covs)
            precision_sum += np.einsum("k,kij->ij", r, precisions)
            target += np.einsum("k,kij,kj->i", r, precisions, mix.means - shift)
        new = np.linalg.solve(precision_sum, target)
        if np.linalg.norm(new - x) < tolerance:
            return new
        x = new
    return x


def find_mode(mixtures, shifts=None):
    """argmax_x prod_j p_j(x + shift_j): the highest of the modes reached from every (shifted) mean."""
    shifts = np.zeros((len(mixtures), 2)) if shifts is None else np.asarray(shifts, np.float64)
    best, best_score = None, -np.inf
    for mix, shift in zip(mixtures, shifts):
        for mean in mix.means:
            x = _climb(mixtures, shifts, mean - shift)
            score = sum(log_density(m, x + s) for m, s in zip(mixtures, shifts))
            if score > best_score:
                best, best_score = x, score
    return best


def local_covariance(mix, x):
    """Moment-matched covariance of the components, weighted by their responsibility at x: the
    panorama's local Gaussian there (the spread of agreeing votes widens it)."""
    r = responsibilities(mix, x)
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
