"""A side-looking SAR image of a height field (the synthetic city's `CityMap`), in ground range on
the map's own grid, so that it lies on the optical map pixel for pixel (SpaceNet 6 ships its SAR
tiles geocoded onto the optical tiles' grid).

Geometry: a plane wave from a sensor far off on one side of the map (`sensor_side`: "north",
"south", "east" or "west"; SpaceNet 6's strips were imaged from the north or the south), at
incidence angle theta from the vertical (default 35 degrees, SpaceNet 6's average off-nadir look).
A point at ground range x (metres, away from the sensor) and height z has slant range
x sin(theta) - z cos(theta), so on the ground-range image it appears at x - z / tan(theta):
every elevated point is displaced toward the sensor by z / tan(theta) (layover: a wall top of
height h lands h / tan(theta) in front of its foot). Rays descend by 1 / tan(theta) metres per
metre of ground range, so a wall of height h hides h tan(theta) metres of ground behind it
(radar shadow). A surface element is visible when no element nearer the sensor rises above the
ray through it.

Brightness (linear intensity, per band HH, HV, VH, VV): each visible element returns
reflectivity x cos(local incidence) (flat ground and roofs: theta; walls facing the sensor:
90 - theta), spread over the image length it covers, so overlapping returns (layover) add up.
At the foot of each visible wall that faces the sensor a double bounce (ground -> wall ->
sensor, the same path length as the corner itself) adds a bright line at the foot's image
position. Shadowed ground returns nothing; a noise floor keeps the dB finite. Reflectivities by
kind (ground, building roof, tree, car, water) and their polarisation ratios are in REFLECTIVITY
and the *_RATIO tables: cross-polarised returns are weak except from trees (volume scattering);
double bounce is mostly co-polarised and strongest in HH; HV and VH are equal (reciprocity).

Speckle: fully developed, multiplicative, Gamma with `looks` L (mean 1, variance 1/L), one
field per band, HV and VH sharing theirs. `to_db` gives 10 log10(intensity), clipped to
[DB_MIN, DB_MAX].
"""
import math
from dataclasses import dataclass

import numpy as np

from utils.data.synthetic_vigor import KIND_BUILDING, KIND_CAR, KIND_GROUND, KIND_TREE, KIND_WATER

BANDS = ("HH", "HV", "VH", "VV")
INCIDENCE_DEG = 35.0
SIDES = {"west": 0, "north": 1, "east": 2, "south": 3}     # np.rot90 turns that side to the west
NOISE_FLOOR = 1e-4           # linear intensity of the thermal noise (-40 dB)
DB_MIN, DB_MAX = -60.0, 40.0
WALL_SAMPLES_PER_PIXEL = 2   # wall samples per image pixel of layover

#                    kind:   surface  wall   double bounce
REFLECTIVITY = {KIND_GROUND: (0.30, 0.00, 0.0),
                KIND_BUILDING: (0.40, 0.60, 8.0),
                KIND_TREE: (0.80, 0.80, 0.5),
                KIND_CAR: (1.50, 1.50, 4.0),
                KIND_WATER: (0.01, 0.00, 0.0)}
CROSS_RATIO = {KIND_GROUND: 0.10, KIND_BUILDING: 0.15, KIND_TREE: 0.45, KIND_CAR: 0.15, KIND_WATER: 0.05}
VV_RATIO = {KIND_GROUND: 1.3, KIND_BUILDING: 1.0, KIND_TREE: 1.0, KIND_CAR: 1.0, KIND_WATER: 2.0}
DOUBLE_BOUNCE_RATIO = (1.0, 0.02, 0.02, 0.6)                # HH, HV, VH, VV


@dataclass
class SarImage:
    intensity: np.ndarray    # (4, H, W) float64 linear, noise-free, bands BANDS
    shadow: np.ndarray       # (H, W) bool map pixels the radar does not see
    incidence_deg: float
    sensor_side: str


def _band_weights(kind, column):
    """(4, ...) per-band factors of a kind map for reflectivity column 0 (surface) or 1 (wall)."""
    base = np.zeros(kind.shape)
    cross = np.zeros(kind.shape)
    vv = np.ones(kind.shape)
    for k, values in REFLECTIVITY.items():
        mask = kind == k
        base[mask] = values[column]
        cross[mask] = CROSS_RATIO[k]
        vv[mask] = VV_RATIO[k]
    return np.stack([base, base * cross, base * cross, base * vv])


def _double_bounce_weights(kind):
    strength = np.zeros(kind.shape)
    for k, values in REFLECTIVITY.items():
        strength[kind == k] = values[2]
    return np.stack([strength * ratio for ratio in DOUBLE_BOUNCE_RATIO])


def _splat(image, rows, positions, energy):
    """Add energy (4, n) at image rows and float column positions, spread over the pixels the
    unit-length interval [position, position + 1) overlaps."""
    width = image.shape[2]
    left = np.floor(positions).astype(np.int64)
    share = positions - left
    for cols, weight in ((left, 1.0 - share), (left + 1, share)):
        ok = (cols >= 0) & (cols < width) & (weight > 0)
        flat = rows[ok] * width + cols[ok]
        for band in range(image.shape[0]):
            image[band].ravel()[:] += np.bincount(flat, weights=energy[band][ok] * weight[ok],
                                                  minlength=image.shape[1] * width)


