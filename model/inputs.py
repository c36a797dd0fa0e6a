"""The placeholders every network is fed from."""
import tensorflow.compat.v1 as tf


class Inputs:
    """Placeholders fed each step; stages may add their own with `placeholder`."""

    def __init__(self, sat_size, grd_size, batch_size, with_semi):
        h, w = sat_size
        self.batch_size = batch_size
        self.sat = tf.placeholder(tf.float32, [None, h, w, 3], name="sat_x")
        self.grd = tf.placeholder(tf.float32, [None, grd_size[0], grd_size[1], 3], name="grd_x")
        self.sat_semi = tf.placeholder(tf.float32, [None, h, w, 3], name="sat_x_semi") if with_semi else None
        self.delta = tf.placeholder(tf.float32, [None, 2], name="delta_1")
        self.delta_semi = tf.placeholder(tf.float32, [None, 2], name="delta_2") if with_semi else None
        self.ratio = tf.placeholder(tf.float32, [None], name="ratio") if with_semi else None
        self.extra = {}

    def placeholder(self, name, shape, dtype=tf.float32):
        """A named placeholder; asking again for a name returns the same one (each replica of a
        tf.distribute strategy builds the losses, all fed from one placeholder)."""
        if name not in self.extra:
            self.extra[name] = tf.placeholder(dtype, shape, name=name)
        return self.extra[name]
