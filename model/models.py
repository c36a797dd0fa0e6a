"""VIGOR's networks: a VGG16 siamese pair with SAFA (spatial-aware feature aggregation) or
global-average-pooling heads, optionally with a semi-positive satellite input and an offset
(delta) regression head.

Signatures and return orders are VIGOR's (models.py); the returned tuples also name their end
points (model/end_points.py). Extra keyword arguments build smaller
models; their defaults are the paper's. Descriptor sizes follow from the static input shapes.
Common extras: vgg_path (None: data/vgg16.npy, or "random"), vgg_width (channel multiplier),
vgg_seed (seed of the random backbone; the satellite branch uses vgg_seed + 1).
"""
import tensorflow.compat.v1 as tf

from model import end_points, layers
from model.vgg import Vgg16


def fc_layer(x, input_dim, output_dim, init_dev, init_bias, name="fc_layer",
             activation_fn=tf.nn.relu, reuse=tf.AUTO_REUSE):
    """Fully connected layer `name/weights`, `name/biases` (truncated normal, constant bias)."""
    static_in = x.get_shape().as_list()[-1]
    if static_in is not None and static_in != input_dim:
        raise ValueError("fc_layer '%s': input has %d features, input_dim says %d"
                         % (name, static_in, input_dim))
    return layers.dense(x, output_dim, name, layers.truncated_normal(init_dev),
                        layers.constant(init_bias), activation=activation_fn,
                        input_dim=input_dim, reuse=reuse)


def spatial_aware(input_feature, dimension, trainable, name):
    """SAFA's spatial-aware importance maps, (B, H*W, dimension), from a (B, H, W, C) map.

    Two position-wise fully connected layers (per output dimension) on the channel-max map.
    VIGOR attaches L1/L2 regularizers to these weights but never adds them to a loss, so
    none are created here.
    """
    _, height, width, _ = input_feature.get_shape().as_list()
    positions = height * width
    hidden = positions // 2
    channel_max = tf.reshape(tf.reduce_max(input_feature, axis=-1), [-1, positions])
    with tf.variable_scope(name):
        weights1 = tf.get_variable("weights1", [positions, hidden, dimension], trainable=trainable,
                                   initializer=layers.truncated_normal(0.005))
        biases1 = tf.get_variable("biases1", [1, hidden, dimension], trainable=trainable,
                                  initializer=layers.constant(0.1))
        hidden_maps = tf.einsum("bi,ijd->bjd", channel_max, weights1) + biases1
        weights2 = tf.get_variable("weights2", [hidden, positions, dimension], trainable=trainable,
                                   initializer=layers.truncated_normal(0.005))
        biases2 = tf.get_variable("biases2", [1, positions, dimension], trainable=trainable,
                                  initializer=layers.constant(0.1))
        return tf.einsum("bjd,jid->bid", hidden_maps, weights2) + biases2


def safa_aggregate(local_map, dimension, trainable, name):
    """Max-pool 2x2, then weight the positions with `spatial_aware` maps.

    Returns (global descriptor (B, dimension * C), un-normalised; pooled local features
    flattened to (B, H*W, C)).
    """
    pooled = layers.max_pool_2x2(local_map)
    _, height, width, channels = pooled.get_shape().as_list()
    importance = spatial_aware(pooled, dimension, trainable, name=name)
    flat = tf.reshape(pooled, [-1, height * width, channels])
    descriptor = tf.einsum("bic,bid->bdc", flat, importance)
    return tf.reshape(descriptor, [-1, dimension * channels]), flat


def vgg_features(x, scope, vgg_path=None, vgg_width=1.0, vgg_seed=0):
    """The five VGG16 maps of `x`, with the backbone's variables under `scope`."""
    with tf.variable_scope(scope):
        return Vgg16(vgg_path, width=vgg_width, seed=vgg_seed).build(x)


def l2_normalized(x):
    return tf.nn.l2_normalize(x, axis=1)


def _offset_head(sat_descriptor, grd_descriptor, out_dim, hidden):
    """VIGOR's offset regression: concat -> fc_delta_1 (ReLU) -> fc_delta_2 (linear)."""
    both = tf.concat([sat_descriptor, grd_descriptor], axis=-1)
    both_fc = fc_layer(both, layers.static_dim(both, -1, "offset head input"), hidden,
                       0.005, 0.1, "fc_delta_1")
    return fc_layer(both_fc, hidden, out_dim, 0.005, 0.1, "fc_delta_2", activation_fn=None)


