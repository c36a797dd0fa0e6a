"""Stage E_1 (train_fist_E_1.py in the original): the VIGOR baseline SAMP starts from, and
VIGOR's two simpler baselines beside it.

Siamese_VGG  (--part siamese_vgg) VIGOR's Siamese-VGG from ImageNet VGG16: global average pooling,
      dropout, one shared fc layer, the same soft-margin triplet loss, no mining (VIGOR's
      train_overall.py in a mode without SAFA).
SAFA  (--part safa) SAFA without mining: VIGOR's train_SAFA.py. E_1a with mining off, as a stage of
      its own so that its run folder sits beside E_1a's and both can be compared.
E_1a  SAFA from ImageNet VGG16, weighted soft-margin triplet loss, global hard-negative mining
      from epoch 2.
E_1b  continues from E_1a's last epoch with a semi-positive tile per panorama: the IOU-ratio
      loss between positive and semi-positive similarities, and the offset MLP regressing
      delta / 320. (SAMP's E_2_1 starts from E_1a, not E_1b; E_1b is VIGOR's full model.)
"""
if __name__ == "__main__":  # a Ctrl-C while TensorFlow loads: one line, exit 130 (utils/startup.py)
    from utils.startup import begin
    begin()

import sys

import tensorflow.compat.v1 as tf

from model import networks
from model.losses import compute_loss, compute_loss_continuous_IOU
from utils.config import load_config, stage_argument_parser
from utils.training.stage import Stage, StageLosses
from utils.training.trainer import run_stage


def triplet_losses(net, inputs, cfg):
    loss = compute_loss(net["sat_global"], net["grd_global"], batch_size=inputs.batch_size)
    return {"loss": loss}


def triplet_losses_with_dropout(net, inputs, cfg):
    """Siamese-VGG: the triplet loss; each training step feeds model.siamese_keep_prob (scans: 1)."""
    return StageLosses(terms=triplet_losses(net, inputs, cfg),
                       auxiliary={"keep_prob": networks.dropout_keep_prob(),
                                  "keep_prob_training": float(cfg.model.siamese_keep_prob)})


def feed_dropout(session, auxiliary, prepared, item, feed):
    feed[auxiliary["keep_prob"]] = auxiliary["keep_prob_training"]


def iou_and_offset_losses(net, inputs, cfg):
    loss, loss_1, _, loss_3 = compute_loss_continuous_IOU(
        net["sat_global"], net["sat_global_semi"], net["grd_global"], inputs.ratio, batch_size=inputs.batch_size)
    error = net["delta"] - inputs.delta / 320.
    loss_delta = tf.reduce_mean(tf.reduce_sum(error * error, axis=1)) / 100.
    return {"loss": loss + loss_delta, "loss_1": loss_1, "loss_3": loss_3, "loss_delta": loss_delta}


Siamese_VGG = Stage(name="Siamese_VGG", network=networks.siamese_vgg, losses=triplet_losses_with_dropout,
                    with_semi=False, mining=False, extra_feed=feed_dropout)

SAFA = Stage(name="SAFA", network=networks.safa, losses=triplet_losses, with_semi=False, mining=False)

E_1a = Stage(name="E_1a", network=networks.safa, losses=triplet_losses, with_semi=False, mining=True)

E_1b = Stage(name="E_1b", network=networks.safa_offset, losses=iou_and_offset_losses, with_semi=True,
             mining=True, restore_exclude=["delta"], inherit_mining=True, continue_epochs=True)


def main(argv=None):
    parser = stage_argument_parser(__doc__)
    parser.add_argument("--part", choices=["a", "b", "both", "safa", "siamese_vgg"], default="both",
                        help="E_1a, E_1b or both in order (default); or a baseline: SAFA without "
                             "mining, Siamese-VGG")
    args = parser.parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    baseline = {"safa": SAFA, "siamese_vgg": Siamese_VGG}.get(args.part)
    if baseline is not None:
        run_stage(baseline, cfg, resume=args.resume, overwrite=args.overwrite)
    if args.part in ("a", "both"):
        run_stage(E_1a, cfg, resume=args.resume, overwrite=args.overwrite)
    if args.part in ("b", "both"):
        run_stage(E_1b, cfg, resume=args.resume, overwrite=args.overwrite)


if __name__ == "__main__":
    from utils.cli import run
    sys.exit(run(main))
