"""The training graph of a stage, built as the original scripts build theirs.

The global step `Variable` comes first, then the network, the losses under `loss/`, Adam under
`train/`: the variable names of the original graphs (tests/legacy/).

adversarial.weight > 0 adds DANN's domain loss (model/adversarial.py) on the two branches'
global descriptors to the stage's loss: a discriminator under `domain_discriminator/` behind a
gradient reversal, trained by the stage's optimizer; the terms `domain_loss` and
`domain_strength` are logged. At 0 (the default) nothing of it is built.
"""
from dataclasses import dataclass, field
from typing import Optional

import tensorflow.compat.v1 as tf

from model import adversarial
from model.inputs import Inputs
from utils.errors import ConfigError
from utils.session import checkpoints as ckpt
from utils.session.distribute import Distribution
from utils.training.optimizer import stage_optimizer
from utils.training.stage import as_stage_losses


@dataclass
class TrainingGraph:
    graph: tf.Graph
    global_step: tf.Variable
    inputs: Inputs
    net: dict                    # the network's named tensors
    losses: dict                 # scalar terms; "loss" is minimised
    auxiliary: dict              # the stage's own tensors (StageLosses.auxiliary)
    learning_rate: tf.Tensor
    grads_and_vars: list
    train_op: tf.Operation
    scalar_summary: tf.Tensor
    image_summary: Optional[tf.Tensor]
    saver: Optional[tf.train.Saver]  # every variable: the stage's own checkpoints
    restored_variables: list     # what init_from restores (the stage's restore rule)
    restore_saver: Optional[tf.train.Saver]
    init_op: tf.Operation
    non_finite_weights: dict     # variable name -> count of its NaN / infinite entries (checked before saving)
    # under a strategy: placeholder made by the first replica's losses -> the other replicas' twins
    replica_placeholders: dict = field(default_factory=dict)


def build_training_graph(stage, cfg, batch_size, learning_rate, dist=None, savers=True, total_steps=None):
    """learning_rate: a float, or a function of the global step that returns a scalar tensor.
    total_steps: the run's steps, for the adversarial term's dann schedule (adversarial.schedule_steps
    wins when set).
    savers=False leaves out the two Savers (saver and restore_saver are None): a third of the
    build time, for tests that move weights by value.

    dist: a utils.session.distribute.Distribution; None (one device) builds exactly the
    original graph. Under a strategy every replica builds the network on its slice of the
    global batch and the losses on the gathered outputs (see distribute.py); the tensors kept
    here are the first replica's, which hold the global batch's values.
    """
    dist = dist or Distribution.single_device()
    graph = tf.Graph()
    with graph.as_default(), dist.scope():
        tf.set_random_seed(cfg.seed)
        global_step = tf.Variable(0, trainable=False)  # 'Variable:0', as in the original graphs
        inputs = Inputs(cfg.data.sat_size, cfg.data.grd_size, batch_size, stage.with_semi)
        replicas = dist.replicate(
            lambda: _replica_step(stage, cfg, dist, inputs, global_step, learning_rate, total_steps))
        net, terms, auxiliary, rate, grads = dist.first_replica(
            [(r[0], r[1].terms, r[1].auxiliary, r[2], [g for g, _ in r[3]]) for r in replicas])
        grads_and_vars = [(g, v) for g, (_, v) in zip(grads, replicas[0][3])]
        train_op = replicas[0][4] if len(replicas) == 1 else tf.group(*[replica[4] for replica in replicas])
        scalars = [_scalar_summary(name, value) for name, value in [*terms.items(), ("learning_rate", rate)]]
        images = [_image_summary(name, net[name]) for name in stage.heatmaps]
        restored = ckpt.select_variables(tf.global_variables(), stage.restore_include, stage.restore_exclude)
        with tf.name_scope("checks"):
            non_finite = {v.op.name: tf.math.count_nonzero(tf.logical_not(tf.is_finite(v)))
                          for v in tf.global_variables() if v.dtype.base_dtype.is_floating}
        return TrainingGraph(
            graph=graph, global_step=global_step, inputs=inputs, net=net, losses=terms,
            auxiliary=auxiliary, learning_rate=rate, grads_and_vars=grads_and_vars, train_op=train_op,
            scalar_summary=tf.summary.merge(scalars), image_summary=tf.summary.merge(images) if images else None,
            saver=tf.train.Saver(tf.global_variables(), max_to_keep=None) if savers else None,
            restored_variables=restored, restore_saver=tf.train.Saver(restored) if restored and savers else None,
            init_op=tf.global_variables_initializer(), non_finite_weights=non_finite,
            replica_placeholders=dist.placeholder_twins([replica[1].auxiliary for replica in replicas]))


def _replica_step(stage, cfg, dist, inputs, global_step, learning_rate, total_steps=None):
    """One replica's part of the step (the whole step on one device)."""
    net = dist.gather_outputs(stage.network(dist.shard_inputs(inputs), cfg))
    with tf.name_scope("loss"):
        losses = as_stage_losses(stage.losses(net, inputs, cfg))
        if float(cfg.adversarial.weight) > 0.0:
            _add_domain_loss(losses.terms, net, cfg, global_step, total_steps)
    rate = learning_rate(global_step) if callable(learning_rate) else tf.constant(float(learning_rate))
    with tf.name_scope("train"):
        optimizer = stage_optimizer(rate, cfg.stages[stage.name], stage.name)
        grads_and_vars = optimizer.compute_gradients(losses.terms["loss"])  # = optimizer.minimize
        train_op = optimizer.apply_gradients(grads_and_vars, global_step=global_step)
    return net, losses, rate, dist.summed_gradients(grads_and_vars), train_op


def _add_domain_loss(terms, net, cfg, global_step, total_steps):
    """terms["loss"] += weight x DANN's loss of the optical (1) against the query (0) descriptors,
    each behind a gradient reversal of the schedule's strength."""
    a = cfg.adversarial
    steps = a.schedule_steps if a.schedule_steps is not None else total_steps
    if a.schedule == "dann" and not steps:
        raise ConfigError("adversarial.schedule is dann but the run's length is unknown here: "
                          "set adversarial.schedule_steps")
    strength = adversarial.dann_strength(global_step, steps or 1, a.schedule)
    domain = adversarial.dann_loss(net["sat_global"], net["grd_global"], strength, tuple(a.hidden))
    terms["loss"] = terms["loss"] + float(a.weight) * domain
    terms["domain_loss"] = domain
    terms["domain_strength"] = strength


# The summary ops with their tags given exactly: tf.summary.* derive a tag from the op's name, which
# TensorFlow makes unique ('loss' became 'loss_1' beside the loss/ scope) and which, for a tensor
# gathered over replicas, is another op's name than on one device.
def _scalar_summary(tag, value):
    with tf.name_scope(None):
        return tf.raw_ops.ScalarSummary(tags=tag, values=value, name=f"summary_{tag}")


def _image_summary(tag, heatmap):
    """The first two heatmaps of the batch, each scaled to its peak; tags <tag>/image/0 and /1."""
    peak = tf.reduce_max(heatmap, axis=[1, 2, 3], keepdims=True)
    with tf.name_scope(None):
        return tf.raw_ops.ImageSummary(tag=tag, tensor=heatmap / (peak + 1e-12), max_images=2,
                                       name=f"summary_{tag}")
