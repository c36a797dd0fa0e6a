"""utils.polar: SAFA's polar transform against a direct per-pixel computation."""
import math

import numpy as np
import pytest

from utils.polar import polar_transform


def reference(image, height, width):
    """One output pixel at a time, straight from SAFA's formulas."""
    side = image.shape[0]
    out = np.zeros((height, width, image.shape[2]))
    for i in range(height):
        for j in range(width):
            r = side / 2.0 / height * (height - 1 - i)
            x = side / 2.0 + r * math.cos(2 * math.pi * j / width)      # row
            y = side / 2.0 - r * math.sin(2 * math.pi * j / width)      # column
            x0, y0 = int(math.floor(x)), int(math.floor(y))
            total = np.zeros(image.shape[2])
            for xi, wx in ((x0, x0 + 1 - x), (x0 + 1, x - x0)):
                for yi, wy in ((y0, y0 + 1 - y), (y0 + 1, y - y0)):
                    if 0 <= xi < side and 0 <= yi < side:
                        total += wx * wy * image[xi, yi]
            out[i, j] = total
    return out


@pytest.mark.parametrize("side,height,width", [(33, 8, 24), (40, 10, 32), (7, 6, 20)])
def test_matches_per_pixel_reference(side, height, width):
    image = np.random.default_rng(side).uniform(0, 255, (side, side, 3))
    got = polar_transform(image, height, width)
    assert got.shape == (height, width, 3) and got.dtype == np.float64
    assert np.allclose(got, reference(image, height, width), atol=1e-9)


def test_uint8_gives_float32_and_zero_outside():
    image = np.full((15, 15, 3), 200, np.uint8)
    out = polar_transform(image, 8, 32)
    assert out.dtype == np.float32
    assert np.allclose(out[-1], 200)               # the centre: the four neighbours are inside
    assert out[0].min() < 199                      # the outer ring reaches past the border: zeros mix in
    gray = polar_transform(np.ones((16, 16), np.float32), 4, 8)
    assert gray.shape == (4, 8)


def test_orientation_north_at_the_centre_column():
    image = np.zeros((64, 64, 3), np.float32)
    image[:20, :, 2] = 255.0                       # north third red
    image[44:, :, 1] = 255.0                       # south third green
    out = polar_transform(image, 16, 64)
    assert out[2, 32, 2] > 200 and out[2, 0, 1] > 200 and out[2, 63, 1] > 200
    with pytest.raises(ValueError):
        polar_transform(np.zeros((4, 5, 3)), 2, 4)


def test_orientation_west_and_east_are_not_mirrored():
    image = np.zeros((64, 64, 3), np.float32)
    image[:, :24, 1] = 255.0                       # west third green (north-up aerial: west is left)
    image[:, 40:, 2] = 255.0                       # east third red
    out = polar_transform(image, 16, 64)
    assert out[2, 16, 1] > 200 and out[2, 16, 2] < 50   # a quarter turn from south: west
    assert out[2, 48, 2] > 200 and out[2, 48, 1] < 50   # three quarters: east
