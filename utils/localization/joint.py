"""Joint localization of several panoramas taken near each other with known relative offsets.

Panorama j stands at x + offset_j (metres east, north of the first one). Its top-k mixture p_j
votes for x through p_j(x + offset_j); the joint estimate is the mode of the product
prod_j p_j(x + offset_j). The product is made robust: each factor keeps a flat floor holding
`outlier_share` of its mass spread over the database's area, so a panorama none of whose tiles
is right lowers the joint density by a bounded amount instead of vetoing the right spot. The
mode is searched from every shifted component mean and from the product of every two components
of different panoramas. Its covariance is the product of the local Gaussians there, each factor
counted by the share of its density its components explain (a factor in its floor adds nothing).
"""
from dataclasses import replace

import numpy as np

from utils.localization.fusion import Estimate, find_mode, local_covariance, responsibilities, vote_share


def with_floor(mix, outlier_share, area_m2):
    """The mixture with `outlier_share` of its weight moved to a flat floor over area_m2."""
    if outlier_share <= 0:
        return mix
    return replace(mix, weights=(1.0 - outlier_share) * mix.weights, floor=outlier_share / float(area_m2))


def localize_jointly(mixtures, offsets, outlier_share=0.0, area_m2=None):
    """One Estimate per panorama (at x + offset_j) from the mixtures of all of them together."""
    offsets = np.asarray(offsets, np.float64)
    if offsets.shape != (len(mixtures), 2):
        raise ValueError(f"offsets have shape {offsets.shape}; need ({len(mixtures)}, 2), metres east and north")
    if outlier_share > 0 and not (area_m2 and area_m2 > 0):
        raise ValueError("a robust product (outlier_share > 0) needs the database's area in square metres")
    factors = [with_floor(mix, outlier_share, area_m2) for mix in mixtures]
    anchor = find_mode(factors, offsets, pairs=True)
    precision = np.zeros((2, 2))
    for factor, shift in zip(factors, offsets):
        explained = float(responsibilities(factor, anchor + shift).sum())
        if explained > 1e-9:
            precision += explained * np.linalg.inv(local_covariance(factor, anchor + shift))
    cov = np.linalg.inv(precision) if np.linalg.det(precision) > 0 else local_covariance(mixtures[0], anchor)
    confidence = float(np.mean([vote_share(mix, anchor + shift) for mix, shift in zip(mixtures, offsets)]))
    return [Estimate(mean=anchor + shift, cov=cov, confidence=confidence) for shift in offsets]
