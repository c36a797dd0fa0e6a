"""A procedural stand-in for VIGOR: aerial tiles and matching ground panoramas in VIGOR's formats.

    python -m tools.synthetic_city --out data/synthetic --seed 0 [--cities 4] [--tiles-per-side 6]
        [--pano-size 256x128] [--panos-per-tile 1.5] [--meters-per-pixel 0.114]

Each city is a height-field map (roads on a jittered, rotated grid with sidewalks and lane
markings, lots with buildings of random height and roof colour, roof boxes, parks, parking lots,
trees, cars, water, sun shadows, noise textures; one palette per city) drawn at
`meters_per_pixel` per pixel of a 640-pixel tile. Tiles are cut on VIGOR's half-overlapping grid
(stride 320 px). Panoramas are ray-cast from points on the streets of that same map, so the two
views really correspond:

* 2:1 equirectangular, north-aligned like VIGOR's: north at the centre column, east at 3/4 of
  the width, south at both edges, west at 1/4 (the convention of SAFA's polar transform).
* Below the horizon the ray meets the ground or a roof and takes the aerial colour there; a ray
  that meets the side of a building, tree or car takes its wall colour (derived from the roof
  colour, with windows and sun shading); above everything is the sky.

Labels: the positive of a panorama is the tile whose central quarter (|delta| < 160 px) holds
it, the three semi-positives are the other tiles that contain it (in random order); offsets
are computed from the GPS in the file names with VIGOR's formula (utils.data.geo.gps_to_delta).
Same-area train/test take a random half of each city's panoramas. Deterministic for a seed.

The four ambiguity sources SAMP names are built in, each with a known amount per panorama,
written next to VIGOR's files in `splits/<city>/panorama_difficulty.txt` (VIGOR's own files are
unchanged; see `read_difficulty`):

* low overlap: the share of the panorama's surroundings (a 40 m disc) outside its positive tile;
* dynamic foreground: vehicles and people drawn into the panorama only (not on the tile);
* viewpoint change: camera height from 2.5 m up to 6 m and a heading error up to 10 degrees;
* perceptual aliasing: a quarter of the lots repeat one of two template buildings (same footprint
  setback, height, roof and facade colour); the share of repeated buildings around the camera.

Each is scaled to [0, 1]; `difficulty` is their mean. Each can be switched off (`Ambiguity`;
config `data.synthetic.ambiguity.*`); the random draws are made either way, so a panorama's source
switched off (heading, camera rise, foreground) changes only the panoramas that had it, and
repeated lots switched off change those buildings (and so the street points near them) only.
Full overlap (off by default) limits what a panorama sees to a disc that always lies inside its
positive tile (`FULL_OVERLAP_PX`): the world beyond it is flat and the colour of the horizon haze;
panoramas still stand anywhere in the central quarter.

Each city's whole aerial map is also written as a GeoTIFF, `<city>/aerial_map.tif`
(utils/data/synthetic_raster.py).
"""
import glob
import json
import math
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import cv2
import numpy as np

from utils.data.dataset import (
    PANO_LABELS,
    RESOLUTION_FILE,
    SAME_AREA_TEST,
    SAME_AREA_TRAIN,
    SAT_LIST,
    pano_file_name,
    parse_pano_name,
    parse_sat_name,
    sat_file_name,
)
from utils.data.geo import enu_to_gps, gps_to_delta
from utils.data.synthetic_raster import full_resolution, write_city_raster

GENERATOR_VERSION = 3           # 2: tiles cut from the upsampled whole map, + the city's GeoTIFF; 3: ambiguity
DIFFICULTY_FILE = "panorama_difficulty.txt"   # space-separated, like VIGOR's label files
MANIFEST = "synthetic_manifest.json"
TILE = 640
STRIDE = 320
CITY_NAMES = ("NewYork", "Seattle", "SanFrancisco", "Chicago")
CITY_ORIGINS = {"NewYork": (40.7128, -74.0060), "Seattle": (47.6062, -122.3321),
                "SanFrancisco": (37.7749, -122.4194), "Chicago": (41.8781, -87.6298)}
CAMERA_HEIGHT = 2.5           # metres, a Street View car
QUARTER_LIMIT = 159.5         # keep positives strictly inside the central quarter (|delta| <= 160)

KIND_GROUND, KIND_BUILDING, KIND_TREE, KIND_CAR, KIND_WATER = 0, 1, 2, 3, 4
REPEATED_LOT_SHARE = 0.25     # perceptual aliasing: lots that copy one of two template buildings
SURROUNDINGS_M = 40.0         # radius of the "surroundings" used by the overlap and aliasing measures
MAX_CAMERA_RISE = 3.5         # metres above CAMERA_HEIGHT at the largest viewpoint change
MAX_HEADING_ERROR = 10.0      # degrees
MAX_FOREGROUND = 0.6          # share of the panorama's lower two thirds hidden by foreground
FULL_OVERLAP_PX = TILE / 2 - QUARTER_LIMIT - 1.0   # 640-px units: a disc of this radius around any
                              # panorama lies inside its positive tile (it stands within QUARTER_LIMIT of the centre)


@dataclass(frozen=True)
class Ambiguity:
    """Which of the ambiguity sources the city has (all, by default: the generator's behaviour
    before the switches existed)."""
    heading_error: bool = True     # panoramas turned up to MAX_HEADING_ERROR degrees
    camera_rise: bool = True       # camera up to MAX_CAMERA_RISE above CAMERA_HEIGHT
    foreground: bool = True        # vehicles and people in the panorama only
    repeated_lots: bool = True     # perceptual aliasing: template buildings repeated over the city
    full_overlap: bool = False     # True: a panorama sees only what lies on its positive tile

    def changes(self):
        """{field: value} of the switches that differ from the default."""
        default = Ambiguity()
        return {name: getattr(self, name) for name in self.__dataclass_fields__
                if getattr(self, name) != getattr(default, name)}


# ---------------------------------------------------------------- city styles
@dataclass
class CityStyle:
    angle: float                 # grid rotation, degrees
    block_u: tuple               # block length ranges (m) across the two road families
    block_v: tuple
    road: tuple                  # road width range (m)
    sidewalk: float
    lots_u: tuple                # lots per block along each axis (inclusive range, at most 4)
    lots_v: tuple
    building_prob: float
    heights: tuple               # building heights (m)
    setback: tuple
    roofs: tuple                 # BGR roof colours
    yard: tuple
    grass: tuple
    road_color: tuple
    walk_color: tuple
    foliage: tuple
    water_color: tuple
    water_edge: str              # '', 'west', 'east', 'north'
    street_trees: float          # probability of a tree per 10 m of sidewalk
    park_trees: float            # trees per 100 m2 of park
    cars: float                  # cars per 100 m of road
    sun_azimuth: float           # degrees clockwise from north
    sun_elevation: float
    sky_top: tuple
    sky_horizon: tuple


