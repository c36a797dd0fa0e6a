"""A checkpoint's outputs for localization, through the evaluation's Predictor: tile and panorama
descriptors, and each tile's offset and Gaussian for one panorama (delta convention, 640 px)."""
import os

import cv2
import numpy as np
from tqdm import tqdm

from utils.data.dataset import DataError
from utils.data.splits import build_loader
from utils.evaluation.inference import NETWORK_OF_STAGE, Predictor
from utils.training.checkpoints import CheckpointError, checkpoint_prefix

PANORAMA_RATIO_TOLERANCE = 0.01


def network_of_checkpoint(checkpoint):
    """runs/<experiment>/<stage>/<epoch>: the stage names the network; anything else is SAMP."""
    parent = os.path.basename(os.path.dirname(os.path.normpath(checkpoint)))
    return NETWORK_OF_STAGE.get(parent, "samp")


def require_finite(array, what, count_of):
    """CheckpointError naming how many rows of `array` hold a NaN or an infinity."""
    array = np.asarray(array)
    bad = ~np.isfinite(array.reshape(len(array), -1)).all(axis=1)
    if bad.any():
        raise CheckpointError(f"the checkpoint gives NaN or infinite {what} for {int(bad.sum())} of {len(array)} "
                              f"{count_of}: its weights are broken; use an earlier epoch or retrain")
    return array


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


class LocalizationModel:
    """One checkpoint restored once; images are prepared as in training (utils/data/prefetch)."""

    def __init__(self, cfg, checkpoint):
        self.checkpoint = os.path.abspath(checkpoint_prefix(checkpoint))
        self.network = network_of_checkpoint(checkpoint)
        self.predictor = Predictor(cfg, self.checkpoint, self.network)
        self.loader = build_loader(cfg)
        self.batch = int(cfg.validation.scan_batch)

    def close(self):
        self.predictor.close()

    def tile_descriptors(self, paths, progress=True):
        parts = []
        for start in tqdm(range(0, len(paths), self.batch), desc="tile descriptors", disable=not progress,
                          leave=False):
            images = np.stack([self.loader.load_sat(p) for p in paths[start:start + self.batch]])
            parts.append(self.predictor.sat_descriptors(images))
        return _unit(require_finite(np.concatenate(parts), "descriptors", "tiles"))

    def panorama_input(self, path):
        read_panorama(path)                       # readable and 2:1, or a clear error
        return self.loader.load_grd(path)

    def panorama_descriptors(self, images):
        return _unit(require_finite(self.predictor.grd_descriptors(np.stack(images)), "descriptors", "panoramas"))

    def tile_outputs(self, tile_paths, panorama):
        """offsets (k, 2), sigma (k, 2, 2) or None, heatmap (k, H, W) or None of one panorama in k tiles."""
        sat = np.stack([self.loader.load_sat(p) for p in tile_paths])
        grd = np.repeat(panorama[None], len(tile_paths), axis=0)
        out = self.predictor.pair_outputs(sat, grd)
        require_finite(out["offsets"], "offsets", "tiles")
        if "sigma" in out:
            require_finite(out["sigma"], "Sigma", "tiles")
        return out["offsets"], out.get("sigma"), out.get("heatmap")


def _unit(descriptors):
    norms = np.linalg.norm(descriptors, axis=1, keepdims=True)
    return (descriptors / np.maximum(norms, 1e-12)).astype(np.float32)
