"""The networks the stages train (VIGOR's Siamese-VGG and SAFA networks, SAMP's, University-1652's two-view baseline), built from the `model:` part of a config.

Each returns a dict of named end points (model/end_points.py), so a stage's losses read like the
paper.
"""
import tensorflow.compat.v1 as tf

from model import models, models_two_dec
from model import two_view as two_view_model
from model.end_points import pick
from model.inputs import bridge_placeholder


def _vgg(cfg):
    return {"vgg_path": cfg.model.vgg16_npy, "vgg_width": cfg.model.vgg_width}


def dropout_keep_prob():
    """The graph's one `keep_prob` placeholder (default 1: no dropout when scanning); a stage that
    trains with dropout feeds its training value (train_first_E_1.py, Siamese_VGG)."""
    found = tf.get_collection("keep_prob")
    if found:
        return found[0]
    with tf.name_scope(None):
        keep_prob = tf.placeholder_with_default(1.0, [], name="keep_prob")
    tf.add_to_collection("keep_prob", keep_prob)
    return keep_prob


def siamese_vgg(inputs, cfg):
    """VIGOR's Siamese-VGG (`clean_siamese`): two VGG16 branches, global average pooling, dropout and
    the shared fc layer `Gap_local/fc1` (model.fc_dim wide)."""
    end_points = models.clean_siamese(inputs.sat, inputs.grd, dropout_keep_prob(), fc_dim=cfg.model.fc_dim,
                                      **_vgg(cfg))
    return pick(end_points, "sat_global", "grd_global")


def safa(inputs, cfg):
    """VIGOR's SAFA: two VGG16 branches with spatial-aware aggregation (E_1a, and SAFA without mining)."""
    end_points = models.SAFA(inputs.sat, inputs.grd, dimension=cfg.model.dimension, **_vgg(cfg))
    return pick(end_points, "sat_global", "grd_global")


def safa_offset(inputs, cfg):
    """VIGOR's SAFA with a semi-positive branch and the offset MLP (E_1b)."""
    end_points = models.SAFA_delta(inputs.sat, inputs.sat_semi, inputs.grd, dimension=cfg.model.dimension,
                                   out_dim=2, **_vgg(cfg))
    return pick(end_points, "sat_global", "sat_global_semi", "grd_global", "delta")


def samp(inputs, cfg):
    """SAMP: SAFA + two heatmap decoders and two Cholesky heads (E_2_1, E_2_2, E_3)."""
    m = cfg.model
    end_points = models_two_dec.SAFA_delta(inputs.sat, inputs.sat_semi, inputs.grd, dimension=m.dimension,
                                           out_dim=m.out_dim, fc_dim=m.fc_dim,
                                           cholesky_hidden=m.cholesky_hidden, decoder_width=m.decoder_width,
                                           initial_sigma_px=m.cholesky_initial_sigma_px,
                                           decoder_query=m.decoder_query, **_vgg(cfg))
    return pick(end_points, "sat_global", "sat_global_semi", "grd_global", "heatmap", "heatmap_semi", "L", "L_semi")


def two_view(inputs, cfg, num_classes=None):
    """University-1652's baseline: a VGG16 branch per view (drone and satellite one set of weights
    with model.share_drone_satellite), GAP or SAFA, the shared classifier's bottleneck as the
    descriptor; its logits over num_classes training buildings when given (training)."""
    m = cfg.model
    end_points = two_view_model.two_view_net(inputs.sat, inputs.grd, aggregation=m.aggregation,
                                             dimension=m.dimension, share_drone_satellite=m.share_drone_satellite,
                                             bottleneck=m.bottleneck, num_classes=num_classes, **_vgg(cfg))
    names = ("sat_global", "grd_global") + (("sat_logits", "grd_logits") if num_classes else ())
    return pick(end_points, *names)


def three_view(inputs, cfg, num_classes):
    """University-1652's three-view training (`three_view_net`): two_view's graph plus the bridge
    view (model.bridge_view) fed at `bridge_x` through the satellite's branch and the shared classifier.
    Training only: evaluation scans the two-view graph, which holds the same variables."""
    m = cfg.model
    bridge_x = bridge_placeholder(cfg.data.sat_size)
    end_points = two_view_model.three_view_net(inputs.sat, inputs.grd, bridge_x, num_classes,
                                               aggregation=m.aggregation, dimension=m.dimension,
                                               share_drone_satellite=m.share_drone_satellite,
                                               bottleneck=m.bottleneck, **_vgg(cfg))
    net = pick(end_points, "sat_global", "grd_global", "sat_logits", "grd_logits", "bridge_global", "bridge_logits")
    net["bridge_x"] = bridge_x
    return net
