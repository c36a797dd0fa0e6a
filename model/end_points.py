"""What the network builders return: named tuples of their end points, in the original's return
order (so `a, b, c, d = SAFA(...)` still unpacks as the original code does) and by name
(`SAFA(...).grd_global`), as tf-slim's nets return `end_points`.

*_global are L2-normalised descriptors and *_global_raw the same before normalising; *_local
the maps the descriptors pool (SAFA: flattened to (B, H*W, C)); sat_* of a builder with a
semi-positive input holds the positive and semi-positive tiles (2B rows) where it is a map.
"""
from collections import namedtuple

Siamese = namedtuple("Siamese", "sat_global grd_global sat_local grd_local")
SiameseWithFc = namedtuple("SiameseWithFc", Siamese._fields + ("fc_sat", "fc_grd"))
SafaOriginal = namedtuple("SafaOriginal",
                          "sat_global grd_global sat_global_raw grd_global_raw sat_conv5_3 grd_conv5_3")
WithSemi = namedtuple("WithSemi", "sat_global sat_global_semi grd_global sat_local grd_local")
WithSemiOffset = namedtuple("WithSemiOffset", WithSemi._fields + ("delta",))
WithOffset = namedtuple("WithOffset", Siamese._fields + ("delta",))
Samp = namedtuple("Samp", WithSemi._fields + ("heatmap", "heatmap_semi", "L", "L_semi"))
SampOriginal = namedtuple("SampOriginal", "sat_global sat_global_semi grd_global sat_global_raw grd_global_raw "
                                          "sat_local grd_local sat_conv5_3 grd_conv5_3 heatmap heatmap_semi L L_semi")


def pick(end_points, *names):
    """{name: tensor} of the named end points."""
    return {name: getattr(end_points, name) for name in names}
