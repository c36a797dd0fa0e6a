"""A checkpoint's outputs for localization, through the evaluation's one scan
(utils/evaluation/scan.py): tile and panorama descriptors, and the offset and Gaussian of each
panorama in each of its retrieved tiles (delta convention, 640 px)."""
import os

import cv2
import numpy as np

from utils.data.dataset import SplitIndex
from utils.data.splits import build_loader
from utils.errors import DataError
from utils.evaluation.inference import network_of_checkpoint, restore_network
from utils.evaluation.scan import Scanner
from utils.localization.database import training_ground_mpp
from utils.session.checkpoints import checkpoint_prefix

PANORAMA_RATIO_TOLERANCE = 0.01


def read_panorama(path):
    """The panorama as BGR uint8, checked: readable and 2:1 (equirectangular)."""
    image = cv2.imread(str(path)) if os.path.isfile(str(path)) else None
    if image is None:
        state = "cannot be decoded as an image" if os.path.exists(str(path)) else "does not exist"
        raise DataError(f"panorama {path} {state}: give a JPEG or PNG equirectangular panorama")
    height, width = image.shape[:2]
    if abs(width / height - 2.0) > 2.0 * PANORAMA_RATIO_TOLERANCE:
        raise DataError(f"panorama {path} is {width} x {height} px, not 2:1: give a full 360 x 180 degree "
                        f"equirectangular panorama (north at the centre column, as VIGOR's)")
    return image


def scan_index(tile_paths, panorama_paths, name):
    """A SplitIndex of tiles and panoramas without labels, for the scan."""
    s, n = len(tile_paths), len(panorama_paths)
    return SplitIndex(sat_paths=np.asarray(tile_paths, dtype=str), sat_gps=np.zeros((s, 2)),
                      sat_city=np.full(s, ""), grd_paths=np.asarray(panorama_paths, dtype=str),
                      grd_gps=np.zeros((n, 2)), grd_city=np.full(n, ""), labels=np.zeros((n, 4), np.int64),
                      deltas=np.zeros((n, 4, 2)), meters_per_pixel=np.zeros(s), name=name)


class LocalizationModel:
    """One checkpoint restored once; images are prepared as in training (utils/data/prefetch)."""

    def __init__(self, cfg, checkpoint):
        self.checkpoint = os.path.abspath(checkpoint_prefix(checkpoint))
        self.network = network_of_checkpoint(self.checkpoint)
        self.restored = restore_network(cfg, self.checkpoint, self.network)
        self.loader = build_loader(cfg)
        self.batch, self.workers = int(cfg.validation.scan_batch), int(cfg.data.workers)
        self.ground_mpp = training_ground_mpp(cfg)     # the tiles' ground resolution it was trained on

    def close(self):
        self.restored.sess.close()

    def _scanner(self, index, progress):
        return Scanner(self.restored, self.loader, index, self.batch, workers=self.workers, progress=progress)

    def tile_descriptors(self, paths, progress=True):
        scan = self._scanner(scan_index(paths, [], "reference tiles"), progress).tiles()
        return _unit(scan.values["desc"])

    def panorama_descriptors(self, paths, progress=False):
        for path in paths:
            read_panorama(path)                     # readable and 2:1, or a clear error
        scan = self._scanner(scan_index([], paths, "query panoramas"), progress).panoramas()
        return _unit(scan.values["desc"])

    def tile_outputs(self, tile_paths, panorama_paths, keep_heatmaps=0, progress=False):
        """Panorama i in tile i: offsets (n, 2), sigma (n, 2, 2) or None, heatmaps (first keep_heatmaps) or None."""
        if not self.restored.localizes:
            return np.zeros((len(tile_paths), 2)), None, None
        scanner = self._scanner(scan_index(tile_paths, panorama_paths, "query pairs"), progress)
        scan = scanner.pairs(np.arange(len(tile_paths)), keep_heatmaps=keep_heatmaps, desc="offsets")
        return scan.values["offsets"], scan.values.get("sigma"), scan.extra.get("heatmaps")


def _unit(descriptors):
    norms = np.linalg.norm(descriptors, axis=1, keepdims=True)
    return (descriptors / np.maximum(norms, 1e-12)).astype(np.float32)
