"""A LocalizationModel whose outputs are kept on disk: panorama descriptors per panorama, offsets
and Sigma per (tile, panorama) pair. Trying fusion, re-ranking or predictor settings then reruns
numpy only; the network runs once for the pairs it has not seen.

Entries are keyed by the files' absolute paths and modification times, so a rebuilt database
or a re-rendered panorama is computed again; the cache file names the checkpoint it holds.
"""
import os

import numpy as np

from utils.errors import DataError

CACHE_FILE = "outputs.npz"


def file_key(path):
    path = os.path.abspath(str(path))
    return f"{path}@{os.stat(path).st_mtime_ns}"


class CachedModel:
    """Wraps a LocalizationModel (same methods); save() writes what was computed."""

    def __init__(self, model, folder):
        self.model, self.folder = model, folder
        self.checkpoint, self.network, self.ground_mpp = model.checkpoint, model.network, model.ground_mpp
        self.sat_px = getattr(model, "sat_px", None)
        self.descriptors, self.pairs = {}, {}      # key -> (D,); (tile key, panorama key) -> (delta, sigma)
        self.changed = False
        self._load()

    @property
    def path(self):
        return os.path.join(self.folder, CACHE_FILE)

    def _load(self):
        if not os.path.exists(self.path):
            return
        stored = np.load(self.path, allow_pickle=False)
        if str(stored["checkpoint"]) != self.checkpoint:
            raise DataError(f"output cache {self.path} holds checkpoint {stored['checkpoint']}, not "
                            f"{self.checkpoint}: delete it or give another cache folder")
        self.descriptors = dict(zip(stored["panorama_keys"].tolist(), stored["panorama_descriptors"]))
        sigmas = stored["sigmas"] if stored["has_sigma"] else [None] * len(stored["deltas"])
        self.pairs = {(t, p): (d, s) for t, p, d, s in zip(stored["tile_keys"].tolist(),
                                                         stored["pair_panorama_keys"].tolist(), stored["deltas"], sigmas)}

    def save(self):
        if not self.changed:
            return
        os.makedirs(self.folder, exist_ok=True)
        keys = list(self.pairs)
        values = [self.pairs[k] for k in keys]
        has_sigma = bool(values) and values[0][1] is not None
        partial = self.path + ".partial.npz"
        np.savez_compressed(partial, checkpoint=self.checkpoint,
                 panorama_keys=np.array(list(self.descriptors), dtype=str),
                 panorama_descriptors=np.array(list(self.descriptors.values()), np.float32),
                 tile_keys=np.array([t for t, _ in keys], dtype=str),
                 pair_panorama_keys=np.array([p for _, p in keys], dtype=str),
                 deltas=np.array([d for d, _ in values], np.float64).reshape(len(keys), 2),
                 sigmas=np.array([s for _, s in values], np.float64).reshape(len(keys), 2, 2)
                 if has_sigma else np.zeros((0, 2, 2)),
                 has_sigma=has_sigma)
        os.replace(partial, self.path)
        self.changed = False

    def close(self):
        self.save()
        self.model.close()

    def tile_descriptors(self, paths, progress=True):
        return self.model.tile_descriptors(paths, progress)

    def panorama_descriptors(self, paths, progress=False):
        keys = [file_key(p) for p in paths]
        missing = sorted({(k, str(p)) for k, p in zip(keys, paths) if k not in self.descriptors})
        if missing:
            computed = self.model.panorama_descriptors([p for _, p in missing], progress)
            self.descriptors.update(zip([k for k, _ in missing], computed))
            self.changed = True
        return np.stack([self.descriptors[k] for k in keys]).astype(np.float32)

    def tile_outputs(self, tile_paths, panorama_paths, keep_heatmaps=0, progress=False):
        """As LocalizationModel.tile_outputs; heatmaps are not cached (keep_heatmaps > 0 runs the network)."""
        if keep_heatmaps:
            return self.model.tile_outputs(tile_paths, panorama_paths, keep_heatmaps, progress)
        keys = [(file_key(t), file_key(p)) for t, p in zip(tile_paths, panorama_paths)]
        missing = {}
        for key, tile, panorama in zip(keys, tile_paths, panorama_paths):
            if key not in self.pairs:
                missing[key] = (str(tile), str(panorama))
        if missing:
            deltas, sigmas, _ = self.model.tile_outputs([t for t, _ in missing.values()],
                                                        [p for _, p in missing.values()], 0, progress)
            for n, key in enumerate(missing):
                self.pairs[key] = (deltas[n], None if sigmas is None else sigmas[n])
            self.changed = True
        if not keys:
            return np.zeros((0, 2)), None, None
        deltas = np.array([self.pairs[k][0] for k in keys], np.float64)
        sigmas = None if self.pairs[keys[0]][1] is None else np.array([self.pairs[k][1] for k in keys], np.float64)
        return deltas, sigmas, None
