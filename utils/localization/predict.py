"""A checkpoint's outputs for localization, through the evaluation's one scan
(utils/evaluation/scan.py): tile and panorama descriptors, and the offset and Gaussian of each
panorama in each of its retrieved tiles (delta convention, 640 px)."""
import os

import cv2
import numpy as np

from utils.data.dataset import SplitIndex
from utils.data.sar_raster import SAR_KIND, read_sar_db
from utils.data.splits import SPACENET6, build_loader
from utils.errors import CheckpointError, DataError
from utils.evaluation.inference import network_of_checkpoint, restore_network
from utils.evaluation.scan import Scanner
from utils.localization.database import training_ground_mpp
from utils.session.checkpoints import checkpoint_prefix

RATIO_TOLERANCE = 0.01
MODALITIES = {   # query modality -> (width / height it must have, what it is, what to give)
    "street": (2.0, "a street panorama is 2:1", "give a full 360 x 180 degree equirectangular panorama "
                                                 "(north at the centre column, as VIGOR's)"),
    "drone": (1.0, "a drone view is square", "give the drone camera's frame cropped to its centre square "
                                              "(as University-1652's)"),
    "sar": (1.0, "a SAR tile is square", "give a SpaceNet 6 SAR-Intensity tile (4 float32 bands in dB, "
                                         "geocoded on the optical grid)"),
}
KINDS = {"street": "street panorama", "drone": "drone view", "sar": SAR_KIND}
TRAINING = {"street": "panoramas (train_first_E_1.py on VIGOR's format)", "drone": "views (train_university1652.py)",
            "sar": "tiles (train_first_E_1.py --part safa with data.dataset spacenet6 or synthetic_spacenet6)"}


def read_query(path, modality="street"):
    """The query image, checked: readable, and shaped as its modality's images are. BGR uint8 for
    street and drone; (4, H, W) float32 dB for sar."""
    if modality not in MODALITIES:
        raise ValueError(f"modality must be one of {', '.join(MODALITIES)}, not {modality!r}")
    ratio, shape, remedy = MODALITIES[modality]
    kind = KINDS[modality]
    if modality == "sar":
        image = read_sar_db(path)             # a GeoTIFF of 4 float32 dB bands, or a one-line error naming it
        height, width = image.shape[1:]
    else:
        image = cv2.imread(str(path)) if os.path.isfile(str(path)) else None
        if image is None:
            state = "cannot be decoded as an image" if os.path.exists(str(path)) else "does not exist"
            raise DataError(f"{kind} {path} {state}: give a JPEG or PNG image")
        height, width = image.shape[:2]
    if abs(width / height - ratio) > ratio * RATIO_TOLERANCE:
        raise DataError(f"{kind} {path} is {width} x {height} px, not {'2:1' if ratio == 2.0 else 'square'}: "
                        f"{shape}; {remedy}")
    return image


def read_panorama(path):
    """The street panorama as BGR uint8, checked: readable and 2:1 (equirectangular)."""
    return read_query(path, "street")


def scan_index(tile_paths, panorama_paths, name):
    """A SplitIndex of tiles and panoramas without labels, for the scan."""
    s, n = len(tile_paths), len(panorama_paths)
    return SplitIndex(sat_paths=np.asarray(tile_paths, dtype=str), sat_gps=np.zeros((s, 2)),
                      sat_city=np.full(s, ""), grd_paths=np.asarray(panorama_paths, dtype=str),
                      grd_gps=np.zeros((n, 2)), grd_city=np.full(n, ""), labels=np.zeros((n, 4), np.int64),
                      deltas=np.zeros((n, 4, 2)), meters_per_pixel=np.zeros(s), name=name)


def trained_modality(cfg, network):
    """The query modality a checkpoint of `network` trained with `cfg` takes."""
    if network == "two_view":
        return cfg.data.query_view
    return "sar" if cfg.data.dataset in SPACENET6 else "street"


