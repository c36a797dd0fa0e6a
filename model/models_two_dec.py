"""SAMP's network: VIGOR's SAFA siamese pair plus, for the positive and for the semi-positive
tile, a bottleneck MLP feeding a Cholesky (uncertainty) head and a heatmap decoder.

Per branch (scope L for the positive, L_semi for the semi-positive):
  concat(sat descriptor, grd descriptor) -> fc_delta_1 (ReLU, fc_dim) -> mlp_bottleneck (linear,
  out_dim) -> Cholesky head -> L (B, 3); the bottleneck, as a 1x1 map, goes through the decoder
  with that tile's VGG maps as skips -> relu -> heatmap (B, 2S, 2S, 1).
"""
import tensorflow.compat.v1 as tf

from model import end_points, layers
from model.decoder import decoder
from model.models import l2_normalized, fc_layer, safa_aggregate, vgg_features
from model.uncertainty import get_cholesky


def _bottleneck_and_cholesky(sat_descriptor, grd_descriptor, suffix, fc_dim, out_dim,
                             cholesky_hidden, head_index, initial_sigma_px):
    both = tf.concat([sat_descriptor, grd_descriptor], axis=-1)
    both_fc = fc_layer(both, layers.static_dim(both, -1, "SAMP head input"), fc_dim, 0.005, 0.1,
                       "fc_delta_1" + suffix)
    bottleneck = fc_layer(both_fc, fc_dim, out_dim, 0.005, 0.1, "mlp_bottleneck" + suffix,
                          activation_fn=None)
    return bottleneck, get_cholesky(bottleneck, hidden_units=cholesky_hidden, index=head_index,
                                    initial_sigma_px=initial_sigma_px)


def _heatmap(bottleneck, sat_maps, trainable, name, width, query="none"):
    bottleneck_map = tf.reshape(bottleneck, [-1, 1, 1, layers.static_dim(bottleneck, -1,
                                                                           "bottleneck")])
    logits = decoder(width, query).decode(bottleneck_map, trainable, name, *sat_maps)
    return tf.nn.relu(logits)


def SAFA_delta(x_sat, x_sat_semi, x_grd, dimension=8, trainable=True, out_dim=2048,
               original=False, fc_dim=4096, cholesky_hidden=512, decoder_width=2048, initial_sigma_px=None,
               vgg_path=None, vgg_width=1.0, vgg_seed=0, decoder_query="none"):
    """SAMP's two-decoder SAFA_delta (decoder_query: model/decoder.py's QUERY_MODES; "none" is SAMP's).

    Returns (model/end_points.py's Samp) (sat_global, sat_global_semi, grd_global, sat_local, grd_local, heatmap,
    heatmap_semi, L, L_semi); with original=True (sat_global, sat_global_semi, grd_global,
    sat_global_raw, grd_global_raw, sat_local, grd_local, sat_conv5_3, grd_conv5_3, heatmap,
    heatmap_semi, L, L_semi). Descriptors *_global are L2-normalised, *_raw are not; sat_local
    (2B, h*w, C) holds the pooled positive and semi-positive maps, grd_local (B, h*w, C).
    """
    grd_map = vgg_features(x_grd, "vgg_grd", vgg_path, vgg_width, vgg_seed)[-1]
    grd_global, grd_local = safa_aggregate(grd_map, dimension, trainable, "spatial_grd")

    sat_maps = vgg_features(tf.concat([x_sat, x_sat_semi], axis=0), "vgg_sat", vgg_path,
                            vgg_width, vgg_seed + 1)
    pos_maps, semi_maps = zip(*(tf.split(m, 2, axis=0) for m in sat_maps))
    both_global, sat_local = safa_aggregate(sat_maps[-1], dimension, trainable, "spatial_sat")
    sat_global, semi_global = tf.split(both_global, 2, axis=0)

    # Keras numbered the original's two heads per graph: L/cholesky_block/dense, dense_1, then
    # L_semi/cholesky_block_1/dense_2, dense_3; the index gives those names explicitly.
    with tf.variable_scope("L"):
        bottleneck, L = _bottleneck_and_cholesky(sat_global, grd_global, "", fc_dim, out_dim,
                                                 cholesky_hidden, 0, initial_sigma_px)
    with tf.variable_scope("L_semi"):
        bottleneck_semi, L_semi = _bottleneck_and_cholesky(semi_global, grd_global, "_semi",
                                                           fc_dim, out_dim, cholesky_hidden, 1, initial_sigma_px)
    with tf.variable_scope("decoder_semi"):
        heatmap_semi = _heatmap(bottleneck_semi, semi_maps, trainable, "decode_semi",
                                decoder_width, decoder_query)
    with tf.variable_scope("decoder"):
        heatmap = _heatmap(bottleneck, pos_maps, trainable, "decode", decoder_width, decoder_query)

    if original:
        return end_points.SampOriginal(l2_normalized(sat_global), l2_normalized(semi_global), l2_normalized(grd_global),
                                       sat_global, grd_global, sat_local, grd_local, sat_maps[-1], grd_map,
                                       heatmap, heatmap_semi, L, L_semi)
    return end_points.Samp(l2_normalized(sat_global), l2_normalized(semi_global), l2_normalized(grd_global),
                           sat_local, grd_local, heatmap, heatmap_semi, L, L_semi)