STYLES = {
    "NewYork": CityStyle(
        angle=29.0, block_u=(45, 70), block_v=(75, 115), road=(10, 16), sidewalk=3.5,
        lots_u=(1, 2), lots_v=(2, 4), building_prob=0.92, heights=(14, 60), setback=(0.2, 1.2),
        roofs=((92, 92, 98), (70, 82, 104), (122, 122, 124), (62, 62, 72), (104, 112, 132), (80, 96, 120)),
        yard=(112, 116, 122), grass=(62, 112, 72), road_color=(72, 72, 76), walk_color=(150, 155, 160),
        foliage=(40, 92, 52), water_color=(110, 80, 40), water_edge="", street_trees=0.35, park_trees=1.2,
        cars=1.6, sun_azimuth=150, sun_elevation=40, sky_top=(200, 160, 120), sky_horizon=(215, 200, 190)),
    "Seattle": CityStyle(
        angle=-3.0, block_u=(55, 85), block_v=(55, 85), road=(9, 13), sidewalk=3.0,
        lots_u=(2, 3), lots_v=(2, 3), building_prob=0.7, heights=(6, 32), setback=(1.0, 4.0),
        roofs=((82, 82, 78), (62, 74, 62), (142, 142, 136), (96, 86, 80), (52, 62, 92), (120, 110, 100)),
        yard=(78, 118, 88), grass=(56, 122, 62), road_color=(84, 84, 84), walk_color=(160, 162, 160),
        foliage=(36, 96, 44), water_color=(100, 84, 52), water_edge="west", street_trees=0.8, park_trees=2.5,
        cars=1.0, sun_azimuth=160, sun_elevation=30, sky_top=(190, 175, 160), sky_horizon=(200, 198, 195)),
    "SanFrancisco": CityStyle(
        angle=8.0, block_u=(60, 95), block_v=(90, 130), road=(9, 14), sidewalk=3.0,
        lots_u=(2, 3), lots_v=(3, 4), building_prob=0.9, heights=(6, 18), setback=(0.2, 1.5),
        roofs=((200, 200, 190), (180, 200, 222), (168, 190, 204), (212, 206, 200), (158, 172, 188), (190, 214, 230)),
        yard=(150, 170, 172), grass=(84, 142, 112), road_color=(96, 96, 100), walk_color=(178, 182, 186),
        foliage=(52, 110, 70), water_color=(130, 96, 50), water_edge="north", street_trees=0.4, park_trees=1.5,
        cars=1.3, sun_azimuth=170, sun_elevation=50, sky_top=(235, 185, 130), sky_horizon=(240, 220, 200)),
    "Chicago": CityStyle(
        angle=0.0, block_u=(60, 90), block_v=(100, 140), road=(11, 18), sidewalk=3.5,
        lots_u=(1, 3), lots_v=(1, 3), building_prob=0.82, heights=(8, 45), setback=(0.5, 2.5),
        roofs=((52, 62, 82), (72, 72, 72), (42, 46, 56), (92, 100, 112), (62, 76, 96), (110, 120, 140)),
        yard=(96, 112, 104), grass=(52, 112, 72), road_color=(64, 66, 70), walk_color=(140, 146, 150),
        foliage=(34, 86, 48), water_color=(120, 100, 60), water_edge="east", street_trees=0.6, park_trees=1.8,
        cars=1.4, sun_azimuth=140, sun_elevation=35, sky_top=(220, 175, 140), sky_horizon=(225, 210, 200)),
}


def random_style(rng):
    """A style for cities beyond VIGOR's four."""
    def colour(lo=40, hi=220):
        return tuple(int(c) for c in rng.integers(lo, hi, 3))
    return CityStyle(
        angle=float(rng.uniform(-45, 45)), block_u=(50, 90), block_v=(60, 120), road=(9, 16), sidewalk=3.0,
        lots_u=(1, 3), lots_v=(1, 4), building_prob=float(rng.uniform(0.6, 0.95)),
        heights=(6, float(rng.uniform(20, 60))), setback=(0.3, 3.0),
        roofs=tuple(colour() for _ in range(6)), yard=colour(80, 170), grass=(60, 120, 70),
        road_color=colour(60, 100), walk_color=colour(140, 190), foliage=(40, 95, 50),
        water_color=(115, 90, 50), water_edge=str(rng.choice(["", "west", "east", "north"])),
        street_trees=float(rng.uniform(0.2, 0.8)), park_trees=1.5, cars=1.2,
        sun_azimuth=float(rng.uniform(120, 200)), sun_elevation=float(rng.uniform(30, 55)),
        sky_top=(210, 170, 130), sky_horizon=(220, 205, 195))


def city_names(count):
    return list(CITY_NAMES[:count]) + [f"City{i + 1}" for i in range(len(CITY_NAMES), count)]


def city_origin(name, index):
    if name in CITY_ORIGINS:
        return CITY_ORIGINS[name]
    return (30.0 + 2.0 * index, -100.0 + 3.0 * index)


# ---------------------------------------------------------------- textures
def value_noise(shape, cell_px, rng, octaves=3):
    """Smooth noise in about [-1, 1]: random grids upsampled bicubically, summed over octaves."""
    h, w = shape
    out = np.zeros(shape, np.float32)
    amplitude, total = 1.0, 0.0
    for _ in range(octaves):
        gh, gw = max(2, int(h / cell_px) + 2), max(2, int(w / cell_px) + 2)
        grid = rng.uniform(-1, 1, (gh, gw)).astype(np.float32)
        out += amplitude * cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
        total += amplitude
        amplitude *= 0.5
        cell_px = max(1.0, cell_px / 2.0)
    return out / total


# ---------------------------------------------------------------- the map
@dataclass
class CityMap:
    name: str
    style: CityStyle
    mpp: float                  # metres per pixel
    color: np.ndarray           # (H, W, 3) uint8 BGR, the aerial view
    height: np.ndarray          # (H, W) float32 metres above the ground
    wall: np.ndarray            # (H, W, 3) uint8 colour seen from the side
    kind: np.ndarray            # (H, W) uint8 KIND_*
    road: np.ndarray            # (H, W) bool free road surface
    walk: np.ndarray            # (H, W) bool free sidewalk
    mips: list                  # color at 1/2, 1/4, 1/8 (level 0 is color)
    origin: tuple               # (lat, lng) of the map centre
    rotation: tuple             # (cos, sin) of the grid angle
    repeated: np.ndarray = None  # (H, W) bool building pixels of a repeated (template) lot

    @property
    def shape(self):
        return self.height.shape

    def pixel_to_gps(self, row, col):
        """GPS of continuous pixel coordinates (pixel i spans [i, i + 1))."""
        h, w = self.shape
        east = (np.asarray(col, np.float64) - w / 2.0) * self.mpp
        north = (h / 2.0 - np.asarray(row, np.float64)) * self.mpp
        return enu_to_gps(self.origin[0], self.origin[1], east, north)


