"""University-1652's baseline (Zheng, Wei, Yang, ACM MM 2020): drone -> satellite geo-localization.

U1652  a VGG16 branch per view, the drone and satellite branches one set of weights
       (model.share_drone_satellite), aggregated by global average pooling or SAFA
       (model.aggregation); one classifier over the training buildings, shared by the views.
       Instance loss: softmax cross-entropy of each view's logits against the image's building,
       optionally plus the soft-margin triplet loss with in-batch negatives
       (stages.U1652.triplet_weight); a batch never holds one building twice. No mining.
Then University-1652's protocol on the last epoch: Recall@1/5/10 and AP for drone -> satellite,
satellite -> drone and multi-query drone -> satellite, in <run>/U1652/evaluation/.

    python train_university1652.py --config configs/demo_university1652.yaml
"""
if __name__ == "__main__":  # a Ctrl-C while TensorFlow loads: one line, exit 130 (utils/startup.py)
    from utils.startup import begin
    begin()

import os
import sys

import numpy as np
import tensorflow.compat.v1 as tf

from model import networks
from model.losses import compute_loss
from utils.config import load_config, stage_argument_parser
from utils.data.splits import load_splits
from utils.data.university1652_splits import building_classes
from utils.evaluation.university1652_tasks import evaluate_checkpoint
from utils.session import checkpoints as ckpt
from utils.training.stage import Stage, StageLosses, stage_dir
from utils.training.trainer import run_stage

STAGE = "U1652"
EVALUATION = "evaluation"


def two_view_classifying(num_classes):
    """The two-view network with the shared classifier over num_classes buildings."""
    def two_view_with_classifier(inputs, cfg):
        return networks.two_view(inputs, cfg, num_classes)
    return two_view_with_classifier


def instance_and_triplet_losses(net, inputs, cfg):
    weights = cfg.stages[STAGE]
    building = tf.placeholder(tf.int64, [None], name="building_class")
    instance = sum(tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=building, logits=net[view]))
                   for view in ("sat_logits", "grd_logits"))
    terms = {"loss_instance": instance}
    loss = weights.instance_weight * instance
    if weights.triplet_weight:
        terms["loss_triplet"] = compute_loss(net["sat_global"], net["grd_global"], batch_size=inputs.batch_size)
        loss += weights.triplet_weight * terms["loss_triplet"]
    return StageLosses(terms={"loss": loss, **terms}, auxiliary={"building_class": building})


def class_of_every_satellite(trainer, auxiliary):
    return building_classes(trainer.train_index)


def feed_building_classes(sess, auxiliary, satellite_classes, item, feed):
    """A row's building is its positive satellite's: drone and satellite of a row share the class."""
    feed[auxiliary["building_class"]] = satellite_classes[item["batch"].sat]


def university1652_stage(num_classes):
    return Stage(name=STAGE, network=two_view_classifying(num_classes), losses=instance_and_triplet_losses,
                 with_semi=False, mining=False, prepare=class_of_every_satellite, extra_feed=feed_building_classes)


def train_and_evaluate(cfg, resume=False, overwrite=False, **trainer_options):
    """Train U1652, then evaluate its last epoch; returns (the epochs' metrics, the evaluation table)."""
    train, _ = load_splits(cfg)
    metrics = run_stage(university1652_stage(len(np.unique(train.sat_building))), cfg, resume=resume,
                        overwrite=overwrite, **trainer_options)
    run_dir = stage_dir(cfg, STAGE)
    epoch, checkpoint = ckpt.epoch_dirs(run_dir)[-1]
    table, text = evaluate_checkpoint(cfg, checkpoint, os.path.join(run_dir, EVALUATION), name=f"{STAGE} epoch {epoch}")
    print(text)
    return metrics, table


def main(argv=None):
    parser = stage_argument_parser(__doc__)
    parser.set_defaults(config=os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs",
                                            "demo_university1652.yaml"))
    args = parser.parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    train_and_evaluate(cfg, resume=args.resume, overwrite=args.overwrite)


if __name__ == "__main__":
    from utils.cli import run
    sys.exit(run(main))
