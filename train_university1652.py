"""University-1652's baseline (Zheng, Wei, Yang, ACM MM 2020): drone -> satellite geo-localization.

U1652  a VGG16 branch per view, the drone and satellite branches one set of weights
       (model.share_drone_satellite), aggregated by global average pooling or SAFA
       (model.aggregation); one classifier over the training buildings, shared by the views.
       Instance loss: softmax cross-entropy of each view's logits against the image's building,
       optionally plus the soft-margin triplet loss with in-batch negatives
       (stages.U1652.triplet_weight); a batch never holds one building twice. No mining.
       model.bridge_view=drone (street queries): the baseline's three-view form: each row also
       carries one drone image of its building, through the satellite's branch and the same
       classifier, its instance loss added; stages.U1652.bridge_weight adds a pull of the street
       and satellite descriptors toward that drone descriptor. Evaluation is unchanged.
Then University-1652's protocol on the last epoch: Recall@1/5/10 and AP for drone -> satellite,
satellite -> drone and multi-query drone -> satellite, in <run>/U1652/evaluation/.

    python train_university1652.py --config configs/demo_university1652.yaml
"""
if __name__ == "__main__":  # a Ctrl-C while TensorFlow loads: one line, exit 130 (utils/startup.py)
    from utils.startup import begin
    begin()

import os
import sys
from collections import namedtuple

import numpy as np
import tensorflow.compat.v1 as tf

from model import networks
from model.losses import compute_loss
from utils.config import load_config, stage_argument_parser
from utils.data.bridge_views import BridgeImages
from utils.data.splits import load_splits
from utils.data.university1652_splits import building_classes
from utils.evaluation.university1652_tasks import evaluate_checkpoint
from utils.errors import ConfigError
from utils.session import checkpoints as ckpt
from utils.training.stage import Stage, StageLosses, stage_dir
from utils.training.trainer import run_stage

STAGE = "U1652"
EVALUATION = "evaluation"


def check_bridge(cfg):
    """True when the bridge view is on; a ConfigError naming the key that cannot be used."""
    if cfg.model.bridge_view == "none":
        if cfg.stages[STAGE].bridge_weight:
            raise ConfigError(f"stages.{STAGE}.bridge_weight is {cfg.stages[STAGE].bridge_weight} but "
                              f"model.bridge_view is none: set model.bridge_view=drone or bridge_weight=0")
        return False
    if cfg.data.query_view == cfg.model.bridge_view:
        raise ConfigError(f"model.bridge_view={cfg.model.bridge_view} bridges street and satellite: set "
                          f"data.query_view=street (it is {cfg.data.query_view}) or model.bridge_view=none")
    if cfg.distribute.strategy != "none":
        raise ConfigError(f"model.bridge_view={cfg.model.bridge_view} runs on one device: set "
                          f"distribute.strategy=none or model.bridge_view=none")
    return True


def two_view_classifying(num_classes):
    """The two-view network with the shared classifier over num_classes buildings (three views
    with model.bridge_view)."""
    def two_view_with_classifier(inputs, cfg):
        if check_bridge(cfg):
            return networks.three_view(inputs, cfg, num_classes)
        return networks.two_view(inputs, cfg, num_classes)
    return two_view_with_classifier


def instance_and_triplet_losses(net, inputs, cfg):
    weights = cfg.stages[STAGE]
    building = tf.placeholder(tf.int64, [None], name="building_class")
    bridged = "bridge_logits" in net
    per_view = {}

    def view_loss(view):  # a row's drone image (bridge) is of the row's building: one label per row
        per_view[view] = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=building,
                                                                                       logits=net[view]))
        return per_view[view]

    instance = sum(view_loss(view) for view in ("sat_logits", "grd_logits") + (("bridge_logits",) if bridged else ()))
    terms = {"loss_instance": instance}
    loss = weights.instance_weight * instance
    if weights.triplet_weight:
        terms["loss_triplet"] = compute_loss(net["sat_global"], net["grd_global"], batch_size=inputs.batch_size)
        loss += weights.triplet_weight * terms["loss_triplet"]
    auxiliary = {"building_class": building}
    if bridged:
        terms.update({f"loss_instance_{view[:-len('_logits')]}": value for view, value in per_view.items()})
        auxiliary["bridge_x"] = net["bridge_x"]
        if weights.bridge_weight:
            terms["loss_bridge"] = bridge_pull(net["grd_global"], net["sat_global"], net["bridge_global"])
            loss += weights.bridge_weight * terms["loss_bridge"]
    return StageLosses(terms={"loss": loss, **terms}, auxiliary=auxiliary)


def bridge_pull(grd_global, sat_global, bridge_global):
    """Mean over rows of (1 - cos(street, drone)) + (1 - cos(satellite, drone)) on the L2-normalised
    descriptors, the drone's held fixed (no gradient): the drone view is the target both move to."""
    anchor = tf.stop_gradient(bridge_global)
    return tf.reduce_mean(2.0 - tf.reduce_sum(grd_global * anchor, axis=1) - tf.reduce_sum(sat_global * anchor, axis=1))


BuildingFeeds = namedtuple("BuildingFeeds", "satellite_classes satellite_buildings bridge loader")


def class_of_every_satellite(trainer, auxiliary):
    """The class of every training satellite; with a bridge view, its images by building and the loader."""
    index = trainer.train_index
    bridge = None
    if "bridge_x" in auxiliary:
        bridge = BridgeImages(index.root, trainer.cfg.model.bridge_view, index.sat_building, trainer.cfg.seed)
    return BuildingFeeds(building_classes(index), index.sat_building, bridge, trainer.loader)


def feed_building_classes(sess, auxiliary, prepared, item, feed):
    """A row's building is its positive satellite's: drone and satellite of a row share the class.
    The bridge view: one drone image of the row's building, at the satellite's size."""
    batch = item["batch"]
    feed[auxiliary["building_class"]] = prepared.satellite_classes[batch.sat]
    if prepared.bridge is not None:
        paths = prepared.bridge.draw(prepared.satellite_buildings[batch.sat], batch.grd)
        feed[auxiliary["bridge_x"]] = np.stack([prepared.loader.load_sat(p, where="train/drone") for p in paths])


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