def _cells(lo, hi, blocks, roads, rng):
    """Road cells along one axis: cell k spans [start[k], start[k+1]) and begins with a road."""
    starts = [lo - rng.uniform(0.0, blocks[1])]
    widths = []
    while starts[-1] < hi:
        width = rng.uniform(*roads)
        widths.append(width)
        starts.append(starts[-1] + width + rng.uniform(*blocks))
    return np.array(starts, np.float32), np.array(widths, np.float32)


def _axis_layout(coord, starts, widths, sidewalk):
    k = np.clip(np.searchsorted(starts, coord, side="right") - 1, 0, len(widths) - 1)
    t = coord - starts[k]
    width = widths[k]
    length = starts[k + 1] - starts[k]
    road = t < width
    inner = t - width - sidewalk                     # position inside the block
    block_len = length - width - 2 * sidewalk
    walk = ~road & ((inner < 0) | (inner >= block_len))
    centre = np.abs(t - width / 2)                  # distance to the road's centre line
    return k, road, walk, inner, block_len, centre


def build_city_map(name, style, side_px, mpp, rng, origin, repeated_lots=True):
    """Draw one city: colour, height, wall colour and kind layers of side_px x side_px pixels."""
    h = w = side_px
    angle = math.radians(style.angle)
    ca, sa = math.cos(angle), math.sin(angle)
    ys = ((np.arange(h, dtype=np.float32) + 0.5) * mpp)[:, None]
    xs = ((np.arange(w, dtype=np.float32) + 0.5) * mpp)[None, :]
    wobble = 0.6 * value_noise((h, w), 40.0 / mpp, rng, octaves=2)
    u = xs * ca + ys * sa + wobble
    v = -xs * sa + ys * ca - wobble
    span = side_px * mpp * 1.5
    su, wu = _cells(-span, span, style.block_u, style.road, rng)
    sv, wv = _cells(-span, span, style.block_v, style.road, rng)
    ku, road_u, walk_u, bu, blen_u, cen_u = _axis_layout(u, su, wu, style.sidewalk)
    kv, road_v, walk_v, bv, blen_v, cen_v = _axis_layout(v, sv, wv, style.sidewalk)
    road = road_u | road_v
    walk = ~road & (walk_u | walk_v)
    interior = ~road & ~walk

    # lots: per block a random number along each axis, per lot a type, height, colour, setback
    n_u, n_v = len(wu), len(wv)
    lots_u = rng.integers(style.lots_u[0], style.lots_u[1] + 1, (n_u, n_v))
    lots_v = rng.integers(style.lots_v[0], style.lots_v[1] + 1, (n_u, n_v))
    nlu = lots_u[ku, kv]
    nlv = lots_v[ku, kv]
    blen_u = np.maximum(blen_u, 1e-3)
    blen_v = np.maximum(blen_v, 1e-3)
    iu = np.clip((bu / blen_u * nlu).astype(np.int32), 0, nlu - 1)
    iv = np.clip((bv / blen_v * nlv).astype(np.int32), 0, nlv - 1)
    len_u = blen_u / nlu
    len_v = blen_v / nlv
    lu = bu - iu * len_u
    lv = bv - iv * len_v
    lot = ((ku * n_v + kv) * 4 + iu) * 4 + iv
    n_lots = n_u * n_v * 16
    lot_kind = rng.choice(3, n_lots, p=[style.building_prob, (1 - style.building_prob) * 0.6,
                                        (1 - style.building_prob) * 0.4])   # building, park, parking
    lot_height = rng.uniform(*style.heights, n_lots).astype(np.float32)
    lot_setback = rng.uniform(*style.setback, n_lots).astype(np.float32)
    roofs = np.array(style.roofs, np.float32)
    lot_roof = roofs[rng.integers(0, len(roofs), n_lots)] * rng.uniform(0.85, 1.15, (n_lots, 1))
    lot_roof = np.clip(lot_roof + rng.normal(0, 8, (n_lots, 3)), 0, 255).astype(np.float32)
    lot_box = rng.random(n_lots) < 0.6
    lot_box_pos = rng.uniform(0.15, 0.6, (n_lots, 2)).astype(np.float32)
    lot_box_size = rng.uniform(2.0, 6.0, (n_lots, 2)).astype(np.float32)
    lot_box_height = rng.uniform(1.5, 3.5, n_lots).astype(np.float32)
    lot_repeated = _repeat_template_lots(rng, n_lots, lot_kind, lot_height, lot_setback, lot_roof, lot_box,
                                         lot_box_pos, lot_box_size, lot_box_height, apply=repeated_lots)

    kind_of_lot = lot_kind[lot]
    setback = lot_setback[lot]
    foot_u = len_u - 2 * setback
    foot_v = len_v - 2 * setback
    building = (interior & (kind_of_lot == 0) & (foot_u > 4.0) & (foot_v > 4.0)
                & (lu > setback) & (lu < len_u - setback) & (lv > setback) & (lv < len_v - setback))
    park = interior & ~building & (kind_of_lot == 1)
    parking = interior & ~building & (kind_of_lot == 2)
    yard = interior & ~building & ~park & ~parking

    # distance to the footprint edge, for parapets
    edge = np.minimum(np.minimum(lu - setback, len_u - setback - lu), np.minimum(lv - setback, len_v - setback - lv))
    box_u0 = setback + lot_box_pos[lot, 0] * foot_u
    box_v0 = setback + lot_box_pos[lot, 1] * foot_v
    roof_box = (building & lot_box[lot] & (lu > box_u0) & (lu < box_u0 + lot_box_size[lot, 0])
                & (lv > box_v0) & (lv < box_v0 + lot_box_size[lot, 1]) & (edge > 1.0))

    height = np.zeros((h, w), np.float32)
    height[building] = lot_height[lot[building]]
    height[roof_box] += lot_box_height[lot[roof_box]]
    kind = np.zeros((h, w), np.uint8)
    kind[building] = KIND_BUILDING

    fine = value_noise((h, w), 1.5 / mpp, rng, octaves=2)
    coarse = value_noise((h, w), 25.0 / mpp, rng, octaves=3)
    color = np.empty((h, w, 3), np.float32)

    def paint(mask, base, fine_amp, coarse_amp):
        shade = 1.0 + fine_amp * fine[mask] + coarse_amp * coarse[mask]
        color[mask] = np.asarray(base, np.float32)[None, :] * shade[:, None]

    paint(road, style.road_color, 0.06, 0.08)
    paint(walk, style.walk_color, 0.05, 0.05)
    paint(park, style.grass, 0.18, 0.15)
    paint(yard, style.yard, 0.10, 0.10)
    paint(parking, np.asarray(style.road_color) * 1.1, 0.06, 0.06)
    roof_shade = 1.0 + 0.05 * fine[building] + 0.04 * coarse[building]
    color[building] = lot_roof[lot[building]] * roof_shade[:, None]
    parapet = building & (edge < 0.6)
    color[parapet] *= 0.72
    color[roof_box] = color[roof_box] * 0.5 + 190 * 0.5

    # lane markings: dashed centre line on every road, stall lines on parking lots
    dash_v = np.mod(v, 6.0) < 3.0
    dash_u = np.mod(u, 6.0) < 3.0
    centre_line = (road_u & ~road_v & (cen_u < 0.12) & dash_v) | (road_v & ~road_u & (cen_v < 0.12) & dash_u)
    color[centre_line] = (60, 200, 225)
    stalls = parking & (np.mod(lu, 2.6) < 0.12) & (np.mod(lv, 5.5) < 4.8)
    color[stalls] = (220, 220, 220)

    # walls: darker and greyer than the roof they belong to
    wall = np.zeros((h, w, 3), np.float32)
    wall[building] = lot_roof[lot[building]] * 0.62 + 40.0

    water = _water_mask(style.water_edge, h, w, mpp, rng)
    if water is not None:
        color[water] = np.asarray(style.water_color, np.float32) * (1.0 + 0.08 * fine[water] + 0.1 * coarse[water])[:, None]
        height[water] = 0.0
        kind[water] = KIND_WATER
        road &= ~water
        walk &= ~water
        park &= ~water

    free = (kind == KIND_GROUND)
    _draw_cars(color, height, wall, kind, road & ~(road_u & road_v) & free, u, v, su, wu, sv, wv,
               road_u, road_v, ku, kv, style, mpp, rng)
    _draw_trees(color, height, wall, kind, walk & free, park & free, style, mpp, rng, fine)

    _cast_shadows(color, height, style, mpp)
    color = np.clip(color, 0, 255).astype(np.uint8)
    wall = np.clip(wall, 0, 255).astype(np.uint8)
    mips = [cv2.resize(color, (w >> level, h >> level), interpolation=cv2.INTER_AREA) for level in (1, 2, 3)]
    return CityMap(name=name, style=style, mpp=mpp, color=color, height=height, wall=wall, kind=kind,
                   road=road & (kind == KIND_GROUND), walk=walk & (kind == KIND_GROUND), mips=mips,
                   repeated=building & lot_repeated[lot] & (kind == KIND_BUILDING), origin=origin, rotation=(ca, sa))


