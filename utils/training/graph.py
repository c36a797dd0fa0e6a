"""The training graph of a stage, built as the original scripts build theirs.

The global step `Variable` comes first, then the network, the losses under `loss/`, Adam under
`train/`: the variable names of the original graphs (tests/legacy/).
"""
from dataclasses import dataclass
from typing import Optional

import tensorflow.compat.v1 as tf

from model.inputs import Inputs
from utils.training import checkpoints as ckpt
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
    saver: tf.train.Saver        # every variable: the stage's own checkpoints
    restored_variables: list     # what init_from restores (the stage's restore rule)
    restore_saver: Optional[tf.train.Saver]
    init_op: tf.Operation
    non_finite_weights: dict     # variable name -> count of its NaN / infinite entries (checked before saving)


def build_training_graph(stage, cfg, batch_size, learning_rate):
    """learning_rate: a float, or a function of the global step that returns a scalar tensor."""
    graph = tf.Graph()
    with graph.as_default():
        tf.set_random_seed(cfg.seed)
        global_step = tf.Variable(0, trainable=False)  # 'Variable:0', as in the original graphs
        inputs = Inputs(cfg.data.sat_size, cfg.data.grd_size, batch_size, stage.with_semi)
        net = stage.network(inputs, cfg)
        with tf.name_scope("loss"):
            losses = as_stage_losses(stage.losses(net, inputs, cfg))
        rate = learning_rate(global_step) if callable(learning_rate) else tf.constant(float(learning_rate))
        with tf.name_scope("train"):
            optimizer = tf.train.AdamOptimizer(rate, 0.9, 0.999)
            grads_and_vars = optimizer.compute_gradients(losses.terms["loss"])  # = optimizer.minimize
            train_op = optimizer.apply_gradients(grads_and_vars, global_step=global_step)
        scalars = [tf.summary.scalar(name, value) for name, value in losses.terms.items()]
        scalars.append(tf.summary.scalar("learning_rate", rate))
        images = [tf.summary.image(t.op.name.replace("/", "_"), _normalised(t), max_outputs=2)
                  for t in stage.heatmaps(net)]
        restored = ckpt.select_variables(tf.global_variables(), stage.restore_include, stage.restore_exclude)
        with tf.name_scope("checks"):
            non_finite = {v.op.name: tf.math.count_nonzero(tf.logical_not(tf.is_finite(v)))
                          for v in tf.global_variables() if v.dtype.base_dtype.is_floating}
        return TrainingGraph(
            graph=graph, global_step=global_step, inputs=inputs, net=net, losses=losses.terms,
            auxiliary=losses.auxiliary, learning_rate=rate, grads_and_vars=grads_and_vars, train_op=train_op,
            scalar_summary=tf.summary.merge(scalars), image_summary=tf.summary.merge(images) if images else None,
            saver=tf.train.Saver(tf.global_variables(), max_to_keep=None), restored_variables=restored,
            restore_saver=tf.train.Saver(restored) if restored else None,
            init_op=tf.global_variables_initializer(), non_finite_weights=non_finite)


def _normalised(heatmap):
    peak = tf.reduce_max(heatmap, axis=[1, 2, 3], keepdims=True)
    return heatmap / (peak + 1e-12)
