"""University-1652's baseline (Zheng et al. 2020, the baseline's `two_view_net` / `three_view_net`):
a VGG16 branch per view, a global descriptor per image, and one classifier over the training
buildings shared by every view (the instance loss reads its logits).

Per view: VGG16 conv5_3 -> aggregation ('gap': global average pooling, the baseline's `pool=avg`;
'safa': SAFA's spatial-aware maps, model/models.py) -> the classifier's bottleneck (a linear
layer, `classifier/bottleneck`) -> L2 normalisation: the retrieval descriptor (the baseline
evaluates the bottleneck's output). The logits (`classifier/logits`) read the bottleneck.
Departures: no batch normalisation and no dropout in the bottleneck (the graph has no training
switch: the trainer's validation scans through the training graph).

share_drone_satellite: the drone (grd) and satellite branches are one set of weights, built under
one variable scope (`vgg_shared`, `spatial_shared`) with reuse; otherwise each view has VIGOR's
scopes and seeds (vgg_grd with vgg_seed, vgg_sat with vgg_seed + 1, spatial_grd, spatial_sat).

three_view_net (the baseline's three-view form, training only): the two-view graph, built first
and unchanged, plus a bridge view (the drone images when the queries are street views) through
the satellite's branch (the baseline shares the drone and satellite branches) and the same
classifier: it adds no variable.
"""
from collections import namedtuple

import tensorflow.compat.v1 as tf

from model import layers
from model.models import fc_layer, l2_normalized, safa_aggregate
from model.vgg import Vgg16

AGGREGATIONS = ("gap", "safa")
SHARED = "shared"
TwoView = namedtuple("TwoView", "sat_global grd_global sat_logits grd_logits")
ThreeView = namedtuple("ThreeView", TwoView._fields + ("bridge_global", "bridge_logits"))


def _aggregate(conv5, aggregation, dimension, name):
    if aggregation == "gap":
        return tf.reduce_mean(conv5, axis=[1, 2])
    if aggregation == "safa":
        return safa_aggregate(conv5, dimension, True, f"spatial_{name}")[0]
    raise ValueError(f"aggregation must be one of {AGGREGATIONS}, not {aggregation!r}")


def view_branch(x, name, aggregation, dimension, vgg_path, vgg_width, vgg_seed, reuse=False):
    """The un-normalised global descriptor of one view, its variables under vgg_<name>
    (and spatial_<name> for SAFA); reuse=True builds it on an existing branch's weights."""
    with tf.variable_scope(tf.get_variable_scope(), reuse=reuse):
        with tf.variable_scope(f"vgg_{name}"):
            conv5 = Vgg16(vgg_path, width=vgg_width, seed=vgg_seed).build(x)[-1]
        return _aggregate(conv5, aggregation, dimension, name)


def classifier(descriptor, bottleneck, num_classes):
    """The shared class block: (L2-normalised bottleneck output, logits or None)."""
    with tf.variable_scope("classifier"):
        width = layers.static_dim(descriptor, -1, "classifier input")
        feature = fc_layer(descriptor, width, bottleneck, 0.005, 0.0, "bottleneck", activation_fn=None)
        logits = None
        if num_classes:
            logits = fc_layer(feature, bottleneck, int(num_classes), 0.001, 0.0, "logits", activation_fn=None)
    return l2_normalized(feature), logits


def two_view_net(x_sat, x_grd, aggregation="gap", dimension=8, share_drone_satellite=True, bottleneck=512,
                 num_classes=None, vgg_path=None, vgg_width=1.0, vgg_seed=0):
    """TwoView(sat_global, grd_global, sat_logits, grd_logits); the logits are None without num_classes
    (evaluation: the descriptors need no classifier)."""
    branch = dict(aggregation=aggregation, dimension=dimension, vgg_path=vgg_path, vgg_width=vgg_width)
    sat, grd = _two_branches(x_sat, x_grd, share_drone_satellite, vgg_seed, branch)
    sat_global, sat_logits = classifier(sat, bottleneck, num_classes)
    grd_global, grd_logits = classifier(grd, bottleneck, num_classes)
    return TwoView(sat_global, grd_global, sat_logits, grd_logits)


def satellite_branch_name(share_drone_satellite):
    return SHARED if share_drone_satellite else "sat"


def _two_branches(x_sat, x_grd, share_drone_satellite, vgg_seed, branch):
    if share_drone_satellite:
        sat = view_branch(x_sat, SHARED, vgg_seed=vgg_seed, **branch)
        grd = view_branch(x_grd, SHARED, vgg_seed=vgg_seed, reuse=True, **branch)
    else:
        grd = view_branch(x_grd, "grd", vgg_seed=vgg_seed, **branch)
        sat = view_branch(x_sat, "sat", vgg_seed=vgg_seed + 1, **branch)
    return sat, grd


def three_view_net(x_sat, x_grd, x_bridge, num_classes, aggregation="gap", dimension=8, share_drone_satellite=True,
                   bottleneck=512, vgg_path=None, vgg_width=1.0, vgg_seed=0):
    """ThreeView: two_view_net's end points (same variables, same order) plus the bridge view's
    descriptor and logits, on the satellite's branch and the one classifier."""
    two = two_view_net(x_sat, x_grd, aggregation=aggregation, dimension=dimension,
                       share_drone_satellite=share_drone_satellite, bottleneck=bottleneck, num_classes=num_classes,
                       vgg_path=vgg_path, vgg_width=vgg_width, vgg_seed=vgg_seed)
    bridge = view_branch(x_bridge, satellite_branch_name(share_drone_satellite), aggregation, dimension, vgg_path,
                         vgg_width, vgg_seed, reuse=True)
    bridge_global, bridge_logits = classifier(bridge, bottleneck, num_classes)
    return ThreeView(*two, bridge_global, bridge_logits)