def _repeat_template_lots(rng, n_lots, kind, height, setback, roof, box, box_pos, box_size, box_height,
                          apply=True):
    """Perceptual aliasing: REPEATED_LOT_SHARE of the lots become copies of one of two template
    buildings (arrays changed in place). Returns the (n_lots,) bool mask of repeated lots. With
    apply=False the same random numbers are drawn and nothing is repeated."""
    repeated = rng.random(n_lots) < REPEATED_LOT_SHARE
    templates = rng.choice(n_lots, 2, replace=False)
    source = templates[rng.integers(0, 2, n_lots)]
    if not apply:
        return np.zeros(n_lots, bool)
    kind[templates] = 0
    for attribute in (kind, height, setback, roof, box, box_pos, box_size, box_height):
        attribute[repeated] = attribute[source[repeated]]
    repeated[templates] = True
    return repeated


def _water_mask(edge, h, w, mpp, rng):
    if not edge:
        return None
    depth = int(0.14 * (h if edge == "north" else w))
    along = h if edge in ("west", "east") else w
    wiggle = depth * (1.0 + 0.35 * value_noise((1, along), 60.0 / mpp, rng, octaves=2)[0])
    if edge == "west":
        return np.arange(w)[None, :] < wiggle[:, None]
    if edge == "east":
        return np.arange(w)[None, :] > (w - wiggle)[:, None]
    return np.arange(h)[:, None] < wiggle[None, :]


def _draw_cars(color, height, wall, kind, candidates, u, v, su, wu, sv, wv, road_u, road_v, ku, kv,
               style, mpp, rng):
    pixels = np.flatnonzero(candidates)
    if len(pixels) == 0:
        return
    road_area_m2 = len(pixels) * mpp * mpp
    count = rng.poisson(style.cars * road_area_m2 / (100.0 * 12.0))
    h, w = kind.shape
    reach = int(math.ceil(3.0 / mpp))
    for p in rng.choice(pixels, size=min(count, len(pixels)), replace=False):
        r, c = divmod(int(p), w)
        along_v = bool(road_u[r, c])   # a road of the u family runs along v
        if along_v:
            k = ku[r, c]
            lane = su[k] + wu[k] * (0.27 if rng.random() < 0.5 else 0.73)
            cu, cv, half_u, half_v = lane, v[r, c], 0.95, 2.3
        else:
            k = kv[r, c]
            lane = sv[k] + wv[k] * (0.27 if rng.random() < 0.5 else 0.73)
            cu, cv, half_u, half_v = u[r, c], lane, 2.3, 0.95
        r0, r1, c0, c1 = max(0, r - reach), min(h, r + reach + 1), max(0, c - reach), min(w, c + reach + 1)
        mask = ((np.abs(u[r0:r1, c0:c1] - cu) < half_u) & (np.abs(v[r0:r1, c0:c1] - cv) < half_v)
                & (kind[r0:r1, c0:c1] == KIND_GROUND))
        body = rng.integers(20, 235, 3).astype(np.float32)
        color[r0:r1, c0:c1][mask] = body
        wall[r0:r1, c0:c1][mask] = body * 0.8
        height[r0:r1, c0:c1][mask] = 1.5
        kind[r0:r1, c0:c1][mask] = KIND_CAR


def _draw_trees(color, height, wall, kind, walk, park, style, mpp, rng, fine):
    h, w = kind.shape
    spots = []
    walk_pixels = np.flatnonzero(walk)
    if len(walk_pixels):
        n = rng.poisson(style.street_trees * len(walk_pixels) * mpp * mpp / (10.0 * style.sidewalk))
        spots.append(rng.choice(walk_pixels, size=min(n, len(walk_pixels)), replace=False))
    park_pixels = np.flatnonzero(park)
    if len(park_pixels):
        n = rng.poisson(style.park_trees * len(park_pixels) * mpp * mpp / 100.0)
        spots.append(rng.choice(park_pixels, size=min(n, len(park_pixels)), replace=False))
    if not spots:
        return
    foliage = np.asarray(style.foliage, np.float32)
    for p in np.concatenate(spots):
        r, c = divmod(int(p), w)
        radius = rng.uniform(1.8, 3.6) / mpp
        top = rng.uniform(5.0, 10.0)
        tint = foliage * rng.uniform(0.8, 1.2, 3)
        reach = int(math.ceil(radius))
        r0, r1, c0, c1 = max(0, r - reach), min(h, r + reach + 1), max(0, c - reach), min(w, c + reach + 1)
        yy, xx = np.mgrid[r0:r1, c0:c1]
        dist = np.sqrt((yy - r) ** 2 + (xx - c) ** 2) / radius
        mask = (dist < 1.0) & ((kind[r0:r1, c0:c1] == KIND_GROUND) | (kind[r0:r1, c0:c1] == KIND_TREE))
        dome = np.sqrt(np.clip(1.0 - dist[mask] ** 2, 0.0, 1.0))
        leaves = (0.75 + 0.35 * dome + 0.25 * fine[r0:r1, c0:c1][mask])[:, None]
        color[r0:r1, c0:c1][mask] = tint * leaves
        wall[r0:r1, c0:c1][mask] = tint * 0.7 * (1.0 + 0.3 * fine[r0:r1, c0:c1][mask])[:, None]
        height[r0:r1, c0:c1][mask] = np.maximum(height[r0:r1, c0:c1][mask], top * (0.8 + 0.2 * dome))
        kind[r0:r1, c0:c1][mask] = KIND_TREE


