"""Run a trained checkpoint over a split: descriptors, retrieval, offsets and uncertainty.

The network is restored into its own graph and scanned with utils/evaluation/scan.py (the same
scan the trainer validates with). Offsets and Sigma are in the 640-pixel delta convention (see
scan.py). Retrieval runs once here; its result is handed on to the report.
"""
import numpy as np
import tensorflow.compat.v1 as tf

from model import networks
from model.inputs import Inputs
from utils.data.splits import build_loader, load_splits
from utils.errors import DataError
from utils.evaluation.retrieval import evaluation_search
from utils.evaluation.scan import Scanner, ScanNetwork, descriptor_pass, readable_subset
from utils.session import checkpoints as ckpt
from utils.session.distribute import Distribution, ShardedSession


def network_of_checkpoint(prefix):
    """Which of model/networks.py's builders wrote a checkpoint, read off its variable names
    (works for the original code's checkpoints too): SAMP has Cholesky heads, VIGOR's SAFA with
    offsets has the offset MLP (fc_delta), Siamese-VGG its shared fc layer under Gap_local,
    University-1652's two-view network its building classifier, plain SAFA none of these."""
    names = [name for name, _ in tf.train.list_variables(prefix)]
    if any(name.startswith("classifier/") for name in names):
        return "two_view"
    if any("cholesky_block" in name for name in names):
        return "samp"
    if any(name.startswith("fc_delta") or "/fc_delta" in name for name in names):
        return "safa_offset"
    if any(name.startswith("Gap_local/") for name in names):
        return "siamese_vgg"
    return "safa"


def restore_network(cfg, prefix, network):
    """A ScanNetwork of `network` (a builder of model/networks.py: 'siamese_vgg', 'safa', 'safa_offset', 'samp',
    'two_view') holding a checkpoint's weights; close its session when done."""
    dist = Distribution(cfg)  # under a strategy each replica scans its slice of every batch
    graph = tf.Graph()
    with graph.as_default(), dist.scope():
        tf.set_random_seed(int(cfg.seed))   # the restore overwrites the initialisers, but under
        # TF_DETERMINISTIC_OPS=1 (set by demo.py) TensorFlow refuses random ops in a graph without a seed
        inputs = Inputs(cfg.data.sat_size, cfg.data.grd_size, batch_size=0,
                        with_semi=network in ("safa_offset", "samp"))
        build = getattr(networks, network)
        net = dist.first_replica(dist.replicate(lambda: dist.gather_outputs(build(dist.shard_inputs(inputs), cfg))))
        variables = tf.global_variables()
    sess = dist.session(graph)
    with graph.as_default():
        ckpt.restore_by_name(sess, variables, prefix)
    if dist.enabled:
        sess = ShardedSession(sess, dist, -(-cfg.validation.scan_batch // dist.replicas) * dist.replicas)
    return ScanNetwork(sess, inputs, net, name=f"evaluation of {prefix}")


def _located(scanner, sat_order, keep_heatmaps, desc):
    scan = scanner.pairs(sat_order, keep_heatmaps=keep_heatmaps, desc=desc)
    if scan.skipped:
        raise DataError(f"{scan.skipped} image(s) became unreadable between the descriptor pass and the "
                        f"offset pass ({desc}); check the disk and run the evaluation again")
    return scan


def _offsets_in_retrieved(scanner, index, top1, offsets_positive):
    """Offsets in each panorama's top-1 tile: where that is the positive tile, the positive pass's;
    the others scanned (a second pass over every pair gives the same offsets, up to the rounding
    of another batch composition: measured within 0.0008 m)."""
    offsets = offsets_positive.copy()
    wrong = top1 != index.labels[:, 0]
    if wrong.any():
        others, _, rows = readable_subset(index, np.zeros(index.num_sat, bool), ~wrong)
        offsets[rows] = _located(scanner.over(others), top1[rows], 0, "offsets (retrieved)").values["offsets"]
    return offsets


def compute_outputs(cfg, checkpoint, split="test", network=None, keep_heatmaps=8, progress=True):
    """Everything evaluate.py needs from a checkpoint, as numpy arrays.

    Returns index (the split without unreadable images, scan.readable_subset; the split itself
    when every image reads), skips (counts), sat_desc, grd_desc (rows of that index), retrieval
    (its search result, k=1), top1, offsets (in the retrieved tile), offsets_positive (in the
    true tile: fine localization) and, for SAMP, sigma (of the positive-tile predictions) and a
    few heatmaps.
    """
    prefix = ckpt.checkpoint_prefix(checkpoint)
    network = network or network_of_checkpoint(prefix)
    train, test = load_splits(cfg)
    restored = restore_network(cfg, prefix, network)
    try:
        scanner = Scanner(restored, build_loader(cfg, (train, test)), test if split == "test" else train,
                          cfg.validation.scan_batch, workers=cfg.data.workers,
                          on_bad_sample=cfg.data.on_bad_sample, progress=progress)
        described = descriptor_pass(scanner)
        index = described.readable
        sat_desc, grd_desc = described.readable_sat, described.readable_grd
        retrieved = evaluation_search(grd_desc, sat_desc, index.labels)
        top1 = retrieved.topk[:, 0]
        outputs = {"index": index, "skips": described.skips, "sat_desc": sat_desc, "grd_desc": grd_desc,
                   "retrieval": retrieved, "top1": top1, "network": network}
        if restored.localizes:
            scanner = scanner.over(index)
            given = _located(scanner, index.labels[:, 0], keep_heatmaps, "offsets (positive)")
            outputs["offsets"] = _offsets_in_retrieved(scanner, index, top1, given.values["offsets"])
            outputs["offsets_positive"] = given.values["offsets"]
            if "sigma" in given.values:
                outputs["sigma"] = given.values["sigma"]
                outputs["heatmaps"] = given.extra.get("heatmaps")
        return outputs
    finally:
        restored.sess.close()
