"""The reference graph's own structure: tiles are nodes, and two tiles are linked by how much their
ground footprints (north-up squares of side width_m around their centres) overlap."""
import numpy as np


def overlap_areas(centres, widths):
    """(K, K) area (m^2) shared by the footprints of K tiles."""
    centres = np.asarray(centres, np.float64)
    half = np.asarray(widths, np.float64)[:, None] / 2.0
    low, high = centres - half, centres + half
    sides = np.minimum(high[:, None], high[None]) - np.maximum(low[:, None], low[None])
    return np.prod(np.clip(sides, 0.0, None), axis=-1)


def footprint_iou(centres, widths):
    """(K, K) intersection over union of the footprints; 1 on the diagonal."""
    shared = overlap_areas(centres, widths)
    areas = np.asarray(widths, np.float64) ** 2
    return shared / (areas[:, None] + areas[None] - shared)
