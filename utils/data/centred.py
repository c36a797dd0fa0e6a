"""data.positives=centred: each panorama's positive is a tile-sized window cut centred on it.

VIGOR's positive of a panorama is the tile whose central quarter holds it (the panorama anywhere
within +-160 px of the centre); CVUSA's aerial is centred on the camera. This option gives a
VIGOR-format dataset CVUSA's pairing: for every panorama a window of the tiles' ground width (640
px at the tiles' metres per pixel) is cut from its city's GeoTIFF `<root>/<City>/aerial_map.tif`,
centred on the panorama's GPS, and written once as `<root>/<City>/satellite_centred/
satellite_<lat>_<lng>.png` (the panorama's lat, lng). The split becomes one-to-one: panorama i's
only reference is window i, every label column is i, every offset 0 (no semi-positives).

Pixel convention: pixel i of the raster spans [i, i + 1) (rasterio's affine transform maps pixel
corners), so a window centred on continuous raster coordinate c covers [c - 320 s, c + 320 s) with
s raster pixels per window pixel, and the panorama lies at continuous window coordinate (320, 320),
VIGOR's delta 0. Window pixels are sampled bilinearly at their centres (rasterio reads the raster,
OpenCV shifts it by the sub-pixel remainder); a window coarser than the raster is sampled at an
integer multiple of its resolution and box-averaged. Outside the raster the window is black.
"""
import math
import os

import cv2
import numpy as np
from tqdm import tqdm

from utils.data.dataset import SplitIndex, sat_file_name
from utils.data.synthetic_raster import RASTER_NAME
from utils.errors import ConfigError, DataError

WINDOW_DIR = "satellite_centred"
TILE_PX = 640                      # a VIGOR tile's side at its stated resolution
WGS84 = "EPSG:4326"
MARGIN_PX = 2                      # raster pixels read beyond the window for the bilinear shift


def raster_path(root, city):
    return os.path.join(str(root), city, RASTER_NAME)


def require_rasters(root, cities):
    """ConfigError (one line) when a city has no raster to cut centred windows from."""
    missing = [raster_path(root, c) for c in cities if not os.path.isfile(raster_path(root, c))]
    if missing:
        raise ConfigError(f"data.positives=centred cuts each panorama's positive from its city's GeoTIFF, but "
                          f"{missing[0]} does not exist ({len(missing)} of {len(cities)} cities lack one; "
                          f"VIGOR ships none): put each city's georeferenced aerial map there, or set "
                          f"data.positives=central")


class CityRaster:
    """One city's GeoTIFF (projected, metres, north up, square pixels) and GPS -> raster pixels."""

    def __init__(self, path):
        import rasterio
        from pyproj import Transformer
        try:
            self.dataset = rasterio.open(path)
        except rasterio.errors.RasterioIOError as e:
            raise DataError(f"{path} cannot be read as a GeoTIFF ({e}); restore it or set data.positives=central")
        ds = self.dataset
        t = ds.transform
        crs = ds.crs
        if crs is None or not crs.is_projected or (crs.linear_units or "").lower() not in ("metre", "meter", "m"):
            raise DataError(f"{path}: its CRS ({crs}) is not projected in metres; reproject it (e.g. gdalwarp "
                            f"to UTM) to cut windows of a ground width")
        if t.b != 0 or t.d != 0 or t.e >= 0 or not math.isclose(t.a, -t.e, rel_tol=1e-6):
            raise DataError(f"{path}: pixels are not square and north up (transform {tuple(t)[:6]}); "
                            f"warp it to a north-up grid")
        if ds.count < 3 or any(dtype != "uint8" for dtype in ds.dtypes[:3]):
            raise DataError(f"{path}: expected 3 uint8 bands (RGB), found {ds.count} of {ds.dtypes}")
        self.path = path
        self.pixel_m = float(t.a)
        self.to_raster = Transformer.from_crs(WGS84, crs.to_wkt(), always_xy=True)

    def close(self):
        self.dataset.close()

    def pixel_of(self, lat, lng):
        """Continuous (column, row) raster coordinates of a GPS point."""
        x, y = self.to_raster.transform(lng, lat)
        col, row = ~self.dataset.transform @ (x, y)
        return col, row

    def cut(self, lat, lng, ground_width_m, size_px=TILE_PX):
        """(size_px, size_px, 3) uint8 BGR window of ground_width_m metres centred on (lat, lng)."""
        from rasterio.windows import Window
        col, row = self.pixel_of(lat, lng)
        scale = ground_width_m / size_px / self.pixel_m          # raster pixels per window pixel
        half = ground_width_m / 2.0 / self.pixel_m
        col0 = math.floor(col - half) - MARGIN_PX
        row0 = math.floor(row - half) - MARGIN_PX
        span = math.ceil(2 * half) + 2 * MARGIN_PX + 1
        block = self.dataset.read((1, 2, 3), window=Window(col0, row0, span, span), boundless=True, fill_value=0)
        bgr = np.ascontiguousarray(np.moveaxis(block, 0, -1)[..., ::-1])
        # a window pixel covers `scale` raster pixels: sampled at `factor` x its resolution (bilinear, at most one
        # raster pixel apart) and box-averaged by that integer factor, so that no raster pixel is skipped.
        # Sample j's centre, j + 0.5, sits at raster coordinate c - half + (j + 0.5) step, i.e. at block
        # pixel-centre index c - half + (j + 0.5) step - 0.5 - origin (OpenCV counts from pixel centres)
        factor = max(1, math.ceil(scale - 1e-9))
        step = scale / factor
        matrix = np.array([[step, 0.0, col - half + 0.5 * step - 0.5 - col0],
                           [0.0, step, row - half + 0.5 * step - 0.5 - row0]])
        fine = cv2.warpAffine(bgr, matrix, (size_px * factor, size_px * factor),
                              flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT,
                              borderValue=0)
        if factor == 1:
            return fine
        return cv2.resize(fine, (size_px, size_px), interpolation=cv2.INTER_AREA)


