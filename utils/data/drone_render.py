"""Perspective views of a synthetic city's height field (utils/data/synthetic_vigor.CityMap).

Map raster and world (utils/data/drone_camera.py's frame) meet at the raster's corner: continuous
raster position (row, col) is the world point x = col * mpp (east), y = -row * mpp (north).

Each pixel's ray is marched through the slab 0 <= z <= (tallest point of the map): from where it
enters the slab to where it meets the ground, at distances in geometric progression, so that
one step is half a pixel's footprint at every distance (step / distance = 1 / (2 focal)). The
first sample under the height field is the hit: if the ray was above that cell's top at the
sample before and the point where it reaches that top's level lies on a cell at least that
high, it landed on the roof or ground (the aerial colour there is read from the mip level of
the pixel's footprint); otherwise it met a wall (the cell's wall colour, shaded). Rays that meet the ground beyond the
map see the map's mean colour; haze grows with distance; rays above the horizon see the sky.
Pure numpy, one row chunk at a time; the result depends on nothing but the inputs.
"""
import math

import numpy as np

from utils.data.drone_camera import pixel_rays

HAZE_METRES = 2500.0
CHUNK_RAYS = 4096
SAMPLES_PER_PIXEL = 2          # 1: edges of roofs seen from afar can be lost by up to a pixel


def raster_to_world(city, row, col, z=0.0):
    return np.stack(np.broadcast_arrays(np.asarray(col, np.float64) * city.mpp,
                                        -np.asarray(row, np.float64) * city.mpp, np.asarray(z, np.float64)), axis=-1)


def world_to_raster(city, x, y):
    """(row, col) continuous raster coordinates of world (x, y)."""
    return -np.asarray(y, np.float64) / city.mpp, np.asarray(x, np.float64) / city.mpp


def march_samples(camera_z, ray_z, tallest, focal, per_pixel=SAMPLES_PER_PIXEL):
    """Distances (N, K) along rays with vertical components ray_z < 0 from the slab's top to the ground,
    `per_pixel` samples per pixel footprint."""
    ground = camera_z / -ray_z
    enter = np.maximum((camera_z - tallest) / -ray_z, 1e-3 * ground)
    ratio = float(np.max(ground / enter))
    count = min(4096, max(2, int(math.ceil(math.log(ratio) * focal * per_pixel)) + 1))
    fractions = np.linspace(0.0, 1.0, count)
    return enter[:, None] * (ground / enter)[:, None] ** fractions[None, :]


def sample_colour(city, row, col, footprint_px):
    """Aerial colour at raster positions from the mip level of their footprint (map pixels)."""
    level = np.clip(np.floor(np.log2(np.maximum(footprint_px, 1.0))), 0, len(city.mips)).astype(np.int64)
    layers = [city.color] + list(city.mips)
    out = np.empty((len(row), 3), np.float32)
    for lv, layer in enumerate(layers):
        pick = np.flatnonzero(level == lv)
        if len(pick):
            lh, lw = layer.shape[:2]
            rr = np.clip((row[pick] / (1 << lv)).astype(np.int64), 0, lh - 1)
            cc = np.clip((col[pick] / (1 << lv)).astype(np.int64), 0, lw - 1)
            out[pick] = layer[rr, cc]
    return out


def padded_heights(city):
    """The height map with a one-cell border of zero height: the ground beyond the map."""
    return np.pad(city.height.astype(np.float32), 1)


def _cells_under(heights, mpp, origin, d, t):
    """Flat indices into `heights` (padded_heights) of the cells under the points origin + t * d."""
    width = heights.shape[1]
    col = (np.float32(origin[0]) + t * d[:, 0:1].astype(np.float32)) / np.float32(mpp)
    row = (np.float32(-origin[1]) - t * d[:, 1:2].astype(np.float32)) / np.float32(mpp)
    ic = np.clip(col + 1, 0, width - 1).astype(np.int32)          # truncation is floor: values are >= 0
    ir = np.clip(row + 1, 0, heights.shape[0] - 1).astype(np.int32)
    return ir * width + ic


