"""SAFA's polar transform of an aerial image (script/data_preparation.py of SAFA).

Output pixel (i, j) of a height x width polar image samples the aerial image (side S) at
    row    x = S/2 + S/2 / height * (height - 1 - i) * cos(2 pi j / width)
    column y = S/2 - S/2 / height * (height - 1 - i) * sin(2 pi j / width)
with bilinear interpolation, neighbours outside the image counting as zero. So the bottom row
is the image centre, the top row the inscribed circle; column 0 looks south, width/4 west,
width/2 north (the centre column, as north-aligned panoramas) and 3 width/4 east.
"""
import numpy as np


def polar_grid(side, height, width):
    """(row, column) sample coordinates in the aerial image, each (height, width) float64."""
    i = np.arange(height, dtype=np.float64)[:, None]
    j = np.arange(width, dtype=np.float64)[None, :]
    radius = side / 2.0 / height * (height - 1 - i)
    angle = 2.0 * np.pi * j / width
    return side / 2.0 + radius * np.cos(angle), side / 2.0 - radius * np.sin(angle)


def bilinear_zero_outside(image, rows, cols):
    """Bilinear samples of image (H, W, C) at float (rows, cols); out-of-image neighbours are 0."""
    h, w = image.shape[:2]
    r0 = np.floor(rows).astype(np.int64)
    c0 = np.floor(cols).astype(np.int64)
    fr = (rows - r0)[..., None]
    fc = (cols - c0)[..., None]
    out = np.zeros(rows.shape + image.shape[2:], np.float64)

    def add(rr, cc, weight):
        ok = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
        values = np.zeros(rows.shape + image.shape[2:], np.float64)
        values[ok] = image[rr[ok], cc[ok]]
        return weight * values

    out += add(r0, c0, (1 - fr) * (1 - fc))
    out += add(r0 + 1, c0, fr * (1 - fc))
    out += add(r0, c0 + 1, (1 - fr) * fc)
    out += add(r0 + 1, c0 + 1, fr * fc)
    return out


def polar_transform(image, height, width):
    """Polar image (height, width, C) of a square aerial image; float32 for uint8/float32 input."""
    image = np.asarray(image)
    squeeze = image.ndim == 2
    if squeeze:
        image = image[:, :, None]
    side = image.shape[0]
    if image.shape[1] != side:
        raise ValueError(f"polar_transform needs a square image, got {image.shape[:2]}")
    rows, cols = polar_grid(side, int(height), int(width))
    out = bilinear_zero_outside(image, rows, cols)
    dtype = np.float64 if image.dtype == np.float64 else np.float32
    out = out.astype(dtype)
    return out[:, :, 0] if squeeze else out