def siamese_gap_fc(sat_local, grd_local, scope_name, dropout=0.5, fc_dim=4096):
    """Global average pooling, dropout (`dropout` is the keep probability), one shared fc.

    Returns (sat_global, grd_global, sat_pooled, grd_pooled, fc_sat, fc_grd).
    """
    with tf.variable_scope(scope_name) as scope:
        x_sat = tf.reduce_mean(sat_local, axis=[1, 2])
        x_grd = tf.reduce_mean(grd_local, axis=[1, 2])
        channels = layers.static_dim(x_sat, -1, "siamese_gap_fc input")
        x_sat_drop = tf.nn.dropout(x_sat, rate=1.0 - dropout, name="sat_dropout")
        fc_sat = fc_layer(x_sat_drop, channels, fc_dim, 0.005, 0.1, "fc1", activation_fn=None)
        scope.reuse_variables()
        x_grd_drop = tf.nn.dropout(x_grd, rate=1.0 - dropout, name="grd_dropout")
        fc_grd = fc_layer(x_grd_drop, channels, fc_dim, 0.005, 0.1, "fc1", activation_fn=None)
    return l2_normalized(fc_sat), l2_normalized(fc_grd), x_sat, x_grd, fc_sat, fc_grd


def clean_siamese(x_sat, x_grd, keep_prob, cam=False, fc_dim=4096, vgg_path=None,
                  vgg_width=1.0, vgg_seed=0):
    """Returns (sat_global, grd_global, sat_local, grd_local) [+ (fc_sat, fc_grd) if cam]."""
    grd_local = vgg_features(x_grd, "vgg_grd", vgg_path, vgg_width, vgg_seed)[-1]
    sat_local = vgg_features(x_sat, "vgg_sat", vgg_path, vgg_width, vgg_seed + 1)[-1]
    sat_global, grd_global, _, _, fc_sat, fc_grd = siamese_gap_fc(
        sat_local, grd_local, "Gap_local", keep_prob, fc_dim=fc_dim)
    if cam:
        return end_points.SiameseWithFc(sat_global, grd_global, sat_local, grd_local, fc_sat, fc_grd)
    return end_points.Siamese(sat_global, grd_global, sat_local, grd_local)


def SAFA(x_sat, x_grd, dimension=8, trainable=True, original=False, vgg_path=None,
         vgg_width=1.0, vgg_seed=0):
    """Returns (sat_global, grd_global, sat_local, grd_local), descriptors L2-normalised and
    the locals the pooled maps flattened to (B, H*W, C); with original=True
    (sat_global, grd_global, sat_global_raw, grd_global_raw, sat_conv5_3, grd_conv5_3)."""
    grd_map = vgg_features(x_grd, "vgg_grd", vgg_path, vgg_width, vgg_seed)[-1]
    grd_global, grd_local = safa_aggregate(grd_map, dimension, trainable, "spatial_grd")
    sat_map = vgg_features(x_sat, "vgg_sat", vgg_path, vgg_width, vgg_seed + 1)[-1]
    sat_global, sat_local = safa_aggregate(sat_map, dimension, trainable, "spatial_sat")
    if original:
        return end_points.SafaOriginal(l2_normalized(sat_global), l2_normalized(grd_global), sat_global, grd_global,
                                       sat_map, grd_map)
    return end_points.Siamese(l2_normalized(sat_global), l2_normalized(grd_global), sat_local, grd_local)


def _safa_with_semi(x_sat, x_sat_semi, x_grd, dimension, trainable, vgg_path, vgg_width,
                    vgg_seed):
    """Shared trunk of SAFA_semi / SAFA_delta: the positive and semi-positive tiles go through
    the satellite branch as one batch. Returns (sat_global, semi_global, grd_global, sat_local,
    grd_local), descriptors un-normalised, sat_local holding both halves."""
    grd_map = vgg_features(x_grd, "vgg_grd", vgg_path, vgg_width, vgg_seed)[-1]
    grd_global, grd_local = safa_aggregate(grd_map, dimension, trainable, "spatial_grd")
    sat_map = vgg_features(tf.concat([x_sat, x_sat_semi], axis=0), "vgg_sat", vgg_path,
                           vgg_width, vgg_seed + 1)[-1]
    both_global, sat_local = safa_aggregate(sat_map, dimension, trainable, "spatial_sat")
    sat_global, semi_global = tf.split(both_global, 2, axis=0)
    return sat_global, semi_global, grd_global, sat_local, grd_local


def SAFA_semi(x_sat, x_sat_semi, x_grd, dimension=8, trainable=True, vgg_path=None,
              vgg_width=1.0, vgg_seed=0):
    """Returns (sat_global, sat_global_semi, grd_global, sat_local, grd_local)."""
    sat_global, semi_global, grd_global, sat_local, grd_local = _safa_with_semi(
        x_sat, x_sat_semi, x_grd, dimension, trainable, vgg_path, vgg_width, vgg_seed)
    return end_points.WithSemi(l2_normalized(sat_global), l2_normalized(semi_global), l2_normalized(grd_global),
                               sat_local, grd_local)


