"""Fine localization by window search: where in a retrieved tile the panorama is, from the retrieval
descriptor instead of the offset head.

A stored tile's descriptor matches a panorama best when the panorama is near the tile's centre
(docs/LOCALIZATION.md, sparse databases). Windows of the tile size are cut from the database's
raster every localize.fine_stride_px (640-px convention); inside a candidate tile, the windows whose
centres lie in the tile's footprint vote with softmax(similarity / localize.fine_temperature), and
the panorama is put at the weighted mean of their centres, with the weighted covariance of the
centres plus the stride's quantisation (stride^2 / 12 per axis) as its Gaussian. The same windows
give localize.rerank=windows its evidence: a candidate tile's best window similarity. The network
describing windows and panoramas may be another checkpoint's than retrieval's (localize.fine_checkpoint).

    DB/fine_windows/stride<S>_px<P>/satellite/window_<row>_<col>.png   cut once, when first needed
    DB/fine_windows/stride<S>_px<P>/descriptors_<key>.npz              per checkpoint (path and time)

S is the stride in the grid's pixels, P the side the windows are written at: the network's tile
input (they are resized as the image loader resizes a tile), or the database's tile size.
"""
import hashlib
import os

import numpy as np

from utils.errors import DataError
from utils.localization.database import LABEL_SIDE
from utils.localization.recut import windows_database, write_windows

FINE_DIR = "fine_windows"
EDGE_TOLERANCE_M = 1e-6          # a window centre on the tile's border counts as inside


def window_estimate(similarities, centres, temperature, stride_m):
    """(mean (2,), covariance (2, 2)) of the window centres (K, 2) weighted by
    softmax(similarities (K,) / temperature); the covariance is the weighted spread of the centres
    plus stride_m^2 / 12 per axis (the grid's quantisation; stride_m a number or one per axis)."""
    similarities = np.asarray(similarities, np.float64)
    centres = np.asarray(centres, np.float64)
    if len(similarities) == 0:
        raise ValueError("window_estimate needs at least one window")
    weights = np.exp((similarities - similarities.max()) / float(temperature))
    weights /= weights.sum()
    mean = weights @ centres
    spread = centres - mean
    quantisation = np.diag(np.broadcast_to(np.asarray(stride_m, np.float64), (2,)) ** 2 / 12.0)
    return mean, (weights[:, None] * spread).T @ spread + quantisation


UNCERTAINTIES = ("covariance", "entropy", "best_weight", "best_similarity", "margin")
WEIGHTED_UNCERTAINTIES = ("covariance", "entropy", "best_weight")    # those that read softmax weights
MARGIN_SEPARATION = 0.25         # margin: a distinct location lies >= this share of a window's side away


def window_weights(similarities, temperature):
    """softmax(similarities / temperature)."""
    similarities = np.asarray(similarities, np.float64)
    weights = np.exp((similarities - similarities.max()) / float(temperature))
    return weights / weights.sum()


def window_uncertainty(measure, similarities, centres, temperature, stride_m, side_m):
    """A scalar that grows with the window search's doubt about one panorama (localize.fine_uncertainty):
    covariance: sqrt(trace) of window_estimate's covariance (metres); entropy: of the softmax weights;
    best_weight: 1 - the best window's weight; best_similarity: minus the best similarity; margin: minus
    (the best similarity - the best among windows at Chebyshev distance >= MARGIN_SEPARATION x side_m
    from the best one's centre; 0 when no window is that far)."""
    similarities = np.asarray(similarities, np.float64)
    if measure == "covariance":
        return float(np.sqrt(np.trace(window_estimate(similarities, centres, temperature, stride_m)[1])))
    if measure == "entropy":
        weights = window_weights(similarities, temperature)
        return float(-np.sum(weights[weights > 0] * np.log(weights[weights > 0])))
    if measure == "best_weight":
        return float(1.0 - window_weights(similarities, temperature).max())
    if measure == "best_similarity":
        return float(-similarities.max())
    if measure == "margin":
        centres = np.asarray(centres, np.float64)
        best = int(np.argmax(similarities))
        distinct = np.abs(centres - centres[best]).max(axis=1) >= MARGIN_SEPARATION * side_m - EDGE_TOLERANCE_M
        return float(similarities[distinct].max() - similarities[best]) if distinct.any() else 0.0
    raise ValueError(f"unknown window uncertainty '{measure}': one of {', '.join(UNCERTAINTIES)}")


