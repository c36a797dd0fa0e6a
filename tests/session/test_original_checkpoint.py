"""A checkpoint with the original graph's variable names and shapes restores into our graph."""
import os

import numpy as np
import tensorflow.compat.v1 as tf

from model import models
from tests import paths
from utils.session import checkpoints as ckpt

LEGACY = paths.LEGACY


def read_legacy(name):
    rows = []
    with open(os.path.join(LEGACY, name)) as f:
        for line in f:
            var, shape = line.split()
            dims = [int(d) for d in shape.strip("()").split(",") if d]
            rows.append((var[:-2], dims))  # checkpoint keys have no ':0'
    return rows


def test_vigor_safa_checkpoint_in_the_original_layout_restores(tmp_path):
    # 1. A checkpoint written from nothing but the legacy list: the original training graph's
    #    names and shapes (global step, SAFA weights, Adam slots), distinct values per variable.
    legacy = read_legacy("varnames_vigor_safa_train.txt")
    writer = tf.Graph()
    with writer.as_default():
        variables = [tf.Variable(tf.fill(shape, float(i + 1)) if shape else float(i + 1), name=name)
                     for i, (name, shape) in enumerate(legacy)]
        saver = tf.train.Saver(variables)
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            prefix = saver.save(sess, str(tmp_path / "30" / "model.ckpt"), write_meta_graph=False)
    value_of = {name: float(i + 1) for i, (name, _) in enumerate(legacy)}

    # 2. Our SAFA at the paper's size restores every one of its variables by name.
    reader = tf.Graph()
    with reader.as_default():
        sat = tf.placeholder(tf.float32, [None, 320, 320, 3])
        grd = tf.placeholder(tf.float32, [None, 320, 640, 3])
        models.SAFA(sat, grd, vgg_path="random")
        ours = tf.global_variables()
        with tf.Session() as sess:
            count = ckpt.restore_by_name(sess, ours, str(tmp_path / "30"))
            assert count == len(ours) == 60
            for v in (ours[0], ours[26], ours[-1]):
                assert np.all(sess.run(v) == value_of[v.op.name]), v.op.name
    assert prefix.endswith("model.ckpt")