def _cast_shadows(color, height, style, mpp, factor=4):
    """Darken what the sun does not reach (computed at 1/factor resolution, then smoothed)."""
    h, w = height.shape
    hs, ws = h // factor, w // factor
    small = height[:hs * factor, :ws * factor].reshape(hs, factor, ws, factor).max(axis=(1, 3))
    step = mpp * factor
    azimuth = math.radians(style.sun_azimuth)
    towards_sun = (-math.cos(azimuth), math.sin(azimuth))   # (row, col) per step toward the sun
    rise = step * math.tan(math.radians(style.sun_elevation))
    steps = int(min(small.max() / max(rise, 1e-6), 4 * max(hs, ws))) + 1
    shadow = np.zeros((hs, ws), bool)
    for s in range(1, steps + 1):
        dr, dc = int(round(s * towards_sun[0])), int(round(s * towards_sun[1]))
        if abs(dr) >= hs or abs(dc) >= ws:
            break
        shifted = np.zeros_like(small)
        shifted[max(0, -dr):hs - max(0, dr), max(0, -dc):ws - max(0, dc)] = \
            small[max(0, dr):hs - max(0, -dr), max(0, dc):ws - max(0, -dc)]
        shadow |= shifted > small + s * rise
    soft = cv2.resize(shadow.astype(np.float32), (ws * factor, hs * factor), interpolation=cv2.INTER_LINEAR)
    full = np.zeros((h, w), np.float32)
    full[:hs * factor, :ws * factor] = soft
    color *= (1.0 - 0.45 * full)[:, :, None]


# ---------------------------------------------------------------- panoramas
RAY_DISTANCES = np.geomspace(0.25, 160.0, 176).astype(np.float64)   # metres along each ray


def render_panorama(city, row, col, width=256, height=128, camera_height=CAMERA_HEIGHT, supersample=2,
                    view_radius_m=None):
    """Equirectangular (height x width, BGR uint8) panorama seen from map position (row, col).

    (row, col) are continuous coordinates of the map raster (pixel i spans [i, i + 1)). Column j
    looks at azimuth 180 deg + 360 deg (j + 0.5) / width clockwise from north: north at the
    centre column, as VIGOR's north-aligned panoramas. view_radius_m: nothing beyond this distance
    is seen (flat, the colour of the horizon haze); None: everything up to RAY_DISTANCES' end.
    """
    style = city.style
    mpp = city.mpp
    map_h, map_w = city.shape
    w2, h2 = width * supersample, height * supersample
    dist = RAY_DISTANCES
    n_k = len(dist)
    azimuth = np.pi + 2.0 * np.pi * (np.arange(w2) + 0.5) / w2
    step_col, step_row = np.sin(azimuth), -np.cos(azimuth)
    theta = np.pi / 2 - np.pi * (np.arange(h2) + 0.5) / h2          # elevation of each row

    sample_col = col + step_col[:, None] * (dist / mpp)[None, :]    # (w2, K)
    sample_row = row + step_row[:, None] * (dist / mpp)[None, :]
    ic = np.floor(sample_col).astype(np.int64)
    ir = np.floor(sample_row).astype(np.int64)
    inside = (ic >= 0) & (ic < map_w) & (ir >= 0) & (ir < map_h)
    if view_radius_m is not None:
        inside &= (dist <= view_radius_m)[None, :]
    ic = np.clip(ic, 0, map_w - 1)
    ir = np.clip(ir, 0, map_h - 1)
    tops = np.where(inside, city.height[ir, ic], 0.0)
    horizon = np.maximum.accumulate(np.arctan2(tops - camera_height, dist[None, :]), axis=1)

    # for every pixel, the first sample along its column's ray that rises to the pixel's elevation
    offsets = 4.0 * np.arange(w2)[:, None]
    k = np.searchsorted((horizon + offsets).ravel(), (theta[None, :] + offsets).ravel(), side="left")
    k = k - n_k * np.repeat(np.arange(w2), h2)
    hit = np.flatnonzero(k < n_k)                                   # the others see the sky
    hc, hr, kk = hit // h2, hit % h2, k[hit]
    tan_t = np.tan(theta)[hr]
    top = tops[hc, kk]
    ray_z = camera_height + dist[kk] * tan_t
    before = np.where(kk > 0, dist[np.maximum(kk - 1, 0)], 0.0)
    side = camera_height + before * tan_t < top                     # still below the top: a wall
    colours = np.empty((len(hit), 3), np.float32)
    hit_dist = dist[kk]

    # ground and roofs: where the ray lands exactly, between the two samples around it
    flat = ~side
    landing = (camera_height - top[flat]) / np.maximum(-tan_t[flat], 1e-6)
    landing = np.clip(landing, before[flat], dist[kk[flat]])
    hit_dist[flat] = landing
    colours[flat] = _sample_aerial(city, row, col, step_row[hc[flat]], step_col[hc[flat]], landing, w2)

    if side.any():
        sc, sk = hc[side], kk[side]
        z = np.clip(ray_z[side], 0.0, top[side])
        wr, wc = ir[sc, sk], ic[sc, sk]
        wall = city.wall[wr, wc].astype(np.float32)
        is_building = city.kind[wr, wc] == KIND_BUILDING
        ca, sa = city.rotation
        xm, ym = sample_col[sc, sk] * mpp, sample_row[sc, sk] * mpp
        facade = (xm * ca + ym * sa) + (-xm * sa + ym * ca)
        storey = np.mod(z, 3.2)
        bay = np.mod(facade, 2.6)
        windows = is_building & (storey > 1.0) & (storey < 2.5) & (bay > 0.6) & (bay < 2.0) & (z > 2.0)
        wall[windows] = wall[windows] * 0.35 + np.array([95, 70, 55], np.float32) * 0.65
        wall[is_building & (z < 0.5)] *= 0.7
        under_canopy = (city.kind[wr, wc] == KIND_TREE) & (z < 2.2)
        wall[under_canopy] = wall[under_canopy] * 0.45 + np.array([30, 45, 60], np.float32) * 0.55
        facing = np.cos(azimuth[sc] - math.radians(style.sun_azimuth))
        colours[side] = wall * (0.88 - 0.22 * facing).astype(np.float32)[:, None]

    horizon_colour = np.asarray(style.sky_horizon, np.float32)
    haze = (1.0 - np.exp(-hit_dist / 140.0)).astype(np.float32)[:, None]
    if view_radius_m is not None:
        haze[hit_dist > view_radius_m] = 1.0
    colours = colours * (1.0 - haze) + haze * horizon_colour

    blend = (np.clip(np.sin(theta), 0.0, 1.0) ** 0.6).astype(np.float32)[:, None]
    sky_rows = (1 - blend) * horizon_colour + blend * np.asarray(style.sky_top, np.float32)   # (h2, 3)
    image = np.repeat(sky_rows[None, :, :], w2, axis=0).reshape(-1, 3)                   # (w2*h2, 3)
    image[hit] = colours
    image = image.reshape(w2, h2, 3).transpose(1, 0, 2)
    if supersample > 1:
        image = cv2.resize(np.ascontiguousarray(image), (width, height), interpolation=cv2.INTER_AREA)
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def _sample_aerial(city, row, col, step_row, step_col, distance, w2):
    """Aerial colour at `distance` along rays (step_row, step_col), from the mip level of their footprint."""
    r = row + step_row * distance / city.mpp
    c = col + step_col * distance / city.mpp
    footprint = distance * (2.0 * np.pi / w2) / city.mpp
    level = np.clip(np.floor(np.log2(np.maximum(footprint, 1.0))), 0, 3).astype(np.int64)
    out = np.empty((len(distance), 3), np.float32)
    layers = [city.color] + city.mips
    for lv in range(4):
        pick = np.flatnonzero(level == lv)
        if len(pick) == 0:
            continue
        layer = layers[lv]
        lh, lw = layer.shape[:2]
        rr = np.clip((r[pick] / (1 << lv)).astype(np.int64), 0, lh - 1)
        cc = np.clip((c[pick] / (1 << lv)).astype(np.int64), 0, lw - 1)
        out[pick] = layer[rr, cc]
    return out