def window_path(root, city, lat, lng):
    return os.path.join(str(root), city, WINDOW_DIR, sat_file_name(lat, lng, "png"))


def ensure_windows(root, cities, gps, ground_width_m, progress=True):
    """The window file of every (city, (lat, lng)), cut and written where it is missing."""
    paths = [window_path(root, c, lat, lng) for c, (lat, lng) in zip(cities, gps)]
    todo = [i for i, p in enumerate(paths) if not os.path.isfile(p)]
    rasters = {}
    try:
        for i in tqdm(todo, desc="centred windows", unit="window", disable=not progress or not todo):
            city = cities[i]
            if city not in rasters:
                rasters[city] = CityRaster(raster_path(root, city))
                os.makedirs(os.path.dirname(paths[i]), exist_ok=True)
            window = rasters[city].cut(gps[i][0], gps[i][1], float(ground_width_m[i]))
            temporary = paths[i] + ".tmp.png"        # a killed write never leaves a half window under the name
            if not cv2.imwrite(temporary, window, [cv2.IMWRITE_PNG_COMPRESSION, 1]):
                raise DataError(f"cannot write {temporary}; check the free space and permissions of {root}")
            os.replace(temporary, paths[i])
    finally:
        for raster in rasters.values():
            raster.close()
    return np.array(paths, dtype=str)


def centred_split(index, progress=True):
    """The one-to-one SplitIndex of `index`'s panoramas, each with its centred window."""
    root = index.root
    require_rasters(root, sorted(set(index.grd_city.tolist())))
    mpp = index.meters_per_pixel[index.labels[:, 0]]          # the positive tile's resolution at 640 px
    paths = ensure_windows(root, index.grd_city.tolist(), index.grd_gps, TILE_PX * mpp, progress)
    n = len(index)
    rows = np.arange(n, dtype=np.int64)
    return SplitIndex(
        sat_paths=paths,
        sat_gps=index.grd_gps.copy(),
        sat_city=index.grd_city.copy(),
        grd_paths=index.grd_paths,
        grd_gps=index.grd_gps,
        grd_city=index.grd_city,
        labels=np.repeat(rows[:, None], 4, axis=1),
        deltas=np.zeros((n, 4, 2)),
        meters_per_pixel=np.asarray(mpp, dtype=np.float64),
        name=f"{index.name} (centred positives)",
        grd_source=index.grd_source,
        sat_source=None if index.grd_source is None else np.array(
            [f"{raster_path(root, c)} at {s}" for c, s in zip(index.grd_city, index.grd_source)], dtype=str),
        skipped=index.skipped,
        root=root,
        cities=index.cities,
    )
