"""A reference database cut from a georeferenced raster (rasterio), and reading it back.

build_database resamples the raster into a north-up tile grid in the database's metric frame
(utils/localization/frame.py: the raster's CRS where its metres are ground metres, else an
azimuthal equidistant projection centred on the raster) at ground_mpp x 640 / tile_px ground
metres per pixel, so that every tile covers 640 x ground_mpp metres of ground, as the
checkpoint's tiles did. Downsampling averages the pixels (Resampling.average), upsampling (at
most 2x; coarser rasters are refused) is bilinear; a raster already on that grid (same CRS,
pixels within 0.1 %) is cut as it is. Tiles are read one at a time through a WarpedVRT, with GDAL's
block cache bounded to 256 MB, so memory does not grow with the raster.

Pixels: 8-bit as they are; 16-bit stretched per band from its 2nd to its 98th percentile (valid
pixels of a decimated read, at most 1024 px a side) to 0-255. One band: grey, repeated; three or
more: the first three as R, G, B (a 4th band, alpha or near infrared, is not imaged), written as
BGR PNGs like VIGOR's. Nodata (the nodata value, an alpha band or mask, outside the raster) is
written black (0); tiles less than half valid are skipped and counted.

    DB/database.json    raster, CRS, grid, resampling, pixel handling, tile size and stride, counts
    DB/tiles.csv        one row per tile: id, file, position in the grid, centre in the raster's
                        CRS and in WGS84, the raster's CRS, width in pixels and ground metres,
                        ground metres per pixel
    DB/tiles.geojson    the same as WGS84 footprint polygons
    DB/satellite/       the tiles, under VIGOR's names satellite_<lat>_<lng>.png

A tile's prediction (delta, in VIGOR's 640-pixel convention: the panorama at row 320 + delta[0],
column 320 - delta[1]) maps to the metric frame through the tile's place in the grid.
"""
import csv
import json
import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass

import cv2
import numpy as np
from pyproj import CRS, Transformer
from tqdm import tqdm

from utils.data.dataset import sat_file_name
from utils.errors import ConfigError, DataError
from utils.localization.frame import (MetricFrame, crs_label, ground_metres_per_pixel, local_metric_crs,
                                      scale_factor, to_wgs84)

INFO_FILE = "database.json"
TILES_CSV = "tiles.csv"
TILES_GEOJSON = "tiles.geojson"
TILE_DIR = "satellite"
LABEL_SIDE = 640.0            # VIGOR's tile side, the convention of delta
COLUMNS = ("id", "file", "row_px", "col_px", "centre_x", "centre_y", "lat", "lng", "crs",
           "width_px", "width_m", "m_per_px")
DTYPES = ("uint8", "uint16", "int16")
MAX_UPSAMPLING = 2.0          # a raster coarser than this times the grid's pixel is refused
NATIVE_TOLERANCE = 1e-3       # a raster whose pixels are the grid's within this is not resampled
MIN_VALID_SHARE = 0.5         # tiles with less valid (not nodata) pixels are skipped
STRETCH_PERCENTILES = (2, 98)
STRETCH_SAMPLE_PX = 1024
GDAL_CACHE_BYTES = 256 * 2 ** 20   # decoded blocks GDAL keeps (its default, 5 % of the RAM, a large raster fills)


# ---------------------------------------------------------------- building
def open_raster(path):
    """The rasterio dataset, checked: readable, georeferenced, north-up, 8 or 16-bit, 1 or 3+ bands."""
    import rasterio
    from rasterio.errors import RasterioIOError
    if not os.path.exists(path):
        raise DataError(f"raster {path} does not exist: give the path of a GeoTIFF")
    try:
        src = rasterio.open(path)
    except RasterioIOError as error:
        raise DataError(f"raster {path} cannot be read ({str(error).splitlines()[0]}): give a GeoTIFF") from None
    problem = None
    if src.crs is None:
        problem = ("has no CRS (it is not georeferenced): assign the CRS it was made in, "
                   "e.g. gdal_edit.py -a_srs EPSG:32618 FILE")
    elif src.transform.b != 0 or src.transform.d != 0 or src.transform.e >= 0:
        problem = "is not north-up (rotated or flipped): warp it north-up first, e.g. gdalwarp FILE OUT"
    elif src.dtypes[0] not in DTYPES:
        problem = (f"has {src.dtypes[0]} pixels: convert it to 8-bit, "
                   f"e.g. gdal_translate -ot Byte -scale MIN MAX 0 255 FILE OUT")
    elif src.count == 2:
        problem = "has 2 bands: give a 1-band (grey) or 3-band (RGB) raster"
    if problem:
        src.close()
        raise DataError(f"raster {path} {problem}")
    return src