def gaussian_product(means_a, covs_a, means_b, covs_b):
    """The normalised product of Gaussians a and b, row by row: (means (N, 2), covariances (N, 2, 2)).
    Each input's covariance must be invertible."""
    precision_a, precision_b = np.linalg.inv(np.asarray(covs_a, np.float64)), np.linalg.inv(np.asarray(covs_b, np.float64))
    covs = np.linalg.inv(precision_a + precision_b)
    weighted = (np.einsum("nij,nj->ni", precision_a, np.asarray(means_a, np.float64))
                + np.einsum("nij,nj->ni", precision_b, np.asarray(means_b, np.float64)))
    return np.einsum("nij,nj->ni", covs, weighted), covs


def best_inside(window_centres, window_similarities, tile_centres, tile_widths):
    """(T,): for each square footprint (metric centre (T, 2), side (T,)), the highest similarity of a
    window whose centre lies in it; -inf where none does."""
    offsets = np.abs(np.asarray(window_centres, np.float64)[None] - np.asarray(tile_centres, np.float64)[:, None])
    inside = np.all(offsets <= np.asarray(tile_widths, np.float64)[:, None, None] / 2.0 + EDGE_TOLERANCE_M, axis=2)
    return np.where(inside, np.asarray(window_similarities, np.float64)[None], -np.inf).max(axis=1)


def checkpoint_key(checkpoint):
    """The descriptors' file key: the checkpoint's absolute path and the time its files were written."""
    checkpoint = os.path.abspath(str(checkpoint))
    stamp = [os.stat(p).st_mtime_ns for p in (checkpoint + ".index",) if os.path.exists(p)]
    return f"{checkpoint}@{stamp[0] if stamp else 0}"


def check_raster(db):
    """DataError unless db keeps the raster (and grid) windows are cut from."""
    raster = db.info.get("raster")
    if not raster or not os.path.exists(raster):
        raise DataError(f"localize.fine=windows cuts windows from {db.root}'s raster {raster}, which does not "
                        f"exist: put the raster back there, or set localize.fine=head")
    if "grid" not in db.info:
        raise DataError(f"{db.root} was built before tiles were cut on a ground-resolution grid: rebuild it "
                        f"with localize.py build, or set localize.fine=head")