def _shade_rays(city, heights, camera, rays, tallest, outside):
    """BGR float colours (N, 3) of rays (N, 3) leaving the camera."""
    style = city.style
    origin = camera.position
    colours = np.empty((len(rays), 3), np.float32)
    up = rays[:, 2] >= -1e-9
    elevation = np.clip(rays[up, 2], 0.0, 1.0) ** 0.6
    colours[up] = ((1.0 - elevation)[:, None] * np.asarray(style.sky_horizon, np.float32)
                   + elevation[:, None] * np.asarray(style.sky_top, np.float32))
    down = np.flatnonzero(~up)
    if len(down) == 0:
        return colours
    d = rays[down]
    t = march_samples(origin[2], d[:, 2], tallest, camera.focal).astype(np.float32)     # (n, K)
    map_h, map_w = city.shape
    cell = _cells_under(heights, city.mpp, origin, d, t)          # (n, K) flat index into `heights`
    z = np.float32(origin[2]) + t * d[:, 2:3].astype(np.float32)
    tops = heights.ravel()[cell]
    under = z <= tops
    under[:, -1] = True                                   # the last sample is on the ground
    k = np.argmax(under, axis=1)
    n = np.arange(len(down))
    ir = np.clip(cell[n, k] // (map_w + 2) - 1, 0, map_h - 1)
    ic = np.clip(cell[n, k] % (map_w + 2) - 1, 0, map_w - 1)
    top, hit_t = tops[n, k].astype(np.float64), t[n, k].astype(np.float64)
    before_t = t[n, np.maximum(k - 1, 0)].astype(np.float64)
    wall = (origin[2] + before_t * d[:, 2] < top) & (k > 0)
    land_t = np.clip((origin[2] - top) / -d[:, 2], before_t, hit_t)
    land_row, land_col = world_to_raster(city, origin[0] + land_t * d[:, 0], origin[1] + land_t * d[:, 1])
    land_inside = (land_row >= 0) & (land_row < map_h) & (land_col >= 0) & (land_col < map_w)
    land_top = np.where(land_inside, city.height[np.clip(land_row.astype(np.int64), 0, map_h - 1),
                                                 np.clip(land_col.astype(np.int64), 0, map_w - 1)], 0.0)
    wall |= land_top < top - 1e-3          # the ray crossed the top's level before reaching the cell: its side
    hit_t = np.where(wall, hit_t, land_t)
    hit_row, hit_col = world_to_raster(city, origin[0] + hit_t * d[:, 0], origin[1] + hit_t * d[:, 1])
    on_map = (hit_row >= 0) & (hit_row < map_h) & (hit_col >= 0) & (hit_col < map_w)
    shade = np.empty((len(down), 3), np.float32)
    flat = ~wall & on_map
    shade[flat] = sample_colour(city, hit_row[flat], hit_col[flat], hit_t[flat] / camera.focal / city.mpp)
    shade[~wall & ~on_map] = outside
    if wall.any():
        wr, wc = ir[wall], ic[wall]
        facing = np.cos(np.arctan2(d[wall, 0], d[wall, 1]) - math.radians(style.sun_azimuth))
        shade[wall] = city.wall[wr, wc].astype(np.float32) * (0.88 - 0.22 * facing).astype(np.float32)[:, None]
    haze = (1.0 - np.exp(-hit_t / HAZE_METRES)).astype(np.float32)[:, None]
    colours[down] = shade * (1.0 - haze) + haze * np.asarray(style.sky_horizon, np.float32)
    return colours


def render_view(city, camera):
    """The city seen by `camera` (utils.data.drone_camera.PinholeCamera): (H, W, 3) BGR uint8."""
    tallest = float(city.height.max()) + 1e-3
    heights = padded_heights(city)
    outside = city.mips[-1].reshape(-1, 3).mean(axis=0).astype(np.float32)
    image = np.empty((camera.height, camera.width, 3), np.float32)
    rows_per_chunk = max(1, CHUNK_RAYS // camera.width)
    for start in range(0, camera.height, rows_per_chunk):
        rows = np.arange(start, min(start + rows_per_chunk, camera.height))
        rays = pixel_rays(camera, rows).reshape(-1, 3)
        image[rows] = _shade_rays(city, heights, camera, rays, tallest, outside).reshape(len(rows), camera.width, 3)
    return np.clip(np.round(image), 0, 255).astype(np.uint8)