def _add_points(image, rows, positions, energy):
    """Add energy (4, n) at image rows and the pixels holding float column positions."""
    width = image.shape[2]
    cols = np.floor(positions).astype(np.int64)
    ok = (cols >= 0) & (cols < width)
    flat = rows[ok] * width + cols[ok]
    for band in range(image.shape[0]):
        image[band].ravel()[:] += np.bincount(flat, weights=energy[band][ok], minlength=image.shape[1] * width)


def _render_from_west(height, kind, mpp, incidence_deg):
    """SarImage arrays for a sensor to the west (column 0 nearest): (intensity, shadow)."""
    theta = math.radians(incidence_deg)
    cot = 1.0 / math.tan(theta)
    shift = cot / mpp                                   # image pixels toward the sensor per metre of height
    h, w = height.shape
    z = height.astype(np.float64)
    cols = np.arange(w, dtype=np.float64)[None, :]
    far_edge = z + (cols + 1.0) * mpp * cot             # the ray level each column blocks behind it
    blocking = np.full((h, w), -np.inf)
    blocking[:, 1:] = np.maximum.accumulate(far_edge, axis=1)[:, :-1]
    eps = 1e-9
    shadow = z + (cols + 0.5) * mpp * cot < blocking - eps
    image = np.zeros((4, h, w))

    surface = _band_weights(kind, 0) * math.cos(theta)
    rows = np.repeat(np.arange(h), w)
    visible = ~shadow.ravel()
    _splat(image, rows[visible], (cols - z * shift).ravel()[visible],
           surface.reshape(4, -1)[:, visible])

    wall_r, wall_i = np.nonzero(z[:, 1:] > z[:, :-1])
    wall_i = wall_i + 1                                 # the wall stands at the west edge of column wall_i
    if len(wall_r):
        low, high = z[wall_r, wall_i - 1], z[wall_r, wall_i]
        block = blocking[wall_r, wall_i]
        base_level = wall_i * mpp * cot
        counts = np.maximum(1, np.ceil((high - low) * shift * WALL_SAMPLES_PER_PIXEL).astype(np.int64))
        owner = np.repeat(np.arange(len(wall_r)), counts)
        step = (high - low) / counts
        within = np.arange(len(owner)) - np.repeat(np.cumsum(counts) - counts, counts)
        sample_z = low[owner] + (within + 0.5) * step[owner]
        seen = sample_z + base_level[owner] >= block[owner] - eps
        wall_kind = kind[wall_r, wall_i]
        energy = _band_weights(wall_kind, 1)[:, owner] * math.sin(theta) * (step * shift)[owner]
        _add_points(image, wall_r[owner][seen], (wall_i[owner] - sample_z * shift)[seen], energy[:, seen])
        foot_seen = low + base_level >= block - eps
        _add_points(image, wall_r[foot_seen], (wall_i - low * shift)[foot_seen],
                    _double_bounce_weights(wall_kind)[:, foot_seen])
    return image, shadow


def render_sar(height, kind=None, mpp=0.5, incidence_deg=INCIDENCE_DEG, sensor_side="north"):
    """Noise-free SarImage of a height field (H, W metres) with its kind map (KIND_*; default:
    buildings where the height is above zero, ground elsewhere), `mpp` metres per pixel."""
    if sensor_side not in SIDES:
        raise ValueError(f"sensor_side must be one of {sorted(SIDES)}, not {sensor_side!r}")
    if not 0.0 < incidence_deg < 90.0:
        raise ValueError(f"incidence_deg must be strictly between 0 and 90, not {incidence_deg}")
    height = np.asarray(height, np.float64)
    if kind is None:
        kind = np.where(height > 0, KIND_BUILDING, KIND_GROUND).astype(np.uint8)
    turns = SIDES[sensor_side]
    image, shadow = _render_from_west(np.rot90(height, turns), np.rot90(kind, turns), mpp, incidence_deg)
    return SarImage(intensity=np.ascontiguousarray(np.rot90(image, -turns, axes=(1, 2))),
                    shadow=np.ascontiguousarray(np.rot90(shadow, -turns)),
                    incidence_deg=float(incidence_deg), sensor_side=sensor_side)


def speckle(shape, looks, rng):
    """Multiplicative speckle of `looks`-look intensity: Gamma(L, 1/L), mean 1, variance 1/L."""
    return rng.gamma(looks, 1.0 / looks, size=shape)


def observe(intensity, looks, rng):
    """Noisy linear intensity (4, H, W): (noise-free + noise floor) x speckle; HV and VH share it."""
    fields = speckle((3,) + intensity.shape[1:], looks, rng)
    return (intensity + NOISE_FLOOR) * fields[[0, 1, 1, 2]]


def to_db(intensity):
    """10 log10(intensity) as float32, clipped to [DB_MIN, DB_MAX]."""
    db = 10.0 * np.log10(np.maximum(intensity, 10.0 ** (DB_MIN / 10.0)))
    return np.clip(db, DB_MIN, DB_MAX).astype(np.float32)