def check_modality(cfg, checkpoint, network, modality):
    """DataError unless the checkpoint was trained on the query modality: drone views need
    University-1652's two-view network trained on drone queries, SAR tiles a network trained on
    SpaceNet 6 (its config's data.dataset), street panoramas any other."""
    trained_on = trained_modality(cfg, network)
    if modality != trained_on:
        raise DataError(f"checkpoint {checkpoint} was trained on {trained_on} queries "
                        f"({'University-1652 two-view network' if network == 'two_view' else network}, "
                        f"config {cfg.config_path}): query it with --modality {trained_on}, or give a checkpoint "
                        f"trained on {modality} {TRAINING[modality]}")


class LocalizationModel:
    """One checkpoint restored once; images are prepared as in training (utils/data/prefetch)."""

    def __init__(self, cfg, checkpoint, modality=None):
        """modality: of the queries ("street", "drone" or "sar"), checked against the checkpoint's
        training; None when only the reference tiles are described (index)."""
        self.checkpoint = os.path.abspath(checkpoint_prefix(checkpoint))
        self.network = network_of_checkpoint(self.checkpoint)
        if modality is not None:
            check_modality(cfg, self.checkpoint, self.network, modality)
        self.modality = modality or "street"
        self.restored = restore_network(cfg, self.checkpoint, self.network)
        self.loader = build_loader(cfg)
        self.batch, self.workers = int(cfg.validation.scan_batch), int(cfg.data.workers)
        self.ground_mpp = training_ground_mpp(cfg)     # the tiles' ground resolution it was trained on
        height, width = cfg.data.sat_size               # side tiles are fed at (None: polar or not square)
        self.sat_px = int(height) if height == width and not cfg.data.polar else None

    def close(self):
        self.restored.sess.close()

    def _scanner(self, index, progress):
        return Scanner(self.restored, self.loader, index, self.batch, workers=self.workers, progress=progress)

    def tile_descriptors(self, paths, progress=True):
        scan = self._scanner(scan_index(paths, [], "reference tiles"), progress).tiles()
        return _unit(scan.values["desc"])

    def panorama_descriptors(self, paths, progress=False):
        for path in paths:
            read_query(path, self.modality)         # readable and shaped as the modality's, or a clear error
        scan = self._scanner(scan_index([], paths, "query panoramas"), progress).panoramas()
        return _unit(scan.values["desc"])

    def tile_outputs(self, tile_paths, panorama_paths, keep_heatmaps=0, progress=False):
        """Panorama i in tile i: offsets (n, 2), sigma (n, 2, 2) or None, heatmaps (first keep_heatmaps) or None."""
        if not self.restored.localizes:
            return np.zeros((len(tile_paths), 2)), None, None
        scanner = self._scanner(scan_index(tile_paths, panorama_paths, "query pairs"), progress)
        scan = scanner.pairs(np.arange(len(tile_paths)), keep_heatmaps=keep_heatmaps, desc="offsets")
        return scan.values["offsets"], scan.values.get("sigma"), scan.extra.get("heatmaps")


def fine_checkpoint_prefix(checkpoint):
    """localize.fine_checkpoint's prefix, or a one-line CheckpointError when there is none."""
    try:
        return checkpoint_prefix(str(checkpoint))
    except CheckpointError:
        raise CheckpointError(f"localize.fine_checkpoint {checkpoint} is not a checkpoint (no .index file there): "
                              f"give a checkpoint folder or prefix, or set localize.fine_checkpoint to ''") from None


def open_fine_model(cfg, checkpoint, modality="street"):
    """localize.fine_checkpoint's LocalizationModel, restored with cfg's network: a one-line
    CheckpointError when there is no checkpoint or it does not fit the config's network."""
    prefix = fine_checkpoint_prefix(checkpoint)
    try:
        return LocalizationModel(cfg, prefix, modality)
    except CheckpointError as error:
        detail = "; ".join(line.strip() for line in str(error).splitlines()[1:3])
        raise CheckpointError(f"localize.fine_checkpoint {prefix} does not match the config's network ({detail}): "
                              f"give a checkpoint trained with the config's model widths and image sizes") from None


def _unit(descriptors):
    norms = np.linalg.norm(descriptors, axis=1, keepdims=True)
    return (descriptors / np.maximum(norms, 1e-12)).astype(np.float32)