class FineWindows:
    """The window grid over a database's raster, its images and per-checkpoint descriptors."""

    def __init__(self, db, stride_px, window_px=None):
        """stride_px: at the 640-px tile convention; window_px: side written (default: db's tile size)."""
        check_raster(db)
        self.db = db
        self.step = max(1, int(round(stride_px * db.tile_px / LABEL_SIDE)))
        self.window_px = min(int(window_px), db.tile_px) if window_px else db.tile_px
        size = db.tile_px
        height, width = db.info["grid"]["size_px"]
        rows, cols = np.meshgrid(np.arange(0, height - size + 1, self.step),
                                 np.arange(0, width - size + 1, self.step), indexing="ij")
        rows, cols = rows.ravel(), cols.ravel()
        folder = os.path.join(db.root, FINE_DIR, f"stride{self.step}_px{self.window_px}")
        files = np.array([f"window_{r}_{c}.png" for r, c in zip(rows, cols)])
        self.windows = windows_database(db, folder, rows, cols, files)
        self.folder = folder
        self.stride_m = self.step * float(np.median(db.width_m)) / size
        self._descriptors, self._known, self._key = None, None, None
        self._inside = {}

    def __len__(self):
        return len(self.windows)

    def inside(self, centre_m, width_m):
        """Ids of the windows whose centres lie in the square footprint (metric centre, side width_m)."""
        offsets = np.abs(self.windows.centres - np.asarray(centre_m, np.float64))
        return np.flatnonzero(np.all(offsets <= width_m / 2.0 + EDGE_TOLERANCE_M, axis=1))

    def inside_tile(self, db, tile):
        if db is not self.db:
            return self.inside(db.centres[tile], db.width_m[tile])
        if int(tile) not in self._inside:
            self._inside[int(tile)] = self.inside(db.centres[tile], db.width_m[tile])
        return self._inside[int(tile)]

    # ------------------------------------------------------------ descriptors
    def descriptor_path(self, checkpoint):
        digest = hashlib.sha1(checkpoint_key(checkpoint).encode()).hexdigest()[:16]
        return os.path.join(self.folder, f"descriptors_{digest}.npz")

    def _load(self, checkpoint):
        key = checkpoint_key(checkpoint)
        if self._key == key:
            return
        self._key, self._descriptors, self._known = key, None, np.zeros(len(self), bool)
        path = self.descriptor_path(checkpoint)
        if not os.path.exists(path):
            return
        stored = np.load(path, allow_pickle=False)
        if str(stored["checkpoint"]) != key:
            raise DataError(f"window descriptors {path} are checkpoint {stored['checkpoint']}'s, not {key}'s: "
                            f"delete the file")
        if len(stored["known"]) != len(self):
            raise DataError(f"window descriptors {path} hold {len(stored['known'])} windows, the grid has "
                            f"{len(self)}: delete the file")
        self._descriptors, self._known = stored["descriptors"], stored["known"].copy()

    def _save(self, checkpoint):
        os.makedirs(self.folder, exist_ok=True)
        path = self.descriptor_path(checkpoint)
        partial = path + ".partial.npz"
        np.savez(partial, checkpoint=self._key, descriptors=self._descriptors, known=self._known)
        os.replace(partial, path)

    def descriptors(self, model, ids, progress=False):
        """(len(ids), D) unit descriptors of windows ids by model's satellite branch: cut and described
        once, then read from the checkpoint's file."""
        ids = np.asarray(ids, np.int64)
        self._load(model.checkpoint)
        missing = np.unique(ids[~self._known[ids]]) if len(ids) else ids
        if len(missing):
            write_windows(self.windows, missing, self.window_px)
            computed = model.tile_descriptors([self.windows.tile_path(w) for w in missing], progress)
            if self._descriptors is None:
                self._descriptors = np.zeros((len(self), computed.shape[1]), np.float32)
            self._descriptors[missing] = computed
            self._known[missing] = True
            self._save(model.checkpoint)
        return self._descriptors[ids]

    def best_similarities(self, db, tiles, query, model):
        """(len(tiles),): the panorama's (descriptor `query`, by model) highest similarity to a window
        centred in each tile's footprint (localize.rerank=windows)."""
        inside = [self.inside_tile(db, t) for t in tiles]
        if not all(len(ids) for ids in inside):
            raise DataError(f"a tile of {db.root} holds no window centre at fine stride {self.step} px: lower "
                            f"localize.fine_stride_px")
        needed = np.unique(np.concatenate(inside))
        similarities = self.descriptors(model, needed) @ np.asarray(query, np.float32)
        return best_inside(self.windows.centres[needed], similarities, db.centres[tiles], db.width_m[tiles])

    # ------------------------------------------------------------ estimates
    def estimate(self, ids, similarities, temperature):
        """(mean, covariance), metric, of a panorama among windows ids with these similarities."""
        return window_estimate(similarities, self.windows.centres[ids], temperature, self.stride_m)

    def uncertainty(self, measure, ids, similarities, temperature):
        """window_uncertainty of a panorama among windows ids with these similarities (temperature: the
        softmax's of the weighted measures)."""
        return window_uncertainty(measure, similarities, self.windows.centres[ids], temperature, self.stride_m,
                                  float(np.median(self.windows.width_m)))

    def tile_outputs(self, db, tile_lists, panorama_descriptors, model, temperature, progress=False):
        """[(deltas (k, 2), sigmas (k, 2, 2))] in the 640-px delta convention: panorama i's window
        estimate in each of its tiles tile_lists[i] of db (whose grid the windows share)."""
        inside = {int(t): self.inside_tile(db, t) for ids in tile_lists for t in ids}
        empty = [t for t, ids in inside.items() if not len(ids)]
        if empty:
            raise DataError(f"tile {empty[0]} of {db.root} holds no window centre at fine stride "
                            f"{self.step} px: lower localize.fine_stride_px")
        needed = np.unique(np.concatenate(list(inside.values())))
        where = {w: n for n, w in enumerate(needed)}
        descriptors = self.descriptors(model, needed, progress)
        outputs = []
        for ids, query in zip(tile_lists, np.asarray(panorama_descriptors)):
            deltas, sigmas = [], []
            for t in ids:
                windows = inside[int(t)]
                similarities = descriptors[[where[w] for w in windows]] @ query
                mean, cov = self.estimate(windows, similarities, temperature)
                deltas.append(db.metric_to_delta(t, mean))
                sigmas.append(db.sigma_to_delta(t, cov))
            outputs.append((np.array(deltas).reshape(len(ids), 2), np.array(sigmas).reshape(len(ids), 2, 2)))
        return outputs
