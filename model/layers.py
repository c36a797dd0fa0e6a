"""Small graph-building helpers shared by the networks (tf.compat.v1, tf.get_variable only).

Every helper opens one variable scope named `name` and creates its variables there, so the
caller decides the checkpoint names. Input channel counts come from static shapes.
"""
import tensorflow.compat.v1 as tf


def glorot_normal(seed=None):
    """Truncated normal, stddev sqrt(2 / (fan_in + fan_out)) (the Keras `glorot_normal` maths)."""
    return tf.glorot_normal_initializer(seed=seed)


def glorot_uniform(seed=None):
    """Uniform on +-sqrt(6 / (fan_in + fan_out)) (Keras Dense's default kernel initializer)."""
    return tf.glorot_uniform_initializer(seed=seed)


def he_normal(seed=None):
    """Truncated normal, stddev sqrt(2 / fan_in): suited to ReLU stacks such as VGG."""
    return tf.variance_scaling_initializer(
        scale=2.0, mode="fan_in", distribution="truncated_normal", seed=seed)


def truncated_normal(stddev, seed=None):
    return tf.truncated_normal_initializer(mean=0.0, stddev=stddev, seed=seed)


def constant(value):
    return tf.constant_initializer(value)


def static_dim(x, axis, what):
    """The static size of `x` along `axis`, or a ValueError naming `what` when it is unknown."""
    size = x.get_shape().as_list()[axis]
    if size is None:
        raise ValueError("%s needs a static size on axis %d, got shape %s"
                         % (what, axis, x.get_shape()))
    return size


def conv2d(x, out_channels, name, kernel_initializer, bias_initializer,
           kernel_size=3, activation=tf.nn.relu, trainable=True,
           kernel_name="weights", bias_name="biases"):
    """Stride-1 SAME convolution plus bias, then `activation` (None for linear)."""
    in_channels = static_dim(x, -1, "conv2d '%s' input channels" % name)
    with tf.variable_scope(name):
        kernel = tf.get_variable(kernel_name, [kernel_size, kernel_size, in_channels, out_channels],
                                 initializer=kernel_initializer, trainable=trainable)
        bias = tf.get_variable(bias_name, [out_channels],
                               initializer=bias_initializer, trainable=trainable)
        out = tf.nn.bias_add(tf.nn.conv2d(x, kernel, strides=[1, 1, 1, 1], padding="SAME"), bias)
        return activation(out) if activation is not None else out


def conv2d_transpose(x, out_channels, stride, name, kernel_initializer, bias_initializer,
                     kernel_size=3, activation=tf.nn.relu, trainable=True):
    """SAME transposed convolution that multiplies height and width by `stride`.

    The kernel is stored as (k, k, out_channels, in_channels), TensorFlow's layout for
    conv2d_transpose.
    """
    _, height, width, in_channels = x.get_shape().as_list()
    if None in (height, width, in_channels):
        raise ValueError("conv2d_transpose '%s' needs static height, width and channels, got %s"
                         % (name, x.get_shape()))
    out_height, out_width = height * stride, width * stride
    with tf.variable_scope(name):
        kernel = tf.get_variable("weights", [kernel_size, kernel_size, out_channels, in_channels],
                                 initializer=kernel_initializer, trainable=trainable)
        bias = tf.get_variable("biases", [out_channels],
                               initializer=bias_initializer, trainable=trainable)
        output_shape = tf.stack([tf.shape(x)[0], out_height, out_width, out_channels])
        out = tf.nn.conv2d_transpose(x, kernel, output_shape, strides=[1, stride, stride, 1],
                                     padding="SAME")
        out.set_shape([x.get_shape()[0], out_height, out_width, out_channels])
        out = out + bias
        return activation(out) if activation is not None else out


def dense(x, units, name, kernel_initializer, bias_initializer, activation=None,
          trainable=True, input_dim=None, kernel_name="weights", bias_name="biases", reuse=None):
    """x @ W + b, then `activation`. `input_dim` defaults to the static last dimension of x."""
    if input_dim is None:
        input_dim = static_dim(x, -1, "dense '%s' input" % name)
    with tf.variable_scope(name, reuse=reuse):
        kernel = tf.get_variable(kernel_name, [input_dim, units],
                                 initializer=kernel_initializer, trainable=trainable)
        bias = tf.get_variable(bias_name, [units],
                               initializer=bias_initializer, trainable=trainable)
        out = tf.nn.xw_plus_b(x, kernel, bias)
        return activation(out) if activation is not None else out


def max_pool_2x2(x, name=None):
    return tf.nn.max_pool2d(x, ksize=[1, 2, 2, 1], strides=[1, 2, 2, 1], padding="SAME", name=name)
