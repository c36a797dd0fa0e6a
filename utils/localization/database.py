"""A reference database cut from a georeferenced raster (rasterio), and reading it back.

    DB/database.json    raster, CRS, metric frame, tile size and stride, counts
    DB/tiles.csv        one row per tile: id, file, position in the raster, centre in the
                        raster's CRS and in WGS84, CRS, width in pixels and metres, metres/pixel
    DB/tiles.geojson    the same as WGS84 footprint polygons
    DB/satellite/       the tiles, under VIGOR's names satellite_<lat>_<lng>.png

A tile's prediction (delta, in VIGOR's 640-pixel convention: the panorama at row 320 + delta[0],
column 320 - delta[1]) maps to the metric frame through the tile's place in the raster.
"""
import csv
import json
import os
import shutil
from dataclasses import dataclass

import cv2
import numpy as np
from tqdm import tqdm

from utils.data.dataset import sat_file_name
from utils.errors import DataError
from utils.localization.frame import MetricFrame

INFO_FILE = "database.json"
TILES_CSV = "tiles.csv"
TILES_GEOJSON = "tiles.geojson"
TILE_DIR = "satellite"
LABEL_SIDE = 640.0            # VIGOR's tile side, the convention of delta
COLUMNS = ("id", "file", "row_px", "col_px", "centre_x", "centre_y", "lat", "lng", "crs",
           "width_px", "width_m", "m_per_px")


# ---------------------------------------------------------------- building
def open_raster(path):
    """The rasterio dataset, checked: readable, georeferenced, north-up, 8-bit, 1 or 3+ bands."""
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
    elif src.dtypes[0] != "uint8":
        problem = f"has {src.dtypes[0]} pixels: convert it to 8-bit, e.g. gdal_translate -ot Byte -scale FILE OUT"
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


def read_window(src, row, col, tile_px):
    """BGR uint8 window of tile_px from (row, col) and whether it holds any valid (not nodata) pixel."""
    from rasterio.windows import Window
    window = Window(col, row, tile_px, tile_px)
    bands = (1, 1, 1) if src.count == 1 else (3, 2, 1)
    image = np.moveaxis(src.read(bands, window=window), 0, -1)
    valid = src.dataset_mask(window=window).any()
    return np.ascontiguousarray(image), bool(valid)


def build_database(raster, out_dir, tile_px=640, stride_px=640, progress=True):
    """Cut raster into tiles of tile_px every stride_px pixels; returns database.json's content."""
    if tile_px < 64 or stride_px < 1:
        raise DataError(f"--tile-px {tile_px} / --stride-px {stride_px}: use a tile of at least 64 px "
                        f"and a positive stride (VIGOR: 640, stride 320 dense or 640 sparse)")
    with open_raster(raster) as src:
        frame = MetricFrame(src.crs.to_wkt(), tuple(src.transform)[:6], centre_px=(src.height / 2, src.width / 2))
        rows, outside_rows = tile_grid(src.height, tile_px, stride_px)
        cols, outside_cols = tile_grid(src.width, tile_px, stride_px)
        outside = (len(rows) + outside_rows) * (len(cols) + outside_cols) - len(rows) * len(cols)
        _prepare_out_dir(out_dir)
        records, nodata = [], 0
        positions = [(r, c) for r in rows for c in cols]
        for row, col in tqdm(positions, desc="tiles", disable=not progress, leave=False):
            image, valid = read_window(src, int(row), int(col), tile_px)
            if not valid:
                nodata += 1
                continue
            record = _tile_record(frame, len(records), int(row), int(col), tile_px)
            cv2.imwrite(os.path.join(out_dir, TILE_DIR, record["file"]), image, [cv2.IMWRITE_PNG_COMPRESSION, 1])
            records.append(record)
        info = {"raster": os.path.abspath(raster), "raster_size_px": [src.height, src.width],
                "tile_px": int(tile_px), "stride_px": int(stride_px), "tiles": len(records),
                "skipped_outside": outside, "skipped_nodata": nodata, "frame": frame.to_dict()}
    if not records:
        raise DataError(f"raster {raster} gives no tiles: it is {info['raster_size_px'][0]} x "
                        f"{info['raster_size_px'][1]} px against tiles of {tile_px} px, and {nodata} tiles were "
                        f"all nodata; use a larger raster or a smaller --tile-px")
    _write_tables(out_dir, records, frame, info)
    return info


def _prepare_out_dir(out_dir):
    if os.path.isdir(out_dir) and os.listdir(out_dir):
        if not os.path.exists(os.path.join(out_dir, INFO_FILE)):
            raise DataError(f"{out_dir} exists and is not a reference database: choose another --out or empty it")
        shutil.rmtree(out_dir)
    os.makedirs(os.path.join(out_dir, TILE_DIR), exist_ok=True)


def _tile_record(frame, tile_id, row, col, tile_px):
    centre_row, centre_col = row + tile_px / 2.0, col + tile_px / 2.0
    x, y = frame.pixel_to_crs(centre_row, centre_col)
    lng, lat = frame.metric_to_lonlat(frame.pixel_to_metric(centre_row, centre_col))
    mpp = frame.metres_per_pixel(centre_row, centre_col)
    return {"id": tile_id, "file": sat_file_name(lat, lng, "png"), "row_px": row, "col_px": col,
            "centre_x": float(x), "centre_y": float(y), "lat": float(lat), "lng": float(lng),
            "crs": frame.crs_label, "width_px": tile_px, "width_m": tile_px * mpp, "m_per_px": mpp}


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
    row_px: np.ndarray       # (T,) top-left pixel of each tile in the raster
    col_px: np.ndarray
    width_m: np.ndarray      # (T,)
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

    def sigma_to_metric(self, tile, sigma):
        """Covariance over delta (640 px) -> over metric (east, north) at the tile's centre."""
        scale = self.tile_px / LABEL_SIDE
        half = self.tile_px / 2.0
        jacobian = self.frame.pixel_jacobian(self.row_px[tile] + half, self.col_px[tile] + half)
        by_delta = jacobian @ (scale * np.array([[0.0, -1.0], [1.0, 0.0]]))   # (col, row) = s (-d1, d0)
        return by_delta @ np.asarray(sigma, np.float64) @ by_delta.T

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
    if cfg.data.dataset == "synthetic":
        mpp = [float(cfg.data.synthetic.meters_per_pixel)]
    elif cfg.data.resolution == "corrected":
        mpp = list(CORRECTED_MPP.values())
    else:
        mpp = [ORIGINAL_MPP]
    return LABEL_SIDE * min(mpp), LABEL_SIDE * max(mpp)


def check_matches_training(db, cfg, tolerance):
    """DataError unless the database's tiles cover the ground the checkpoint's tiles covered."""
    low, high = training_tile_metres(cfg)
    width = float(np.median(db.width_m))
    if width < low * (1 - tolerance) or width > high * (1 + tolerance):
        mpp = width / db.tile_px
        wanted = int(round((low + high) / 2 / mpp))
        raise DataError(f"reference database {db.root} is cut at {db.tile_px} px x {mpp:.4f} m/px = {width:.1f} m "
                        f"tiles, but the checkpoint's data ({cfg.config_path}) has tiles of "
                        f"{(low + high) / 2:.1f} m (640 px): rebuild it with --tile-px {wanted}")
