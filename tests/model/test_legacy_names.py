"""Variable names and shapes of the paper-size graphs equal, in order, the lists read off the
original SAMP and VIGOR graphs (tests/legacy/, listed from the original code). Graph construction only: nothing is initialised.
"""
import os

import numpy as np
import tensorflow.compat.v1 as tf

from model import losses, models, models_two_dec
from tests import paths

# tests/legacy/varnames_*.txt: the original graphs' variables, as the original code builds them
LEGACY_DIR = paths.LEGACY
SAT, GRD = 320, (320, 640)


def _legacy(name):
    with open(os.path.join(LEGACY_DIR, name)) as f:
        return [line.strip() for line in f if line.strip()]


def _name_shape(variables):
    return ["%s (%s)" % (v.name, ",".join(str(d) for d in v.get_shape().as_list()))
            for v in variables]


def _placeholders():
    return (tf.placeholder(tf.float32, [None, SAT, SAT, 3], name="sat_x"),
            tf.placeholder(tf.float32, [None, SAT, SAT, 3], name="sat_x_semi"),
            tf.placeholder(tf.float32, [None, GRD[0], GRD[1], 3], name="grd_x"))


def _adam_train_op(loss, global_step):
    with tf.name_scope("train"):
        return tf.train.AdamOptimizer(1e-5, 0.9, 0.999).minimize(loss, global_step=global_step)


def test_samp_safa_delta_names(graph):
    """As train_second_E_2_2.py: global step, SAFA_delta, the stage-2.2 loss (the stage whose
    gradients reach every variable, Cholesky heads included), Adam under 'train'."""
    global_step = tf.Variable(0, trainable=False)
    sat_x, semi_x, grd_x = _placeholders()
    delta_1 = tf.placeholder(tf.float32, [None, 2], name="delta_1")
    delta_2 = tf.placeholder(tf.float32, [None, 2], name="delta_2")
    (sat_global, _, grd_global, _, _, heatmap, heatmap_semi, L, L_semi) = \
        models_two_dec.SAFA_delta(sat_x, semi_x, grd_x, out_dim=2048, vgg_path="random")

    model_variables = [v for v in tf.global_variables() if v is not global_step]
    assert _name_shape(model_variables) == _legacy("varnames_samp_safa_delta.txt")
    parameters = sum(np.prod(v.get_shape().as_list()) for v in model_variables)
    assert parameters == 328961624

    loss = (losses.compute_loss(sat_global, grd_global, batch_size=10)
            + losses.E_loss_2_2(heatmap_semi, L_semi, delta_2) * 1e-4
            + losses.E_loss_2_2(heatmap, L, delta_1) * 1e-3)
    _adam_train_op(loss, global_step)
    assert _name_shape(tf.global_variables()) == _legacy("varnames_samp_safa_delta_train.txt")


def test_vigor_safa_names(graph):
    """As VIGOR's train_SAFA.py: global step, SAFA, the triplet loss, Adam under 'train'."""
    global_step = tf.Variable(0, trainable=False)
    sat_x, _, grd_x = _placeholders()
    sat_global, grd_global, _, _ = models.SAFA(sat_x, grd_x, vgg_path="random")

    model_variables = [v for v in tf.global_variables() if v is not global_step]
    assert _name_shape(model_variables) == _legacy("varnames_vigor_safa.txt")
    parameters = sum(np.prod(v.get_shape().as_list()) for v in model_variables)
    assert 29.7e6 < parameters < 29.9e6

    _adam_train_op(losses.compute_loss(sat_global, grd_global), global_step)
    assert _name_shape(tf.global_variables()) == _legacy("varnames_vigor_safa_train.txt")
