"""The synthetic city's whole aerial map as a GeoTIFF with a projected CRS (rasterio).

The generator draws each city in a local east/north plane around the city's origin on VIGOR's
sphere (`utils.data.geo.enu_to_gps`): that plane is exactly the Equidistant Cylindrical
projection with its standard parallel at the origin, on a sphere of radius 6371004 m. Written
in that CRS, the raster's pixels convert to the same GPS as the tile and panorama file names.

The raster is the map at full tile resolution, cropped so that its pixel (0, 0) starts VIGOR's
stride-320 tile grid: a stride-320 cut of it from (0, 0) yields the generator's tiles.
"""
import os

import cv2
import numpy as np

from utils.data.geo import EARTH_RADIUS

RASTER_NAME = "aerial_map.tif"


def full_resolution(color, detail):
    """The map upsampled to one pixel per tile pixel (the generator's tiles are cut from it)."""
    if detail == 1:
        return color
    h, w = color.shape[:2]
    return cv2.resize(color, (w * detail, h * detail), interpolation=cv2.INTER_LINEAR)


def city_crs(origin):
    """pyproj CRS of the generator's east/north plane around origin (lat, lng)."""
    from pyproj import CRS
    lat0, lng0 = origin
    return CRS.from_proj4(f"+proj=eqc +lat_ts={lat0!r} +lat_0={lat0!r} +lon_0={lng0!r} "
                          f"+R={EARTH_RADIUS!r} +units=m +no_defs")


def write_city_raster(city_dir, aerial_bgr, origin, meters_per_pixel, crop):
    """Write aerial_bgr (H, W, 3 uint8 BGR, centred on origin) minus `crop` pixels on each side."""
    import rasterio
    from rasterio.transform import Affine
    height, width = aerial_bgr.shape[:2]
    image = aerial_bgr[crop:height - crop, crop:width - crop, ::-1]            # RGB bands
    west = (crop - width / 2.0) * meters_per_pixel
    north = (height / 2.0 - crop) * meters_per_pixel
    transform = Affine(meters_per_pixel, 0.0, west, 0.0, -meters_per_pixel, north)
    path = os.path.join(city_dir, RASTER_NAME)
    profile = {"driver": "GTiff", "height": image.shape[0], "width": image.shape[1], "count": 3,
               "dtype": "uint8", "crs": city_crs(origin).to_wkt(), "transform": transform,
               "compress": "deflate", "tiled": True, "blockxsize": 256, "blockysize": 256,
               "photometric": "RGB"}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.ascontiguousarray(np.moveaxis(image, -1, 0)))
    return path
