"""VGG16 convolutional backbone (the 13 conv layers, no fully connected part).

Weights come from a tensorflow-vgg style `vgg16.npy` (a pickled dict
{'conv1_1': [W (3, 3, 3, 64), b (64,)], ..., 'conv5_3': [...]}, as VIGOR uses), or are drawn at
random with a fixed seed (`vgg16_npy_path="random"`; demos and tests). The pretrained weights
come from Caffe and expect BGR images with the ImageNet means subtracted.

Variables are named like the tf.layers graph of the original code, inside the caller's
variable scope: `conv2d/kernel`, `conv2d/bias`, `conv2d_1/...`, ..., `conv2d_12/...`.
"""
import os

import numpy as np
import tensorflow.compat.v1 as tf

from model import layers

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_NPY_PATH = os.path.join(REPO_ROOT, "data", "vgg16.npy")
RANDOM = "random"

# (block, number of convolutions, channels); a 2x2 max pool follows every block but the last.
VGG16_BLOCKS = ((1, 2, 64), (2, 2, 128), (3, 3, 256), (4, 3, 512), (5, 3, 512))
VGG16_LAYER_KEYS = tuple("conv%d_%d" % (block, i)
                         for block, count, _ in VGG16_BLOCKS for i in range(1, count + 1))

MISSING_WEIGHTS_HELP = (
    "VGG16 weights not found at {path}: get Keras' ImageNet weights, checked and converted, with "
    "python -m tools.convert_vgg16 --download --out {path} (without a network: data/DATASET.md "
    "has the manual route). For a randomly initialised backbone pass vgg16_npy_path='random'.")


def conv_layer_name(index):
    """tf.layers' automatic name of the index-th convolution in a scope: conv2d, conv2d_1, ..."""
    return "conv2d" if index == 0 else "conv2d_%d" % index


def load_vgg16_npy(path):
    """The 13 conv layers of a tensorflow-vgg npy file as {key: (W, b)} float32 arrays."""
    if not os.path.isfile(path):
        raise FileNotFoundError(MISSING_WEIGHTS_HELP.format(path=path))
    data = np.load(path, encoding="latin1", allow_pickle=True)
    if data.shape != () or not isinstance(data.item(), dict):
        raise ValueError("%s is not a tensorflow-vgg weight file: expected a pickled dict "
                         "{'conv1_1': [W, b], ...}" % path)
    data = data.item()
    weights = {}
    for key in VGG16_LAYER_KEYS:
        if key not in data:
            raise ValueError("%s has no layer '%s' (keys: %s)" % (path, key, sorted(data)))
        kernel, bias = (np.asarray(a, dtype=np.float32) for a in data[key][:2])
        if kernel.ndim != 4 or kernel.shape[:2] != (3, 3) or bias.shape != kernel.shape[-1:]:
            raise ValueError("%s: layer '%s' has kernel %s and bias %s; expected (3, 3, in, out) "
                             "and (out,)" % (path, key, kernel.shape, bias.shape))
        weights[key] = (kernel, bias)
    return weights


class Vgg16:
    """VGG16 conv backbone; `build(x)` returns (conv1_2, conv2_2, conv3_3, conv4_3, conv5_3).

    vgg16_npy_path: None for <repo>/data/vgg16.npy, a path, or "random".
    width: channel multiplier for small random models (names unchanged; needs "random").
    seed: op seed of the random initialisation.
    """

    def __init__(self, vgg16_npy_path=None, width=1.0, seed=0):
        self.width = float(width)
        self.seed = seed
        if isinstance(vgg16_npy_path, str) and vgg16_npy_path == RANDOM:
            self.weights = None
        else:
            if self.width != 1.0:
                raise ValueError("Vgg16(width=%g) changes the layer shapes, so pretrained weights "
                                 "cannot be used: pass vgg16_npy_path='random'" % width)
            self.weights = load_vgg16_npy(vgg16_npy_path or DEFAULT_NPY_PATH)

    def _initializers(self, index, key, channels):
        if self.weights is None:
            return channels, layers.he_normal(self.seed * 1000 + index), tf.zeros_initializer()
        kernel, bias = self.weights[key]
        return kernel.shape[-1], layers.constant(kernel), layers.constant(bias)

    def build(self, x):
        net = x
        block_outputs = []
        index = 0
        for block, count, channels in VGG16_BLOCKS:
            if block > 1:
                net = layers.max_pool_2x2(net, name="pool%d" % (block - 1))
            for i in range(1, count + 1):
                key = "conv%d_%d" % (block, i)
                out_channels, kernel_init, bias_init = self._initializers(
                    index, key, max(1, int(round(channels * self.width))))
                net = layers.conv2d(net, out_channels, conv_layer_name(index), kernel_init,
                                    bias_init, kernel_name="kernel", bias_name="bias")
                index += 1
            block_outputs.append(net)
        return tuple(block_outputs)
