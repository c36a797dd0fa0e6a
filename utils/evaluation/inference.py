"""Run a trained checkpoint over a split: descriptors, retrieval, offsets and uncertainty.

Offsets are returned in the 640-pixel convention of VIGOR's labels (delta), whatever the
network's input size; Sigma likewise, in delta coordinates (row offset, column offset
pointing left), so that `delta_true - delta_pred` is the error it describes.
"""

import numpy as np
import tensorflow.compat.v1 as tf

from tqdm import tqdm

from model import networks
from model.inputs import Inputs
from model.uncertainty import get_sigma, get_spatial_mean
from utils.training import checkpoints as ckpt
from utils.data.splits import build_loader, load_splits
from utils.data.prefetch import scan_grd, scan_pairs, scan_sat
from utils.evaluation.retrieval import search

def network_of_checkpoint(prefix):
    """Which of model/networks.py's builders wrote a checkpoint, read off its variable names
    (works for the original code's checkpoints too): SAMP has Cholesky heads, VIGOR's SAFA with
    offsets has the offset MLP (fc_delta), plain SAFA has neither."""
    names = [name for name, _ in tf.train.list_variables(prefix)]
    if any("cholesky_block" in name for name in names):
        return "samp"
    if any(name.startswith("fc_delta") or "/fc_delta" in name for name in names):
        return "safa_offset"
    return "safa"


def heatmap_to_delta(row, col, heatmap_side):
    """Spatial mean (heatmap pixels) -> delta (640 px): row = 320 + d0, column = 319 - d1 at 640."""
    scale = heatmap_side / 640.0
    return np.stack([row / scale - 320.0, 319.0 - col / scale], axis=-1)


def sigma_to_delta(sigma, heatmap_side):
    """Sigma over (row, column) in heatmap pixels -> over (d0, d1) in 640 px (d1 runs against columns)."""
    scale = heatmap_side / 640.0
    flip = np.array([[1.0, -1.0], [-1.0, 1.0]])
    return sigma * flip / scale ** 2


class Predictor:
    """One network restored from a checkpoint, with the fetches evaluation needs."""

    def __init__(self, cfg, checkpoint, network):
        self.cfg, self.network = cfg, network
        self.graph = tf.Graph()
        with self.graph.as_default():
            tf.set_random_seed(int(cfg.seed))   # initialisers are overwritten by the restore; with
            # TF_DETERMINISTIC_OPS=1 (demo.py) TensorFlow refuses random ops in a graph without a seed
            self.inputs = Inputs(cfg.data.sat_size, cfg.data.grd_size, batch_size=0,
                                 with_semi=network != "safa")
            self.net = getattr(networks, network)(self.inputs, cfg)
            if network == "samp":
                row, col = get_spatial_mean(self.net["heatmap"])
                self.net["row"], self.net["col"] = row, col
                self.net["sigma"] = get_sigma(self.net["L"])
                self.heatmap_side = int(self.net["heatmap"].shape[1])
            variables = tf.global_variables()
        self.sess = tf.Session(graph=self.graph)
        ckpt.restore_by_name(self.sess, variables, checkpoint)

    def close(self):
        self.sess.close()

    def _sat_feed(self, sat):
        feed = {self.inputs.sat: sat}
        if self.inputs.sat_semi is not None:
            feed[self.inputs.sat_semi] = sat  # the semi branch is not used for these outputs
        return feed

    def sat_descriptors(self, images):
        return self.sess.run(self.net["sat_global"], self._sat_feed(images))

    def grd_descriptors(self, images):
        return self.sess.run(self.net["grd_global"], {self.inputs.grd: images})

    def pair_outputs(self, sat, grd):
        """Offset (and Sigma, heatmap for SAMP) of each panorama inside the tile paired with it."""
        feed = self._sat_feed(sat)
        feed[self.inputs.grd] = grd
        if self.network == "safa":
            return {"offsets": np.zeros((len(grd), 2))}
        if self.network == "safa_offset":
            return {"offsets": self.sess.run(self.net["delta"], feed) * 320.0}
        out = self.sess.run({k: self.net[k] for k in ("row", "col", "sigma", "heatmap")}, feed)
        return {"offsets": heatmap_to_delta(out["row"], out["col"], self.heatmap_side),
                "sigma": sigma_to_delta(out["sigma"], self.heatmap_side),
                "heatmap": out["heatmap"][..., 0]}


def _pair_pass(predictor, loader, index, sat_order, batch, keep_heatmaps, desc, progress):
    parts = {}
    kept = []
    for sat, grd in tqdm(scan_pairs(loader, index, sat_order, batch), desc=desc, leave=False,
                         disable=not progress, total=-(-len(sat_order) // batch)):
        out = predictor.pair_outputs(sat, grd)
        heatmap = out.pop("heatmap", None)
        if heatmap is not None and sum(len(h) for h in kept) < keep_heatmaps:
            kept.append(heatmap)
        for key, value in out.items():
            parts.setdefault(key, []).append(value)
    result = {k: np.concatenate(v) for k, v in parts.items()}
    if kept:
        result["heatmaps"] = np.concatenate(kept)[:keep_heatmaps]
    return result


def compute_outputs(cfg, checkpoint, split="test", network=None, keep_heatmaps=8, progress=True):
    """Everything evaluate.py needs from a checkpoint, as numpy arrays.

    Returns sat_desc, grd_desc, top1 (retrieved tile per panorama), offsets (in the retrieved
    tile), offsets_positive (in the true tile: fine localization) and, for SAMP, sigma (of the
    positive-tile predictions) and a few heatmaps.
    """
    network = network or network_of_checkpoint(ckpt.checkpoint_prefix(checkpoint))
    train, test = load_splits(cfg)
    index = test if split == "test" else train
    loader = build_loader(cfg)
    batch = cfg.validation.scan_batch
    predictor = Predictor(cfg, ckpt.checkpoint_prefix(checkpoint), network)
    try:
        sat_desc = np.concatenate([predictor.sat_descriptors(x) for x in tqdm(
            scan_sat(loader, index, batch), desc="tiles", leave=False, disable=not progress)])
        grd_desc = np.concatenate([predictor.grd_descriptors(x) for x in tqdm(
            scan_grd(loader, index, batch), desc="panoramas", leave=False, disable=not progress)])
        retrieved = search(grd_desc.astype(np.float32), sat_desc.astype(np.float32), index.labels, k=1)
        top1 = retrieved.topk[:, 0]
        outputs = {"sat_desc": sat_desc, "grd_desc": grd_desc, "top1": top1, "network": network}
        if network != "safa":
            found = _pair_pass(predictor, loader, index, top1, batch, 0, "offsets (retrieved)", progress)
            given = _pair_pass(predictor, loader, index, index.labels[:, 0], batch, keep_heatmaps,
                               "offsets (positive)", progress)
            outputs["offsets"] = found["offsets"]
            outputs["offsets_positive"] = given["offsets"]
            if "sigma" in given:
                outputs["sigma"] = given["sigma"]
                outputs["heatmaps"] = given.get("heatmaps")
        return outputs
    finally:
        predictor.close()
