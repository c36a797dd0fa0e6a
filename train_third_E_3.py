"""Stage E_3 (train_third_E_3.py): propagate the ambiguity into the retrieval loss.

Starts from E_2_2's last epoch (all but the global step). First a pass over every training
panorama measures the uncertainty u of each of its three semi-positive tiles (the sum of the
axes of E_2_2's Gaussian, in 640-pixel units). Training then weights the IOU-ratio loss of a
semi-positive by W = 1 + W_z * w(u), with w(u) = 1 / (1 + c exp(a (b - u))) and
W_z = ratio * sim_pos / sim_semi - 1: an ambiguous semi-positive (large u) is pulled less
towards its IOU ratio. Learning rate 1e-6 decayed by 0.9 per epoch, no mining.
"""
if __name__ == "__main__":  # a Ctrl-C while TensorFlow loads: one line, exit 130 (utils/startup.py)
    from utils.startup import begin
    begin()

import os
import sys

import numpy as np
import tensorflow.compat.v1 as tf

from model import networks
from model.losses import compute_loss_continuous_IOU_weighted, get_weights, semi_positive_weight
from utils.config import load_config, stage_argument_parser
from utils.training.stage import Stage, StageLosses
from utils.training.trainer import run_stage

UNCERTAINTY_FILE = "semi_uncertainty.npy"


def weighted_iou_losses(net, inputs, cfg):
    weight = tf.placeholder(tf.float32, [None], name="W_")
    loss, loss_tri, loss_iou, convince = compute_loss_continuous_IOU_weighted(
        net["sat_global"], net["sat_global_semi"], net["grd_global"], inputs.ratio, weight,
        batch_size=inputs.batch_size)
    return StageLosses(
        terms={"loss": loss, "loss_tri": loss_tri, "loss_iou": loss_iou, "convince": tf.reduce_mean(convince)},
        auxiliary={"W_": weight,
                   "W_z": get_weights(net["sat_global"], net["sat_global_semi"], net["grd_global"], inputs.ratio)})


def semi_positive_uncertainties(trainer):
    """u[i, k-1] for training panorama i and its semi-positive label column k = 1..3 (over the training
    split, where the original indexed a test-split pass with training indices: docs/FAITHFULNESS.md, T3).
    The one scan's semi branch (T13); u = 0 where an image is unreadable in skip mode (training
    leaves such panoramas out anyway)."""
    index = trainer.train_index
    scanner = trainer.scanner(index, batch_size=trainer.cfg.stages.E_3.uncertainty_batch)
    uncertainty = np.zeros((len(index.grd_paths), 3), np.float32)
    for column in (1, 2, 3):
        scan = scanner.pairs(index.labels[:, column], branch="semi", offsets=False,
                             desc=f"E_3 uncertainty of semi-positive {column}/3")
        uncertainty[:, column - 1] = scan.values["uncertainty"]
        if scan.skipped:
            trainer.log(f"E_3: {scan.skipped} pairs with an unreadable image in semi-positive column {column}")
    return uncertainty


def semi_positive_weights(trainer, auxiliary):
    """w(u) of every (training panorama, semi-positive column): what feed_weights looks up. A resumed
    run reads the chief's semi_uncertainty.npy; otherwise every worker takes part in the scan (its
    forward passes are collective) and the chief alone writes the file."""
    path = os.path.join(trainer.run_dir, UNCERTAINTY_FILE)
    if os.path.exists(path) and trainer.resume:
        uncertainty = np.load(path)
    else:
        uncertainty = semi_positive_uncertainties(trainer)
        trainer.save_array(UNCERTAINTY_FILE, uncertainty)
    s = trainer.cfg.stages.E_3
    midpoint = weight_midpoint(uncertainty, s.weight_b)
    weights = semi_positive_weight(uncertainty, a=s.weight_a, b=midpoint, c=s.weight_c)
    trainer.log(f"E_3: semi-positive uncertainty mean {uncertainty.mean():.2f} "
                f"(5-95 %: {np.percentile(uncertainty, 5):.1f}-{np.percentile(uncertainty, 95):.1f}), "
                f"midpoint b {midpoint:.2f}, weight mean {weights.mean():.3f} ({path})")
    return weights


def weight_midpoint(uncertainty, weight_b):
    """b of w(u): the configured number (the paper's 75), or with `median` the median u of the
    training semi-positives, for models whose uncertainties live on another scale (the demo's)."""
    return float(np.median(uncertainty)) if weight_b == "median" else float(weight_b)


def feed_weights(session, auxiliary, weights, item, feed):
    """W = 1 + W_z w, with W_z from this batch's descriptors fed as a constant (docs/FAITHFULNESS.md, T10)."""
    batch = item["batch"]
    w_m = weights[batch.grd, batch.semi_choice - 1]
    w_z = session.run(auxiliary["W_z"], feed)
    feed[auxiliary["W_"]] = 1.0 + w_z * w_m


E_3 = Stage(name="E_3", network=networks.samp, losses=weighted_iou_losses, with_semi=True, mining=False,
            restore_exclude=["Variable"], prepare=semi_positive_weights, extra_feed=feed_weights,
            refuses_covering="its weight table holds the uncertainty of label columns 1..3 only, and a "
                             "covering semi-positive can be column 0 (the central tile)")


def main(argv=None):
    args = stage_argument_parser(__doc__).parse_args(argv)
    run_stage(E_3, load_config(args.config, args.overrides), resume=args.resume, overwrite=args.overwrite)


if __name__ == "__main__":
    from utils.cli import run
    sys.exit(run(main))
