"""Windows re-cut at query time from a sparse database's stored tiles.

A database cut without overlap (stride = tile size) stores every pixel of the area it covers, so
any window of a tile's size inside that area can be stitched from at most four stored tiles: the
storage stays sparse while a query can read tiles shifted by half a tile, where a panorama near a
stored tile's edge sits in the window's central part (the network was trained on panoramas in the
central quarter of a tile). Windows are written once under DB/recut/ and read back as a Database.
"""
import os
from dataclasses import replace

import cv2
import numpy as np

from utils.data.dataset import sat_file_name
from utils.errors import DataError

RECUT_DIR = "recut"
SHIFTS = (-1, 0, 1)                  # half tiles, along each axis


class WindowCutter:
    """The half-tile-shifted windows of a sparse database that its stored tiles cover."""

    def __init__(self, db):
        if int(db.info["stride_px"]) != db.tile_px:
            raise DataError(f"{db.root} is cut with stride {db.info['stride_px']} px for tiles of {db.tile_px} "
                            f"px: windows are re-cut only from a database without overlap (stride = tile size)")
        self.db = db
        self.stored = {(int(r), int(c)): i for i, (r, c) in enumerate(zip(db.row_px, db.col_px))}
        self.windows = self._all_windows()
        self.lookup = {(int(r), int(c)): i for i, (r, c) in enumerate(zip(self.windows.row_px, self.windows.col_px))}

    def _covered(self, row, col):
        size = self.db.tile_px
        corners = {(row // size * size + dr, col // size * size + dc) for dr in (0, size) for dc in (0, size)
                   if (row + size > row // size * size + dr) and (col + size > col // size * size + dc)}
        return all(corner in self.stored for corner in corners)

    def _all_windows(self):
        half = self.db.tile_px // 2
        origins = sorted({(r + a * half, c + b * half) for (r, c) in self.stored for a in SHIFTS for b in SHIFTS
                          if r + a * half >= 0 and c + b * half >= 0})
        origins = [o for o in origins if self._covered(*o)]
        rows, cols = (np.array([o[n] for o in origins]) for n in (0, 1))
        half_px = self.db.tile_px / 2.0
        centres = self.db.frame.pixel_to_metric(rows + half_px, cols + half_px)
        lng, lat = self.db.frame.metric_to_lonlat(centres).T
        widths = np.full(len(rows), float(np.median(self.db.width_m)))
        files = np.array([sat_file_name(a, b, "png") for a, b in zip(lat, lng)])
        return replace(self.db, root=os.path.join(self.db.root, RECUT_DIR), files=files, row_px=rows,
                       col_px=cols, width_m=widths, centres=centres)

    def around(self, tiles):
        """Window ids around stored tiles: each tile and its eight half-tile shifts that are covered."""
        half = self.db.tile_px // 2
        found = {self.lookup.get((int(self.db.row_px[t]) + a * half, int(self.db.col_px[t]) + b * half))
                 for t in np.atleast_1d(tiles) for a in SHIFTS for b in SHIFTS}
        return np.array(sorted(found - {None}), dtype=np.int64)

    def cut(self, windows):
        """Write the windows' images that are not on disk yet."""
        folder = os.path.dirname(self.windows.tile_path(0))
        os.makedirs(folder, exist_ok=True)
        for w in windows:
            path = self.windows.tile_path(w)
            if not os.path.exists(path):
                cv2.imwrite(path, self.stitch(int(self.windows.row_px[w]), int(self.windows.col_px[w])),
                            [cv2.IMWRITE_PNG_COMPRESSION, 1])

    def stitch(self, row, col):
        """BGR window of one tile's size whose top-left pixel is (row, col), from the stored tiles."""
        size = self.db.tile_px
        top, left = row // size * size, col // size * size
        mosaic = np.zeros((2 * size, 2 * size, 3), np.uint8)
        for dr in (0, size):
            for dc in (0, size):
                tile = self.stored.get((top + dr, left + dc))
                if tile is not None:
                    mosaic[dr:dr + size, dc:dc + size] = cv2.imread(self.db.tile_path(tile), cv2.IMREAD_COLOR)
        return np.ascontiguousarray(mosaic[row - top:row - top + size, col - left:col - left + size])
