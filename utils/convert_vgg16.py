"""Convert Keras' ImageNet VGG16 weights (.h5) to the tensorflow-vgg `vgg16.npy` that
model/vgg.py (like VIGOR's backbone/VGG.py) loads:

    python -m utils.convert_vgg16 --h5 vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5 \
        --out data/vgg16.npy

The output is a pickled dict {'conv1_1': [W (3, 3, in, out), b (out,)], ..., 'conv5_3': [...]}
with the 13 convolutions only (the notop file has no fully connected layers, and the model
does not use them).

Both Keras HDF5 layouts are read: the original release file, whose layer groups
`block1_conv1` ... `block5_conv3` hold `<layer>_W_1:0` and `<layer>_b_1:0`, and files written
by later Keras 2 versions, whose groups hold `<layer>/kernel:0` and `<layer>/bias:0`. Kernels
must be in TensorFlow order (3, 3, in, out), which is what the `tf_dim_ordering` file holds.

Input convention: these weights were converted from Caffe and expect Keras' "caffe"
preprocessing, i.e. BGR channel order with the ImageNet means 103.939, 116.779, 123.68
subtracted, no scaling. That is what the data pipeline feeds (OpenCV BGR images minus
103.939, 116.779, 123.6, as VIGOR), so the converted file drops in for tensorflow-vgg's.
"""
import argparse
import os
import sys

import numpy as np

from utils.errors import ConversionError

# (Keras layer group, tensorflow-vgg key), in network order.
LAYER_MAP = tuple(("block%d_conv%d" % (block, i), "conv%d_%d" % (block, i))
                  for block, count in ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3))
                  for i in range(1, count + 1))


def _decode(name):
    return name.decode("utf8") if isinstance(name, bytes) else str(name)


def _layer_datasets(group):
    """The weight arrays of one Keras layer group, in Keras' own order when it is recorded."""
    import h5py

    names = group.attrs.get("weight_names")
    if names is not None and len(names):
        return [np.asarray(group[_decode(n)]) for n in names]
    found = []
    group.visititems(lambda _, obj: found.append(np.asarray(obj))
                     if isinstance(obj, h5py.Dataset) else None)
    return found


def _kernel_and_bias(arrays, h5_path, layer):
    kernels = [a for a in arrays if a.ndim == 4]
    biases = [a for a in arrays if a.ndim == 1]
    if len(kernels) != 1 or len(biases) != 1:
        raise ConversionError("%s: layer '%s' should hold one 4-D kernel and one bias, found "
                              "arrays of shapes %s" % (h5_path, layer, [a.shape for a in arrays]))
    kernel, bias = kernels[0].astype(np.float32), biases[0].astype(np.float32)
    if kernel.shape[:2] != (3, 3) or kernel.shape[3] != bias.shape[0]:
        raise ConversionError("%s: layer '%s' has kernel %s and bias %s; expected a TensorFlow-"
                              "ordered (3, 3, in, out) kernel (use the tf_dim_ordering file)"
                              % (h5_path, layer, kernel.shape, bias.shape))
    return kernel, bias


def read_keras_vgg16(h5_path):
    """{tensorflow-vgg key: [kernel, bias]} from a Keras VGG16 weights file."""
    import h5py

    if not os.path.isfile(h5_path):
        raise FileNotFoundError("Keras VGG16 weights not found: %s" % h5_path)
    weights = {}
    with h5py.File(h5_path, "r") as h5:
        root = h5["model_weights"] if "model_weights" in h5 else h5  # full-model saves
        previous_channels = 3
        for layer, key in LAYER_MAP:
            if layer not in root:
                raise ConversionError("%s has no layer group '%s' (groups: %s); is it a Keras "
                                      "VGG16 weights file?" % (h5_path, layer, sorted(root)))
            kernel, bias = _kernel_and_bias(_layer_datasets(root[layer]), h5_path, layer)
            if kernel.shape[2] != previous_channels:
                raise ConversionError("%s: layer '%s' takes %d channels but the previous layer "
                                      "gives %d" % (h5_path, layer, kernel.shape[2],
                                                    previous_channels))
            previous_channels = kernel.shape[3]
            weights[key] = [kernel, bias]
    return weights


def write_vgg16_npy(weights, out_path):
    directory = os.path.dirname(os.path.abspath(out_path))
    os.makedirs(directory, exist_ok=True)
    holder = np.empty((), dtype=object)
    holder[()] = weights
    with open(out_path, "wb") as f:
        np.save(f, holder, allow_pickle=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--h5", required=True, help="Keras VGG16 (notop) weights file")
    parser.add_argument("--out", default=os.path.join("data", "vgg16.npy"),
                        help="output npy path (default data/vgg16.npy)")
    args = parser.parse_args(argv)
    try:
        weights = read_keras_vgg16(args.h5)
    except (FileNotFoundError, ConversionError) as error:
        print("error: %s" % error, file=sys.stderr)
        return 1
    write_vgg16_npy(weights, args.out)
    total = sum(w.size + b.size for w, b in weights.values())
    print("wrote %s: %d conv layers, %d parameters" % (args.out, len(weights), total))
    return 0


if __name__ == "__main__":
    sys.exit(main())
