"""Run a trained checkpoint over a split: descriptors, retrieval, offsets and uncertainty.

The network is restored into its own graph and scanned with utils/evaluation/scan.py (the same
scan the trainer validates with). Offsets and Sigma are in the 640-pixel delta convention; see
scan.py. Retrieval runs once here, and its result is handed on to the report.
"""
import os

import numpy as np
import tensorflow.compat.v1 as tf

from model import networks
from model.inputs import Inputs
from utils.data.dataset import DataError
from utils.data.splits import build_loader, load_splits
from utils.evaluation.retrieval import search
from utils.evaluation.scan import ScanNetwork, Scanner, descriptor_pass
from utils.training import checkpoints as ckpt

tf.get_logger().setLevel("ERROR")
tf.disable_v2_behavior()  # graph mode: placeholders, Session, Saver

NETWORK_OF_STAGE = {"E_1a": "safa", "E_1b": "safa_offset", "E_2_1": "samp", "E_2_2": "samp", "E_3": "samp"}


def restore_network(cfg, checkpoint, network):
    """A ScanNetwork of `network` ('safa', 'safa_offset', 'samp') with a checkpoint's weights;
    close its session when done."""
    graph = tf.Graph()
    with graph.as_default():
        inputs = Inputs(cfg.data.sat_size, cfg.data.grd_size, batch_size=0, with_semi=network != "safa")
        net = getattr(networks, network)(inputs, cfg)
        variables = tf.global_variables()
    sess = tf.Session(graph=graph)
    ckpt.restore_by_name(sess, variables, checkpoint)
    return ScanNetwork(sess, inputs, net)


def network_of(checkpoint, stage=None, network=None):
    """The network a checkpoint holds: given, or from its stage (runs/<experiment>/<stage>/<epoch>)."""
    if network:
        return network
    if stage is None:
        parent = os.path.basename(os.path.dirname(os.path.normpath(checkpoint)))
        stage = parent if parent in NETWORK_OF_STAGE else None
    return NETWORK_OF_STAGE.get(stage, "samp")


def _located(scanner, sat_order, keep_heatmaps, desc):
    scan = scanner.pairs(sat_order, keep_heatmaps=keep_heatmaps, desc=desc)
    if scan.skipped:
        raise DataError(f"{scan.skipped} image(s) became unreadable between the descriptor pass and the "
                        f"offset pass ({desc}); check the disk and run the evaluation again")
    return scan


def compute_outputs(cfg, checkpoint, split="test", network=None, stage=None, keep_heatmaps=8, progress=True):
    """Everything evaluate.py needs from a checkpoint, as numpy arrays.

    Returns index (the split without unreadable images, see scan.readable_subset; the split
    itself when all images read), skips (counts), sat_desc, grd_desc (rows of that index),
    retrieval (its search result, k=1), top1, offsets (in the retrieved tile), offsets_positive
    (in the true tile: fine localization) and, for SAMP, sigma (of the positive-tile
    predictions) and a few heatmaps.
    """
    network = network_of(checkpoint, stage, network)
    train, test = load_splits(cfg)
    full = test if split == "test" else train
    restored = restore_network(cfg, ckpt.checkpoint_prefix(checkpoint), network)
    try:
        scanner = Scanner(restored, build_loader(cfg), full, int(cfg.validation.scan_batch),
                          workers=int(cfg.data.workers), on_bad_sample=cfg.data.on_bad_sample, progress=progress)
        described = descriptor_pass(scanner)
        index = described.readable
        sat_desc, grd_desc = described.readable_sat, described.readable_grd
        retrieved = search(grd_desc, sat_desc, index.labels, k=1)
        top1 = retrieved.topk[:, 0]
        outputs = {"index": index, "skips": described.skips, "sat_desc": sat_desc, "grd_desc": grd_desc,
                   "retrieval": retrieved, "top1": top1, "network": network}
        if restored.localizes:
            scanner = scanner.over(index)
            found = _located(scanner, top1, 0, "offsets (retrieved)")
            given = _located(scanner, index.labels[:, 0], keep_heatmaps, "offsets (positive)")
            outputs["offsets"] = found.values["offsets"]
            outputs["offsets_positive"] = given.values["offsets"]
            if "sigma" in given.values:
                outputs["sigma"] = given.values["sigma"]
                outputs["heatmaps"] = given.extra.get("heatmaps")
        return outputs
    finally:
        restored.sess.close()
