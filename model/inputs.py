"""The placeholders every network is fed from."""
import tensorflow.compat.v1 as tf


class Inputs:
    """Placeholders fed each step (a stage returns its own extra ones from its losses: StageLosses)."""

    def __init__(self, sat_size, grd_size, batch_size, with_semi):
        h, w = sat_size
        self.batch_size = batch_size
        self.sat = tf.placeholder(tf.float32, [None, h, w, 3], name="sat_x")
        self.grd = tf.placeholder(tf.float32, [None, grd_size[0], grd_size[1], 3], name="grd_x")
        self.sat_semi = tf.placeholder(tf.float32, [None, h, w, 3], name="sat_x_semi") if with_semi else None
        self.delta = tf.placeholder(tf.float32, [None, 2], name="delta_1")
        self.delta_semi = tf.placeholder(tf.float32, [None, 2], name="delta_2") if with_semi else None
        self.ratio = tf.placeholder(tf.float32, [None], name="ratio") if with_semi else None


def bridge_placeholder(sat_size):
    """University-1652's three-view training: one image of the bridge view (the drone) per batch
    row, of the row's building, at the satellite's size (it goes through the satellite's branch)."""
    return tf.placeholder(tf.float32, [None, sat_size[0], sat_size[1], 3], name="bridge_x")
