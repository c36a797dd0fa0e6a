"""Geographic helpers: VIGOR's GPS <-> pixel-offset maths, a local tangent plane, and UTM (pyproj).

`gps2distance` and `Lat_Lng` keep the names, signatures and maths of VIGOR's
`evaluate_from_npy.py` (great circle on a sphere of radius 6371004 m). Offsets (`delta`) follow
VIGOR's 640-pixel convention: the panorama sits at row 320 + delta[0], column 320 - delta[1] of
the tile, so delta[0] > 0 is south of the tile centre and delta[1] > 0 is west of it.
"""
from functools import lru_cache

import numpy as np

EARTH_RADIUS = 6371004.0          # VIGOR's sphere
TILE_HALF = 320.0                 # half the side of a VIGOR tile, in pixels
ORIGINAL_MPP = 0.114              # VIGOR's stated resolution at 640 px (metres per pixel)
CORRECTED_MPP = {                 # SliceMatch's corrected per-city resolutions at 640 px
    "NewYork": 0.113248,
    "Seattle": 0.100817,
    "SanFrancisco": 0.118141,
    "Chicago": 0.111262,
}


def gps2distance(Lat_A, Lng_A, Lat_B, Lng_B):
    """Great-circle distance in metres between (Lat_A, Lng_A) and (Lat_B, Lng_B), in degrees.

    Same formula as VIGOR; the cosine is clipped to [-1, 1] so that (nearly) identical points
    give 0 instead of NaN from rounding.
    """
    lat_a = np.asarray(Lat_A, dtype=np.float64) * np.pi / 180.0
    lat_b = np.asarray(Lat_B, dtype=np.float64) * np.pi / 180.0
    lng_a = np.asarray(Lng_A, dtype=np.float64) * np.pi / 180.0
    lng_b = np.asarray(Lng_B, dtype=np.float64) * np.pi / 180.0
    cosine = np.sin(lat_a) * np.sin(lat_b) + np.cos(lat_a) * np.cos(lat_b) * np.cos(lng_a - lng_b)
    return EARTH_RADIUS * np.arccos(np.clip(cosine, -1.0, 1.0))


def Lat_Lng(Lat_A, Lng_A, distance=[320 * 0.114, 320 * 0.114]):  # noqa: B006 (VIGOR's signature)
    """Degrees of latitude and of longitude spanned by `distance` metres north and east at Lat_A.

    Returns np.array([delta_lat, delta_lng]) (each of Lat_A's shape). Lng_A is unused, as in VIGOR.
    """
    if distance[0] == 0 and distance[1] == 0:
        return np.zeros(2)
    lat_a = np.asarray(Lat_A, dtype=np.float64) * np.pi / 180.0
    delta_lat = np.arccos(np.cos(distance[0] / EARTH_RADIUS))
    cos_lat_sq = np.cos(lat_a) * np.cos(lat_a)
    delta_lng = np.arccos((np.cos(distance[1] / EARTH_RADIUS) - np.sin(lat_a) * np.sin(lat_a)) / cos_lat_sq)
    delta_lat = np.broadcast_to(delta_lat, np.shape(delta_lng))
    return np.array([delta_lat * 180.0 / np.pi, delta_lng * 180.0 / np.pi])


def degrees_per_half_tile(lat, meters_per_pixel=ORIGINAL_MPP):
    """(..., 2) degrees of lat and lng covered by 320 pixels at `meters_per_pixel`, per latitude."""
    lat = np.asarray(lat, dtype=np.float64)
    mpp = np.broadcast_to(np.asarray(meters_per_pixel, dtype=np.float64), lat.shape)
    span = TILE_HALF * mpp
    lat_rad = lat * np.pi / 180.0
    delta_lat = np.arccos(np.cos(span / EARTH_RADIUS))
    cos_lat_sq = np.cos(lat_rad) ** 2
    delta_lng = np.arccos((np.cos(span / EARTH_RADIUS) - np.sin(lat_rad) ** 2) / cos_lat_sq)
    return np.stack([delta_lat, delta_lng], axis=-1) * 180.0 / np.pi