def tile_grid(size, tile_px, stride_px):
    """Start pixels of the tiles along one axis that fit, and how many grid positions do not."""
    starts = np.arange(0, size, stride_px)
    fits = starts + tile_px <= size
    return starts[fits], int((~fits).sum())


@dataclass
class TileGrid:
    """The north-up grid the tiles are cut from, in the metric frame's CRS."""
    crs: CRS
    transform: tuple          # affine (a, b, c, d, e, f)
    height: int
    width: int
    ground_mpp: float         # ground metres per grid pixel at the raster's centre
    raster_ground_mpp: float  # ground metres per raster pixel there
    resampling: str           # none (the raster's own grid), average (downsampling) or bilinear (upsampling)


def plan_grid(src, path, ground_mpp, tile_px):
    """The grid of tile_px-pixel tiles of 640 x ground_mpp ground metres covering the raster."""
    wanted = ground_mpp * LABEL_SIDE / tile_px
    crs = CRS.from_wkt(src.crs.to_wkt())
    t = src.transform                                    # north-up (open_raster)
    lon, lat = to_wgs84(crs, t.c + t.a * src.width / 2.0, t.f + t.e * src.height / 2.0)
    native = ground_metres_per_pixel(crs, src.transform, src.height / 2.0, src.width / 2.0)
    if native > MAX_UPSAMPLING * wanted:
        raise DataError(f"raster {path} has {native:.4g} m/px on the ground, but tiles of {tile_px} px need "
                        f"{wanted:.4g} m/px (the checkpoint's {ground_mpp:.4g} m/px at 640 px, "
                        f"{LABEL_SIDE * ground_mpp:.1f} m tiles): use imagery of at most "
                        f"{MAX_UPSAMPLING * wanted:.4g} m/px (an orthophoto), or --ground-mpp of a "
                        f"checkpoint trained on coarser tiles")
    metric = local_metric_crs(crs, lon, lat)
    step = wanted * scale_factor(metric, lon, lat)
    if metric is crs and all(abs(abs(v) / step - 1.0) <= NATIVE_TOLERANCE for v in (src.transform.a, src.transform.e)):
        return TileGrid(crs, tuple(src.transform)[:6], src.height, src.width, native, native, "none")
    from rasterio.warp import transform_bounds
    left, bottom, right, top = transform_bounds(src.crs, metric.to_wkt(), *src.bounds, densify_pts=21)
    return TileGrid(metric, (step, 0.0, left, 0.0, -step, top), int((top - bottom) // step),
                    int((right - left) // step), wanted, native, "average" if wanted >= native else "bilinear")


@contextmanager
def grid_view(src, grid):
    """src read on the grid: itself, or a WarpedVRT (with an alpha band masking what lies outside)."""
    if grid.resampling == "none":
        yield src
        return
    from rasterio.crs import CRS as RasterioCRS
    from rasterio.enums import ColorInterp, Resampling
    from rasterio.transform import Affine
    from rasterio.vrt import WarpedVRT
    with WarpedVRT(src, crs=RasterioCRS.from_wkt(grid.crs.to_wkt()), transform=Affine(*grid.transform),
                   width=grid.width, height=grid.height, resampling=Resampling[grid.resampling],
                   add_alpha=ColorInterp.alpha not in src.colorinterp) as vrt:
        yield vrt


def band_indexes(src):
    return (1,) if src.count == 1 else (1, 2, 3)


def band_stretch(src):
    """(low, high), each (bands,): the 2nd and 98th percentiles of the valid pixels; None for 8-bit."""
    if src.dtypes[0] == "uint8":
        return None
    factor = max(1, int(np.ceil(max(src.height, src.width) / STRETCH_SAMPLE_PX)))
    shape = (max(1, src.height // factor), max(1, src.width // factor))
    indexes = band_indexes(src)
    values = src.read(indexes, out_shape=(len(indexes),) + shape).astype(np.float64)
    valid = src.dataset_mask(out_shape=shape) > 0
    if not valid.any():
        return np.zeros(len(indexes)), np.ones(len(indexes))
    low, high = np.percentile(values[:, valid], STRETCH_PERCENTILES, axis=1)
    return low, np.maximum(high, low + 1.0)


def to_8bit(bands, stretch):
    low, high = stretch
    scaled = (bands - low[:, None, None]) / (high - low)[:, None, None] * 255.0
    return np.clip(np.round(scaled), 0, 255).astype(np.uint8)


def read_tile(view, indexes, stretch, row, col, tile_px):
    """BGR uint8 tile (nodata black) and the share of its pixels that are valid."""
    from rasterio.windows import Window
    window = Window(col, row, tile_px, tile_px)
    bands = view.read(indexes, window=window)
    bands = to_8bit(bands, stretch) if stretch is not None else bands
    image = np.repeat(bands, 3, axis=0) if len(indexes) == 1 else bands[::-1]
    image = np.moveaxis(image, 0, -1).copy()
    valid = view.dataset_mask(window=window) > 0
    image[~valid] = 0
    return image, float(valid.mean())


@contextmanager
def grid_windows(info):
    """read(row, col) -> the BGR uint8 window of info's tile grid at (row, col), cut from its raster as
    build_database cuts its tiles (the same grid, resampling, bands and stretch); for windows that
    were not stored, e.g. re-cut around candidates at query time."""
    import rasterio
    frame = MetricFrame.from_dict(info["frame"])
    height, width = info["grid"]["size_px"]
    grid = TileGrid(frame.crs, frame.transform, int(height), int(width), info["grid"]["ground_m_per_px"],
                    info["raster_ground_m_per_px"], info["grid"]["resampling"])
    stored = info["pixels"]["stretch"]
    stretch = None if stored is None else (np.asarray(stored["low"]), np.asarray(stored["high"]))
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES), open_raster(info["raster"]) as src, grid_view(src, grid) as view:
        indexes = band_indexes(src)
        yield lambda row, col: read_tile(view, indexes, stretch, row, col, int(info["tile_px"]))[0]


def build_database(raster, out_dir, ground_mpp, tile_px=640, stride_px=640, progress=True):
    """Cut raster into tiles of tile_px covering 640 x ground_mpp metres, every stride_px pixels;
    returns database.json's content."""
    if tile_px < 64 or stride_px < 1 or not ground_mpp > 0:
        raise DataError(f"--tile-px {tile_px} / --stride-px {stride_px} / --ground-mpp {ground_mpp}: use a tile "
                        f"of at least 64 px, a positive stride (VIGOR: 640, stride 320 dense or 640 sparse) and "
                        f"a positive ground resolution (VIGOR: 0.114 m/px)")
    import rasterio
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES), open_raster(raster) as src:
        grid = plan_grid(src, raster, ground_mpp, tile_px)
        frame = MetricFrame(grid.crs.to_wkt(), grid.transform, metric_wkt=grid.crs.to_wkt())
        to_raster_crs = Transformer.from_crs(frame.metric, CRS.from_wkt(src.crs.to_wkt()), always_xy=True)
        rows, outside_rows = tile_grid(grid.height, tile_px, stride_px)
        cols, outside_cols = tile_grid(grid.width, tile_px, stride_px)
        outside = (len(rows) + outside_rows) * (len(cols) + outside_cols) - len(rows) * len(cols)
        stretch, indexes = band_stretch(src), band_indexes(src)
        _prepare_out_dir(out_dir)
        records, nodata = [], 0
        positions = [(int(r), int(c)) for r in rows for c in cols]
        with grid_view(src, grid) as view:
            for row, col in tqdm(positions, desc="tiles", disable=not progress, leave=False):
                image, valid_share = read_tile(view, indexes, stretch, row, col, tile_px)
                if valid_share < MIN_VALID_SHARE:
                    nodata += 1
                    continue
                record = _tile_record(frame, to_raster_crs, crs_label(src.crs), len(records), row, col, tile_px)
                cv2.imwrite(os.path.join(out_dir, TILE_DIR, record["file"]), image, [cv2.IMWRITE_PNG_COMPRESSION, 1])
                records.append(record)
        info = _info(raster, src, grid, ground_mpp, tile_px, stride_px, stretch, frame)
        info.update({"tiles": len(records), "skipped_outside": outside, "skipped_nodata": nodata})
    if not records:
        raise DataError(f"raster {raster} gives no tiles: it is {grid.height} x {grid.width} px at "
                        f"{grid.ground_mpp:.4g} m/px (the tiles' resolution) against tiles of {tile_px} px, and "
                        f"{nodata} tiles were mostly nodata; use a larger raster")
    _write_tables(out_dir, records, frame, info)
    return info


def _info(raster, src, grid, ground_mpp, tile_px, stride_px, stretch, frame):
    bands = "band 1 as grey" if src.count == 1 else "bands 1, 2, 3 as R, G, B"
    return {"raster": os.path.abspath(raster), "raster_crs": crs_label(src.crs),
            "raster_size_px": [src.height, src.width], "raster_ground_m_per_px": grid.raster_ground_mpp,
            "ground_mpp": float(ground_mpp), "tile_px": int(tile_px), "stride_px": int(stride_px),
            "tile_ground_m": LABEL_SIDE * float(ground_mpp),
            "grid": {"crs": crs_label(grid.crs), "size_px": [grid.height, grid.width],
                     "ground_m_per_px": grid.ground_mpp, "resampling": grid.resampling,
                     "scale": grid.ground_mpp / grid.raster_ground_mpp},
            "pixels": {"bands": f"{bands}, written as BGR PNGs", "dtype": src.dtypes[0],
                       "stretch": None if stretch is None else
                       {"percentiles": list(STRETCH_PERCENTILES), "low": stretch[0].tolist(), "high": stretch[1].tolist()},
                       "nodata": f"written black (0); tiles less than {MIN_VALID_SHARE:.0%} valid skipped"},
            "frame": frame.to_dict()}


def _prepare_out_dir(out_dir):
    if os.path.isdir(out_dir) and os.listdir(out_dir):
        if not os.path.exists(os.path.join(out_dir, INFO_FILE)):
            raise DataError(f"{out_dir} exists and is not a reference database: choose another --out or empty it")
        shutil.rmtree(out_dir)
    os.makedirs(os.path.join(out_dir, TILE_DIR), exist_ok=True)


def _tile_record(frame, to_raster_crs, raster_crs_label, tile_id, row, col, tile_px):
    centre_row, centre_col = row + tile_px / 2.0, col + tile_px / 2.0
    centre = frame.pixel_to_metric(centre_row, centre_col)
    x, y = to_raster_crs.transform(*centre)
    lng, lat = frame.metric_to_lonlat(centre)
    mpp = frame.ground_metres_per_pixel(centre_row, centre_col)
    return {"id": tile_id, "file": sat_file_name(lat, lng, "png"), "row_px": row, "col_px": col,
            "centre_x": float(x), "centre_y": float(y), "lat": float(lat), "lng": float(lng),
            "crs": raster_crs_label, "width_px": tile_px, "width_m": tile_px * mpp, "m_per_px": mpp}


def _write_tables(out_dir, records, frame, info):
    with open(os.path.join(out_dir, TILES_CSV), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(records)
    features = []
    for record in records:
        row, col, side = record["row_px"], record["col_px"], record["width_px"]
        corners = frame.pixel_to_metric([row, row, row + side, row + side, row],
                                        [col, col + side, col + side, col, col])
        ring = frame.metric_to_lonlat(corners).tolist()
        features.append({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]},
                         "properties": {k: record[k] for k in COLUMNS}})
    with open(os.path.join(out_dir, TILES_GEOJSON), "w") as f:
        json.dump({"type": "FeatureCollection", "features": features}, f)
    with open(os.path.join(out_dir, INFO_FILE), "w") as f:
        json.dump(info, f, indent=1)


# ---------------------------------------------------------------- reading
@dataclass
class Database:
    root: str
    info: dict
    frame: MetricFrame
    files: np.ndarray        # (T,) tile file names
    row_px: np.ndarray       # (T,) top-left pixel of each tile in the tile grid (the frame's)
    col_px: np.ndarray
    width_m: np.ndarray      # (T,) ground metres
    centres: np.ndarray      # (T, 2) metric frame (east, north)

    @property
    def tile_px(self):
        return int(self.info["tile_px"])

    def __len__(self):
        return len(self.files)

    def tile_path(self, i):
        return os.path.join(self.root, TILE_DIR, self.files[i])

    def delta_to_metric(self, tile, delta):
        """(..., 2) metric positions of offsets delta (640-px convention) inside tile `tile`."""
        scale = self.tile_px / LABEL_SIDE
        delta = np.asarray(delta, np.float64)
        rows = self.row_px[tile] + scale * (LABEL_SIDE / 2 + delta[..., 0])
        cols = self.col_px[tile] + scale * (LABEL_SIDE / 2 - delta[..., 1])
        return self.frame.pixel_to_metric(rows, cols)

    def delta_jacobian(self, tile):
        """2x2 derivative of the metric position (east, north) by delta at the tile's centre."""
        scale = self.tile_px / LABEL_SIDE
        half = self.tile_px / 2.0
        jacobian = self.frame.pixel_jacobian(self.row_px[tile] + half, self.col_px[tile] + half)
        return jacobian @ (scale * np.array([[0.0, -1.0], [1.0, 0.0]]))   # (col, row) = s (-d1, d0)

    def sigma_to_metric(self, tile, sigma):
        """Covariance over delta (640 px) -> over metric (east, north) at the tile's centre."""
        by_delta = self.delta_jacobian(tile)
        return by_delta @ np.asarray(sigma, np.float64) @ by_delta.T

    def metric_to_delta(self, tile, points):
        """(..., 2) offsets (640-px convention) of metric points in tile `tile`: delta_to_metric's
        inverse through the tile centre's Jacobian (exact where the frame is affine, as a north-up grid's)."""
        inverse = np.linalg.inv(self.delta_jacobian(tile))
        return (np.asarray(points, np.float64) - self.delta_to_metric(tile, np.zeros(2))) @ inverse.T

    def sigma_to_delta(self, tile, cov):
        """Covariance over metric (east, north) -> over delta (640 px): sigma_to_metric's inverse."""
        inverse = np.linalg.inv(self.delta_jacobian(tile))
        return inverse @ np.asarray(cov, np.float64) @ inverse.T

    def contains(self, tile, points):
        """Whether metric points (..., 2) fall inside the tile's footprint (north-up rasters)."""
        half = self.width_m[tile] / 2.0
        return np.all(np.abs(np.asarray(points) - self.centres[tile]) <= half, axis=-1)


def load_database(root):
    info_path = os.path.join(root, INFO_FILE)
    if not os.path.exists(info_path):
        raise DataError(f"{root} is not a reference database (no {INFO_FILE}): "
                        f"make one with `python localize.py build --raster MAP.tif --out {root}`")
    with open(info_path) as f:
        info = json.load(f)
    with open(os.path.join(root, TILES_CSV), newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise DataError(f"reference database {root} is empty ({TILES_CSV} lists no tiles): rebuild it "
                        f"from a raster larger than one tile")
    frame = MetricFrame.from_dict(info["frame"])
    row_px = np.array([int(r["row_px"]) for r in rows])
    col_px = np.array([int(r["col_px"]) for r in rows])
    half = int(info["tile_px"]) / 2.0
    return Database(root=root, info=info, frame=frame, files=np.array([r["file"] for r in rows]),
                    row_px=row_px, col_px=col_px, width_m=np.array([float(r["width_m"]) for r in rows]),
                    centres=frame.pixel_to_metric(row_px + half, col_px + half))


def training_tile_metres(cfg):
    """(low, high) ground width in metres of the tiles the checkpoint's data was made of."""
    from utils.data.geo import CORRECTED_MPP, ORIGINAL_MPP
    resolution = cfg.data.resolution
    if cfg.data.dataset == "synthetic_university1652":
        from utils.config import resolve_path
        from utils.data.university1652_poses import load_place_poses
        metres = load_place_poses(resolve_path(cfg.data.root)).satellite_metres
        return metres, metres
    if cfg.data.dataset == "synthetic_spacenet6":
        s = cfg.data.synthetic_spacenet6
        return s.tile_px * s.meters_per_pixel, s.tile_px * s.meters_per_pixel
    if cfg.data.dataset == "spacenet6" and not isinstance(resolution, (int, float)):
        from utils.data.spacenet6 import METERS_PER_PIXEL, TILE_PX
        return TILE_PX * METERS_PER_PIXEL, TILE_PX * METERS_PER_PIXEL     # 900 px at 0.5 m
    if cfg.data.dataset == "synthetic":
        mpp = [float(cfg.data.synthetic.meters_per_pixel)]
    elif isinstance(resolution, (int, float)) and not isinstance(resolution, bool):
        mpp = [float(resolution)]
    elif cfg.data.dataset == "university1652":
        raise ConfigError("University-1652's release does not state the ground size of its satellite images: "
                          "set data.resolution to their ground metres per pixel at 640 px")
    elif resolution == "corrected":
        mpp = list(CORRECTED_MPP.values())
    else:
        mpp = [ORIGINAL_MPP]
    return LABEL_SIDE * min(mpp), LABEL_SIDE * max(mpp)


def training_ground_mpp(cfg):
    """Ground metres per pixel at 640 px of the checkpoint's tiles (the middle of their range)."""
    low, high = training_tile_metres(cfg)
    return (low + high) / 2.0 / LABEL_SIDE


def check_matches_training(db, cfg, tolerance):
    """DataError unless the database's tiles cover the ground the checkpoint's tiles covered."""
    low, high = training_tile_metres(cfg)
    width = float(np.median(db.width_m))
    if width < low * (1 - tolerance) or width > high * (1 + tolerance):
        raise DataError(f"reference database {db.root} has tiles of {width:.1f} m on the ground, but the "
                        f"checkpoint's data ({cfg.config_path}) has tiles of {(low + high) / 2:.1f} m (640 px): "
                        f"rebuild it with --ground-mpp {training_ground_mpp(cfg):.6g} or that --config")
