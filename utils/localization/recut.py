"""Windows re-cut at query time from a sparse database's raster.

A sparse database (no overlap) is small, but a panorama is often near a stored tile's edge, where
the network (trained on panoramas in a tile's central quarter) does not recognise it. Keeping the
raster the database was cut from (each pixel once: about the size of the sparse tiles, a quarter
of a half-overlapping database's) lets a query read windows shifted by half a tile around its
best stored tiles, in one of which the panorama sits near the centre. Windows are written once
under DB/recut/ and read back as a Database in the same metric frame.
"""
import os
from dataclasses import replace

import cv2
import numpy as np

from utils.data.dataset import sat_file_name
from utils.errors import DataError
from utils.localization.database import grid_windows

RECUT_DIR = "recut"
SHIFTS = (-1, 0, 1)                  # half tiles, along each axis


class WindowCutter:
    """Every window of the database's tile size at half-tile steps that fits in its raster."""

    def __init__(self, db):
        self.db, self.raster = db, db.info["raster"]
        if not os.path.exists(self.raster):
            raise DataError(f"windows are re-cut from {db.root}'s raster {self.raster}, which does not exist: "
                            f"keep the raster, or set localize.recut_candidates to 0")
        if "grid" not in db.info:
            raise DataError(f"{db.root} was built before tiles were cut on a ground-resolution grid: rebuild it "
                            f"with localize.py build, or set localize.recut_candidates to 0")
        self.windows = self._all_windows()
        self.lookup = {(int(r), int(c)): i for i, (r, c) in enumerate(zip(self.windows.row_px, self.windows.col_px))}

    def _all_windows(self):
        size, half = self.db.tile_px, self.db.tile_px // 2
        height, width = self.db.info["grid"]["size_px"]
        rows, cols = np.meshgrid(np.arange(0, height - size + 1, half), np.arange(0, width - size + 1, half),
                                 indexing="ij")
        windows = windows_database(self.db, os.path.join(self.db.root, RECUT_DIR), rows.ravel(), cols.ravel())
        lng, lat = self.db.frame.metric_to_lonlat(windows.centres).T
        return replace(windows, files=np.array([sat_file_name(a, b, "png") for a, b in zip(lat, lng)]))

    def around(self, tiles):
        """Window ids around stored tiles: each tile's own place and its eight half-tile shifts that fit."""
        half = self.db.tile_px // 2
        found = {self.lookup.get((int(self.db.row_px[t]) + a * half, int(self.db.col_px[t]) + b * half))
                 for t in np.atleast_1d(tiles) for a in SHIFTS for b in SHIFTS}
        return np.array(sorted(found - {None}), dtype=np.int64)

    def cut(self, windows):
        """Write the windows' images that are not on disk yet."""
        write_windows(self.windows, windows)


def windows_database(db, root, rows, cols, files=None):
    """A Database of windows of db's tile size at grid pixels (rows, cols), in db's metric frame
    (files: their names; None until the caller names them from the centres)."""
    size = db.tile_px
    centres = db.frame.pixel_to_metric(rows + size / 2.0, cols + size / 2.0)
    return replace(db, root=root, files=None if files is None else np.asarray(files), row_px=rows, col_px=cols,
                   width_m=np.full(len(rows), float(np.median(db.width_m))), centres=centres)


def write_windows(windows, ids, out_px=None):
    """Cut the windows ids of a windows_database from its raster (as build_database cuts tiles) and
    write those not on disk yet; out_px: written resized to out_px (cv2.INTER_AREA, as the image
    loader resizes a tile), else at the tile size."""
    missing = [w for w in ids if not os.path.exists(windows.tile_path(w))]
    if not missing:
        return
    os.makedirs(os.path.dirname(windows.tile_path(missing[0])), exist_ok=True)
    with grid_windows(windows.info) as read:
        for w in missing:
            image = read(int(windows.row_px[w]), int(windows.col_px[w]))
            if out_px is not None and out_px != image.shape[0]:
                image = cv2.resize(image, (out_px, out_px), interpolation=cv2.INTER_AREA)
            cv2.imwrite(windows.tile_path(w), image, [cv2.IMWRITE_PNG_COMPRESSION, 1])