def delta_to_gps(tile_lat, tile_lng, delta, meters_per_pixel=ORIGINAL_MPP):
    """GPS (lat, lng) of the point at offset `delta` (..., 2) from tile centres (VIGOR's formula)."""
    centre = np.stack(np.broadcast_arrays(np.asarray(tile_lat, np.float64),
                                          np.asarray(tile_lng, np.float64)), axis=-1)
    units = degrees_per_half_tile(centre[..., 0], meters_per_pixel)
    gps = centre - units * np.asarray(delta, dtype=np.float64) / TILE_HALF
    return gps[..., 0], gps[..., 1]


def gps_to_delta(tile_lat, tile_lng, lat, lng, meters_per_pixel=ORIGINAL_MPP):
    """Offset (..., 2) of (lat, lng) from the tile centres, inverse of `delta_to_gps`."""
    tile_lat = np.asarray(tile_lat, dtype=np.float64)
    units = degrees_per_half_tile(tile_lat, meters_per_pixel)
    diff = np.stack([tile_lat - np.asarray(lat, np.float64),
                     np.asarray(tile_lng, np.float64) - np.asarray(lng, np.float64)], axis=-1)
    return diff * TILE_HALF / units


def tile_centre_for_offset(lat, lng, delta, meters_per_pixel=ORIGINAL_MPP, iterations=4):
    """Tile centre (lat, lng) from which the point (lat, lng) lies at offset `delta`.

    Solves delta_to_gps(centre, delta) == point; the tile latitude enters the longitude scale,
    so a few fixed-point steps are used (each one gains ~6 orders of magnitude).
    """
    lat = np.asarray(lat, dtype=np.float64)
    lng = np.asarray(lng, dtype=np.float64)
    delta = np.asarray(delta, dtype=np.float64)
    c_lat, c_lng = lat, lng
    for _ in range(iterations):
        units = degrees_per_half_tile(c_lat, meters_per_pixel)
        c_lat = lat + units[..., 0] * delta[..., 0] / TILE_HALF
        c_lng = lng + units[..., 1] * delta[..., 1] / TILE_HALF
    return c_lat, c_lng


# ---------------------------------------------------------------- local tangent plane
def enu_to_gps(lat0, lng0, east, north):
    """GPS of points `east`, `north` metres from (lat0, lng0) on VIGOR's sphere (equirectangular)."""
    lat = lat0 + np.asarray(north, dtype=np.float64) / EARTH_RADIUS * 180.0 / np.pi
    lng = lng0 + np.asarray(east, dtype=np.float64) / (EARTH_RADIUS * np.cos(np.radians(lat0))) * 180.0 / np.pi
    return lat, lng


# ---------------------------------------------------------------- UTM (WGS84, through pyproj)
def utm_zone_of(lng):
    return int(np.floor((float(lng) + 180.0) / 6.0)) % 60 + 1


@lru_cache(maxsize=None)
def _utm_transformer(zone, south, to_utm):
    """pyproj Transformer between WGS84 (lng, lat order) and UTM `zone` (EPSG 326zz / 327zz)."""
    from pyproj import Transformer
    utm = f"EPSG:{(32700 if south else 32600) + int(zone)}"
    return Transformer.from_crs("EPSG:4326", utm, always_xy=True) if to_utm else \
        Transformer.from_crs(utm, "EPSG:4326", always_xy=True)


def latlon_to_utm(lat, lng, zone=None):
    """(easting, northing, zone, south) of WGS84 (lat, lng) degrees; zone from the longitude if None."""
    lat = np.asarray(lat, dtype=np.float64)
    lng = np.asarray(lng, dtype=np.float64)
    if zone is None:
        zone = utm_zone_of(np.mean(lng))
    south = bool(np.mean(lat) < 0)
    easting, northing = _utm_transformer(int(zone), south, True).transform(lng, lat)
    return np.asarray(easting), np.asarray(northing), zone, south


def utm_to_latlon(easting, northing, zone, south):
    """WGS84 (lat, lng) degrees of UTM coordinates in `zone` (south: southern hemisphere)."""
    lng, lat = _utm_transformer(int(zone), bool(south), False).transform(
        np.asarray(easting, dtype=np.float64), np.asarray(northing, dtype=np.float64))
    return np.asarray(lat), np.asarray(lng)