def SAFA_delta(x_sat, x_sat_semi, x_grd, dimension=8, trainable=True, out_dim=2,
               delta_hidden=512, vgg_path=None, vgg_width=1.0, vgg_seed=0):
    """Returns (sat_global, sat_global_semi, grd_global, sat_local, grd_local, delta)."""
    sat_global, semi_global, grd_global, sat_local, grd_local = _safa_with_semi(
        x_sat, x_sat_semi, x_grd, dimension, trainable, vgg_path, vgg_width, vgg_seed)
    delta = _offset_head(sat_global, grd_global, out_dim, delta_hidden)
    return end_points.WithSemiOffset(l2_normalized(sat_global), l2_normalized(semi_global), l2_normalized(grd_global),
                                     sat_local, grd_local, delta)


def SAFA_delta_validate(x_sat, x_grd, dimension=8, trainable=True, out_dim=2,
                        delta_hidden=512, vgg_path=None, vgg_width=1.0, vgg_seed=0):
    """SAFA_delta without the semi-positive input.
    Returns (sat_global, grd_global, sat_local, grd_local, delta)."""
    grd_map = vgg_features(x_grd, "vgg_grd", vgg_path, vgg_width, vgg_seed)[-1]
    grd_global, grd_local = safa_aggregate(grd_map, dimension, trainable, "spatial_grd")
    sat_map = vgg_features(x_sat, "vgg_sat", vgg_path, vgg_width, vgg_seed + 1)[-1]
    sat_global, sat_local = safa_aggregate(sat_map, dimension, trainable, "spatial_sat")
    delta = _offset_head(sat_global, grd_global, out_dim, delta_hidden)
    return end_points.WithOffset(l2_normalized(sat_global), l2_normalized(grd_global), sat_local, grd_local, delta)


def _gap_fc_no_dropout(sat_local, grd_local, fc_dim):
    """Global average pooling and the shared `Gap_local/fc1` layer, without dropout."""
    with tf.variable_scope("Gap_local") as scope:
        x_sat = tf.reduce_mean(sat_local, axis=[1, 2])
        x_grd = tf.reduce_mean(grd_local, axis=[1, 2])
        channels = layers.static_dim(x_sat, -1, "Gap_local input")
        fc_sat = fc_layer(x_sat, channels, fc_dim, 0.005, 0.1, "fc1", activation_fn=None)
        scope.reuse_variables()
        fc_grd = fc_layer(x_grd, channels, fc_dim, 0.005, 0.1, "fc1", activation_fn=None)
    return fc_sat, fc_grd


def clean_siamese_delta(x_sat, x_sat_semi, x_grd, out_dim=2, fc_dim=4096, delta_hidden=512,
                        vgg_path=None, vgg_width=1.0, vgg_seed=0):
    """Returns (sat_global, sat_global_semi, grd_global, sat_local, grd_local, delta)."""
    grd_local = vgg_features(x_grd, "vgg_grd", vgg_path, vgg_width, vgg_seed)[-1]
    sat_local = vgg_features(tf.concat([x_sat, x_sat_semi], axis=0), "vgg_sat", vgg_path,
                             vgg_width, vgg_seed + 1)[-1]
    fc_both, fc_grd = _gap_fc_no_dropout(sat_local, grd_local, fc_dim)
    fc_sat, fc_semi = tf.split(fc_both, 2, axis=0)
    delta = _offset_head(fc_sat, fc_grd, out_dim, delta_hidden)
    return end_points.WithSemiOffset(l2_normalized(fc_sat), l2_normalized(fc_semi), l2_normalized(fc_grd),
                                     sat_local, grd_local, delta)


def clean_siamese_delta_validate(x_sat, x_grd, out_dim=2, fc_dim=4096, delta_hidden=512,
                                 vgg_path=None, vgg_width=1.0, vgg_seed=0):
    """Returns (sat_global, grd_global, sat_local, grd_local, delta)."""
    grd_local = vgg_features(x_grd, "vgg_grd", vgg_path, vgg_width, vgg_seed)[-1]
    sat_local = vgg_features(x_sat, "vgg_sat", vgg_path, vgg_width, vgg_seed + 1)[-1]
    fc_sat, fc_grd = _gap_fc_no_dropout(sat_local, grd_local, fc_dim)
    delta = _offset_head(fc_sat, fc_grd, out_dim, delta_hidden)
    return end_points.WithOffset(l2_normalized(fc_sat), l2_normalized(fc_grd), sat_local, grd_local, delta)
