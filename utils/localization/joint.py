"""Joint localization of several panoramas taken near each other with known relative offsets.

Panorama j stands at x + offset_j (metres east, north of the first one). Its top-k mixture p_j
votes for x through p_j(x + offset_j); the joint estimate is the mode of prod_j p_j(x + offset_j)
(the fusion's fixed point over all factors) and its covariance the product of each panorama's
local Gaussian there: independent views of one spot sharpen it.
"""
import numpy as np

from utils.localization.fusion import Estimate, find_mode, local_covariance, vote_share


def localize_jointly(mixtures, offsets):
    """One Estimate per panorama (at x + offset_j) from the mixtures of all of them together."""
    offsets = np.asarray(offsets, np.float64)
    if offsets.shape != (len(mixtures), 2):
        raise ValueError(f"offsets have shape {offsets.shape}; need ({len(mixtures)}, 2), metres east and north")
    anchor = find_mode(mixtures, offsets)
    precision = sum(np.linalg.inv(local_covariance(mix, anchor + shift)) for mix, shift in zip(mixtures, offsets))
    cov = np.linalg.inv(precision)
    confidence = float(np.mean([vote_share(mix, anchor + shift) for mix, shift in zip(mixtures, offsets)]))
    return [Estimate(mean=anchor + shift, cov=cov, confidence=confidence) for shift in offsets]
