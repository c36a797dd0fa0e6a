"""SAMP's heatmap decoder: a 1x1 bottleneck is upsampled to twice the satellite side with
transposed convolutions, concatenating the satellite VGG maps on the way (U-Net style).

At the paper's size (satellite 320) the stages run 1 -> 5 -> 10 -> 20 (+conv5_3) -> 40 (+conv4_3)
-> 80 (+conv3_3) -> 160 (+conv2_2) -> 320 (+conv1_2) -> 640. The first upsampling has stride
satellite_side / 64 (5 at 320), so the satellite side must be a multiple of 64.
"""
import tensorflow.compat.v1 as tf

from model import layers

# (layer name, kind, divisor of `width` for its output channels, name of the skip map
# concatenated to its input or None). The last layer is added separately (1 channel, linear).
DECODER_LAYERS = (
    ("deconv0", "up0", 1, None), ("conv0_1", "conv", 1, None),
    ("deconv1", "up", 2, None), ("conv1_1", "conv", 4, None), ("conv1_2", "conv", 4, None),
    ("deconv2", "up", 8, None), ("conv2_1", "conv", 8, "sat32"), ("conv2_2", "conv", 8, None),
    ("deconv3", "up", 16, None), ("conv3_1", "conv", 16, "sat64"), ("conv3_2", "conv", 16, None),
    ("deconv4", "up", 32, None), ("conv4_1", "conv", 32, "sat128"), ("conv4_2", "conv", 32, None),
    ("deconv5", "up", 64, None), ("conv5_1", "conv", 64, "sat256"), ("conv5_2", "conv", 64, None),
    ("deconv6", "up", 128, None), ("conv6_1", "conv", 128, "sat512"), ("conv6_2", "conv", 128, None),
    ("deconv7", "up", 256, None), ("conv7_1", "conv", 512, None),
)
OUTPUT_LAYER = "conv7_2"
MIN_CHANNELS = 4
# How the bottleneck (the panorama's only way into the decoder) reaches the later scales. "none" is
# SAMP's: only through the upsampled 1x1 map. The others are OFF-by-default variants
# (docs/PROBES.md): "broadcast" concatenates the bottleneck, tiled, beside every satellite skip (as
# CCVPE feeds its descriptor at every scale); "match" concatenates, beside every skip, the cosine
# similarity of each skip position with a projection of the bottleneck onto that skip's channels
# (one channel per scale: where the tile looks like what the panorama describes).
QUERY_MODES = ("none", "broadcast", "match")


def first_upsampling_stride(x, sat32):
    """Stride that takes the bottleneck x to a quarter of the side of `sat32` (conv5_3)."""
    x_side = layers.static_dim(x, 1, "decoder bottleneck")
    side = layers.static_dim(sat32, 1, "decoder sat32 (conv5_3)")
    if side % 4 or (side // 4) % x_side:
        raise ValueError("the decoder needs a satellite side that is a multiple of 64 (conv5_3 "
                         "side a multiple of 4), got a conv5_3 side of %d" % side)
    return side // 4 // x_side


def live_output_bias(initializer):
    """The output bias drawn as in the original but made non-negative (docs/FAITHFULNESS.md, M28).

    The heatmap is relu(logits) and, after ~20 ReLU layers from glorot init, the logits are
    close to the output bias everywhere: a negative draw gives an all-zero heatmap whose
    gradient is zero, so the decoder never trains (a coin flip per decoder in the original).
    """
    def draw(shape, dtype=tf.float32, partition_info=None):
        return tf.abs(initializer(shape, dtype=dtype, partition_info=partition_info))
    return draw


class decoder:
    """decoder(width=2048).decode(x, trainable, name, sat512, sat256, sat128, sat64, sat32).

    sat512 ... sat32 are the satellite VGG maps conv1_2, conv2_2, conv3_3, conv4_3, conv5_3 (the
    names are their sides for a 512-pixel tile). `width` is the channel count of the first stage;
    later stages use width/2 ... width/512, at least 4 channels (as at the paper's width). Returns (B, 2S, 2S, 1) logits.
    """

    def __init__(self, width=2048, query="none"):
        if query not in QUERY_MODES:
            raise ValueError(f"decoder query mode must be one of {QUERY_MODES}, not {query!r}")
        self.width = int(width)
        self.query = query

    def channels(self, divisor):
        # 4 is the narrowest layer at the paper's width (conv7_1); narrower layers at small
        # widths would squeeze the heatmap through one dying ReLU channel
        return max(MIN_CHANNELS, self.width // divisor)

    def decode(self, x, trainable, name, sat512, sat256, sat128, sat64, sat32,
               reuse=tf.AUTO_REUSE):
        skips = {"sat512": sat512, "sat256": sat256, "sat128": sat128, "sat64": sat64,
                 "sat32": sat32}
        init = layers.glorot_normal
        with tf.variable_scope(name, reuse=reuse):
            net = x
            for layer_name, kind, divisor, skip in DECODER_LAYERS:
                if skip is not None:
                    net = tf.concat([net, skips[skip]] + self._query_maps(x, skips[skip], skip, trainable), axis=3)
                out_channels = self.channels(divisor)
                if kind == "conv":
                    net = layers.conv2d(net, out_channels, layer_name, init(), init(),
                                        trainable=trainable)
                else:
                    stride = first_upsampling_stride(x, sat32) if kind == "up0" else 2
                    net = layers.conv2d_transpose(net, out_channels, stride, layer_name, init(),
                                                  init(), trainable=trainable)
            return layers.conv2d(net, 1, OUTPUT_LAYER, init(), live_output_bias(init()),
                                 activation=None, trainable=trainable)

    def _query_maps(self, x, skip_map, skip_name, trainable):
        """The maps the query mode adds beside a skip ([] for SAMP's decoder); x is the (B, 1, 1, D) bottleneck."""
        if self.query == "none":
            return []
        if self.query == "broadcast":
            return [tf.tile(x, [1, layers.static_dim(skip_map, 1, f"decoder skip {skip_name}"),
                                layers.static_dim(skip_map, 2, f"decoder skip {skip_name}"), 1])]
        channels = layers.static_dim(skip_map, 3, f"decoder skip {skip_name}")
        projected = layers.conv2d(x, channels, f"match_{skip_name}", layers.glorot_normal(),
                                  layers.constant(0.0), activation=None, trainable=trainable, kernel_size=1)
        return [tf.reduce_sum(tf.nn.l2_normalize(skip_map, axis=3) * tf.nn.l2_normalize(projected, axis=3),
                              axis=3, keepdims=True)]