# ---------------------------------------------------------------- ambiguity
SOURCES = ("low_overlap", "dynamic_foreground", "viewpoint_change", "perceptual_aliasing")
RAW = ("overlap", "foreground_share", "camera_height", "heading_error_deg", "repeated_share")
DIFFICULTY_COLUMNS = ("panorama",) + SOURCES + ("difficulty",) + RAW


def add_foreground(image, share, rng):
    """Dynamic foreground: vehicles and people next to the camera, in the panorama only (in place).
    Adds objects until `share` of the lower two thirds is hidden; returns the share hidden."""
    h, w = image.shape[:2]
    hidden = np.zeros((h, w), bool)
    region = slice(h // 3, h)
    while hidden[region].mean() < share:
        if rng.random() < 0.6:   # a vehicle: wide, from just below the horizon down
            width, top = rng.integers(w // 16, w // 5), rng.integers(int(0.42 * h), int(0.55 * h))
        else:                    # a person: narrow, head above the horizon
            width, top = rng.integers(max(2, w // 80), max(3, w // 32)), rng.integers(int(0.28 * h), int(0.42 * h))
        bottom = rng.integers(int(0.8 * h), h + 1)
        cols = (rng.integers(0, w) + np.arange(width)) % w
        shade = np.linspace(1.0, 0.55, bottom - top)[:, None, None]
        image[top:bottom, cols] = np.clip(rng.integers(20, 235, 3)[None, None, :] * shade, 0, 255).astype(np.uint8)
        hidden[top:bottom, cols] = True
    return float(hidden[region].mean())


def render_ambiguous_panorama(city, row, col, pano_size, rng, ambiguity=Ambiguity(), view_radius_m=None):
    """The panorama at (row, col) with a random viewpoint change and dynamic foreground, each
    present half of the time with a uniform amount (a source switched off in `ambiguity` draws
    the same random numbers and is not applied). Returns (image, raw amounts)."""
    rise = MAX_CAMERA_RISE * rng.uniform() if rng.random() < 0.5 else 0.0
    heading = MAX_HEADING_ERROR * rng.uniform(-1, 1) if rng.random() < 0.5 else 0.0
    foreground = MAX_FOREGROUND * rng.uniform() if rng.random() < 0.5 else 0.0
    rise = rise if ambiguity.camera_rise else 0.0
    heading = heading if ambiguity.heading_error else 0.0
    image = render_panorama(city, row, col, width=pano_size[0], height=pano_size[1],
                            camera_height=CAMERA_HEIGHT + rise, view_radius_m=view_radius_m)
    image = np.ascontiguousarray(np.roll(image, int(round(heading / 360.0 * pano_size[0])), axis=1))
    if ambiguity.foreground:
        hidden = add_foreground(image, foreground, rng)
    else:
        add_foreground(np.empty_like(image), foreground, rng)   # the same draws, on a scratch image
        hidden = 0.0
    return image, {"foreground_share": hidden, "camera_height": CAMERA_HEIGHT + rise, "heading_error_deg": heading}


class Surroundings:
    """Overlap with the positive tile and the share of repeated buildings in a disc of
    SURROUNDINGS_M around a map point."""

    def __init__(self, city, centres, half):
        self.radius = SURROUNDINGS_M / city.mpp
        self.centres, self.half = centres, half
        grid = np.linspace(-1, 1, 41)
        u, v = np.meshgrid(grid, grid)
        inside = u * u + v * v <= 1
        self.disc = np.stack([u[inside], v[inside]], axis=1) * self.radius
        size = 2 * int(self.radius) + 1
        building = (city.kind == KIND_BUILDING).astype(np.float32)
        self.building = cv2.blur(building, (size, size), borderType=cv2.BORDER_CONSTANT)
        self.repeated = cv2.blur(city.repeated.astype(np.float32), (size, size), borderType=cv2.BORDER_CONSTANT)
        centre = self._overlap(0.0, 0.0)
        corner = self._overlap(QUARTER_LIMIT / TILE * 2 * half, QUARTER_LIMIT / TILE * 2 * half)
        self.overlap_range = (corner, centre)

    def _overlap(self, d_row, d_col):
        inside = (np.abs(self.disc[:, 0] + d_row) < self.half) & (np.abs(self.disc[:, 1] + d_col) < self.half)
        return float(inside.mean())

    def measure(self, row, col, positive, full_overlap=False):
        """full_overlap: the panorama sees only a disc inside its tile (overlap 1, low overlap 0)."""
        overlap = 1.0 if full_overlap else self._overlap(row - self.centres[positive[0]], col - self.centres[positive[1]])
        r, c = int(row), int(col)
        buildings = float(self.building[r, c])
        corner, centre = self.overlap_range
        return {"overlap": overlap,
                "low_overlap": 0.0 if full_overlap else float(np.clip((centre - overlap) / (centre - corner), 0.0, 1.0)),
                "repeated_share": float(self.repeated[r, c]) / buildings if buildings > 1e-6 else 0.0}


def difficulty_row(pano, raw):
    """One line (space-separated): the four sources scaled to [0, 1], their mean, then the raw amounts."""
    scores = {"low_overlap": raw["low_overlap"],
              "dynamic_foreground": min(1.0, raw["foreground_share"] / MAX_FOREGROUND),
              "viewpoint_change": 0.5 * (raw["camera_height"] - CAMERA_HEIGHT) / MAX_CAMERA_RISE
              + 0.5 * abs(raw["heading_error_deg"]) / MAX_HEADING_ERROR,
              "perceptual_aliasing": raw["repeated_share"]}
    scores["difficulty"] = float(np.mean([scores[name] for name in SOURCES]))
    values = [pano] + [f"{scores[name]:.4f}" for name in SOURCES + ("difficulty",)]
    values += [f"{raw[name]:.4f}" for name in RAW]
    return " ".join(values) + "\n"


def read_difficulty(root, grd_paths):
    """The known difficulty of each panorama of an index (by file name), from every city's
    DIFFICULTY_FILE under root/splits: {column: (N,) float array}, or None when the dataset has
    no such files (VIGOR itself) or some panorama is missing from them."""
    table = {}
    for path in sorted(glob.glob(os.path.join(str(root), "splits", "*", DIFFICULTY_FILE))):
        with open(path) as f:
            header = f.readline().split()
            for line in f:
                fields = line.split()
                table[fields[0]] = [float(x) for x in fields[1:]]
    names = [os.path.basename(str(p)) for p in grd_paths]
    if not table or any(name not in table for name in names):
        return None
    values = np.array([table[name] for name in names], np.float64)
    return {column: values[:, i] for i, column in enumerate(header[1:])}


# ---------------------------------------------------------------- tiles, points, labels
def tile_grid(tiles_per_side, margin):
    """Continuous pixel coordinate of tile centres along one axis."""
    return margin + STRIDE * (np.arange(tiles_per_side) + 1)


def covering_tiles(pos, centres):
    """Positive index (nearest centre) and the other index along one axis, for coordinate pos."""
    i = int(np.argmin(np.abs(centres - pos)))
    side = 1 if pos >= centres[i] else -1
    j = i + side
    if j < 0 or j >= len(centres):
        j = i - side
    return i, j


def sample_points(city, centres, count_per_tile, rng, quarter=QUARTER_LIMIT, edge=1.0):
    """Street points per tile, in map coordinates: inside the tile's central quarter (|offset| <
    `quarter`) and at least `edge` inside the span of tile centres, so that all 4 covering tiles exist."""
    lo, hi = centres[0] + edge, centres[-1] - edge
    free = (city.kind == KIND_GROUND).astype(np.uint8)
    clearance = cv2.distanceTransform(free, cv2.DIST_L2, 5) * city.mpp     # metres to the nearest object
    points = []
    for rc in centres:
        for cc in centres:
            n = int(count_per_tile) + int(rng.random() < count_per_tile - int(count_per_tile))
            if n == 0:
                continue
            r0, r1 = math.ceil(max(rc - quarter, lo)), math.floor(min(rc + quarter, hi))
            c0, c1 = math.ceil(max(cc - quarter, lo)), math.floor(min(cc + quarter, hi))
            if r1 <= r0 or c1 <= c0:
                continue
            room = clearance[r0:r1, c0:c1]
            for wanted in (city.road[r0:r1, c0:c1] & (room >= 2.5),                           # as a car sees it
                           (city.road[r0:r1, c0:c1] | city.walk[r0:r1, c0:c1]) & (room >= 1.0),
                           room > 0):
                candidates = np.flatnonzero(wanted)
                if len(candidates):
                    break
            else:
                continue
            for p in rng.choice(candidates, size=min(n, len(candidates)), replace=False):
                dr, dc = divmod(int(p), c1 - c0)
                points.append((r0 + dr + rng.uniform(0.05, 0.95), c0 + dc + rng.uniform(0.05, 0.95)))
    return points


def _pano_prefix(rng):
    alphabet = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"))
    return "".join(rng.choice(alphabet, 22))


def _fmt(x):
    return repr(float(x))


def city_and_rng(name, index, seed, tiles_per_side, mpp, margin, detail, repeated_lots=True):
    """One city's map (deterministic for seed and index) and the generator left after drawing it."""
    rng = np.random.default_rng([seed, index])
    style = STYLES.get(name) or random_style(rng)
    side = (2 * margin + STRIDE * (tiles_per_side + 1)) // detail
    return build_city_map(name, style, side, mpp * detail, rng, city_origin(name, index), repeated_lots), rng


def _generate_city(out_dir, name, index, seed, tiles_per_side, pano_size, panos_per_tile, mpp, margin, detail,
                   ambiguity=Ambiguity()):
    city, rng = city_and_rng(name, index, seed, tiles_per_side, mpp, margin, detail, ambiguity.repeated_lots)
    view_radius_m = FULL_OVERLAP_PX * mpp if ambiguity.full_overlap else None
    centres = tile_grid(tiles_per_side, margin) // detail          # map (raster) coordinates
    aerial = full_resolution(city.color, detail)                   # tiles and GeoTIFF are cut from it

    sat_dir = os.path.join(out_dir, name, "satellite")
    pano_dir = os.path.join(out_dir, name, "panorama")
    split_dir = os.path.join(out_dir, "splits", name)
    for d in (sat_dir, pano_dir, split_dir):
        os.makedirs(d, exist_ok=True)

    tile_names = {}
    for i, rc in enumerate(centres):
        for j, cc in enumerate(centres):
            lat, lng = city.pixel_to_gps(rc, cc)
            tile = sat_file_name(lat, lng, "png")
            tile_names[(i, j)] = tile
            crop = aerial[rc * detail - TILE // 2:rc * detail + TILE // 2, cc * detail - TILE // 2:cc * detail + TILE // 2]
            cv2.imwrite(os.path.join(sat_dir, tile), crop, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    with open(os.path.join(split_dir, SAT_LIST), "w") as f:
        f.writelines(tile_names[key] + "\n" for key in sorted(tile_names))
    write_city_raster(os.path.join(out_dir, name), aerial, city.origin, mpp, margin % STRIDE)

    lines, difficulty_rows = [], []
    surroundings = Surroundings(city, centres, TILE // 2 // detail)   # half a tile, map pixels
    for prow, pcol in sample_points(city, centres, panos_per_tile, rng, QUARTER_LIMIT / detail, 1.0 / detail):
        lat, lng = city.pixel_to_gps(prow, pcol)
        pano = pano_file_name(_pano_prefix(rng), float(lat), float(lng))
        ri, rj = covering_tiles(prow, centres)
        ci, cj = covering_tiles(pcol, centres)
        image, amounts = render_ambiguous_panorama(city, prow, pcol, pano_size, rng, ambiguity, view_radius_m)
        amounts.update(surroundings.measure(prow, pcol, (ri, ci), ambiguity.full_overlap))
        cv2.imwrite(os.path.join(pano_dir, pano), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
        difficulty_rows.append(difficulty_row(pano, amounts))
        semis = [(rj, ci), (ri, cj), (rj, cj)]
        semis = [semis[s] for s in rng.permutation(3)]
        plat, plng = parse_pano_name(pano)
        fields = [pano]
        for key in [(ri, ci)] + semis:
            tlat, tlng = parse_sat_name(tile_names[key])
            delta = gps_to_delta(tlat, tlng, plat, plng, mpp)
            fields += [tile_names[key], _fmt(delta[0]), _fmt(delta[1])]
        lines.append(" ".join(fields) + "\n")
    with open(os.path.join(split_dir, DIFFICULTY_FILE), "w") as f:
        f.write(" ".join(DIFFICULTY_COLUMNS) + "\n")
        f.writelines(difficulty_rows)

    order = rng.permutation(len(lines))
    n_train = (len(lines) + 1) // 2
    train = sorted(order[:n_train])
    test = sorted(order[n_train:])
    with open(os.path.join(split_dir, PANO_LABELS), "w") as f:
        f.writelines(lines)
    with open(os.path.join(split_dir, SAME_AREA_TRAIN), "w") as f:
        f.writelines(lines[i] for i in train)
    with open(os.path.join(split_dir, SAME_AREA_TEST), "w") as f:
        f.writelines(lines[i] for i in test)
    return {"tiles": len(tile_names), "panoramas": len(lines), "train": len(train), "test": len(test)}


def _parameters(seed, cities, tiles_per_side, pano_size, panos_per_tile, meters_per_pixel, margin, detail,
                ambiguity=Ambiguity()):
    params = {"version": GENERATOR_VERSION, "seed": int(seed), "cities": int(cities),
              "tiles_per_side": int(tiles_per_side), "pano_size": [int(pano_size[0]), int(pano_size[1])],
              "panos_per_tile": float(panos_per_tile), "meters_per_pixel": float(meters_per_pixel),
              "margin": int(margin), "detail": int(detail)}
    if ambiguity.changes():   # only then: a default city's manifest stays as it was before the switches
        params["ambiguity"] = ambiguity.changes()
    return params


def generate(out_dir, seed=0, cities=4, tiles_per_side=6, pano_size=(256, 128), panos_per_tile=1.5,
             meters_per_pixel=0.114, margin=256, detail=2, progress=False, ambiguity=Ambiguity()):
    """Write a synthetic dataset in VIGOR's format to out_dir (replaced if it was ours); returns it.

    pano_size is (width, height). detail: the map is drawn with one pixel per `detail` tile
    pixels (1 = full 640-px detail; 2, the default, draws 4x fewer pixels and upsamples the
    tiles). ambiguity: which sources of ambiguity the city has. Written to a temporary sibling
    first, then renamed.
    """
    if cities < 1 or tiles_per_side < 2:
        raise ValueError("need at least 1 city and 2 tiles per side")
    if detail not in (1, 2, 4) or margin % detail:
        raise ValueError(f"detail must be 1, 2 or 4 and divide margin ({margin})")
    if pano_size[0] != 2 * pano_size[1]:
        raise ValueError(f"pano_size {pano_size} is not 2:1 (width, height)")
    params = _parameters(seed, cities, tiles_per_side, pano_size, panos_per_tile, meters_per_pixel, margin, detail,
                         ambiguity)
    out_dir = os.path.abspath(str(out_dir))
    work = f"{out_dir}.partial-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    start = time.time()
    counts = {}
    names = city_names(cities)

    def one_city(i):
        return _generate_city(work, names[i], i, seed, tiles_per_side, pano_size, panos_per_tile,
                              meters_per_pixel, margin, detail, ambiguity)

    # each city has its own random stream ([seed, index]), so cities in parallel write the same bytes;
    # threads, because numpy and OpenCV release the GIL while they draw (2 cities: 26.9 s -> 15.4 s)
    pool = ThreadPoolExecutor(max(1, min(len(names), os.cpu_count() or 1)))
    try:
        for name, count in zip(names, pool.map(one_city, range(len(names)))):
            counts[name] = count
            if progress:
                print(f"[synthetic] {name}: {count}", flush=True)
    except BaseException:   # Ctrl-C or an error: the cities being drawn finish, then nothing half-written stays
        pool.shutdown(wait=True, cancel_futures=True)
        shutil.rmtree(work, ignore_errors=True)
        raise
    pool.shutdown()
    with open(os.path.join(work, RESOLUTION_FILE), "w") as f:
        json.dump({name: float(meters_per_pixel) for name in names}, f, indent=1)
    manifest = {"generator": "utils.data.synthetic_vigor", "parameters": params, "cities": names,
                "counts": counts, "seconds": round(time.time() - start, 2),
                "panorama_convention": "north at the centre column, azimuth increasing to the right"}
    with open(os.path.join(work, MANIFEST), "w") as f:
        json.dump(manifest, f, indent=1)
    _replace_dir(work, out_dir)
    return out_dir


@contextmanager
def written_whole(out_dir):
    """A folder beside out_dir to write a dataset into; it replaces out_dir (if that was ours) when the
    block completes, and is removed if the block fails or is interrupted: a dataset appears whole or
    not at all."""
    work = f"{out_dir}.partial-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    try:
        yield work
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    _replace_dir(work, out_dir)


def _replace_dir(new, target):
    if os.path.exists(target):
        if not os.path.exists(os.path.join(target, MANIFEST)):
            if os.listdir(target):
                shutil.rmtree(new, ignore_errors=True)
                raise FileExistsError(f"{target} exists and is not a synthetic dataset (no {MANIFEST}); "
                                      f"choose another --out or empty it")
        old = f"{target}.old-{os.getpid()}"
        os.rename(target, old)
        os.rename(new, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        parent = os.path.dirname(target)
        if parent:
            os.makedirs(parent, exist_ok=True)
        os.rename(new, target)


def read_manifest(out_dir):
    try:
        with open(os.path.join(str(out_dir), MANIFEST)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def ensure_synthetic(out_dir, seed=0, cities=4, tiles_per_side=6, pano_size=(256, 128), panos_per_tile=1.5,
                     meters_per_pixel=0.114, margin=256, detail=2, progress=False, ambiguity=Ambiguity()):
    """Generate the dataset unless out_dir already holds one made with the same parameters."""
    params = _parameters(seed, cities, tiles_per_side, pano_size, panos_per_tile, meters_per_pixel, margin, detail,
                         ambiguity)
    manifest = read_manifest(out_dir)
    if manifest is not None and manifest.get("parameters") == params:
        return os.path.abspath(str(out_dir))
    return generate(out_dir, seed=seed, cities=cities, tiles_per_side=tiles_per_side, pano_size=pano_size,
                    panos_per_tile=panos_per_tile, meters_per_pixel=meters_per_pixel, margin=margin,
                    detail=detail, progress=progress, ambiguity=ambiguity)
