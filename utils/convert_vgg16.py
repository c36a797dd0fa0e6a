"""Convert Keras' ImageNet VGG16 weights (.h5) to the tensorflow-vgg `vgg16.npy` that
model/vgg.py (like VIGOR's backbone/VGG.py) loads. The command line is tools/convert_vgg16.py:

    python -m tools.convert_vgg16 --download        # fetch, check and convert Keras' file
    python -m tools.convert_vgg16 --h5 vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5

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
import hashlib
import os
import urllib.request
from dataclasses import dataclass

import numpy as np

from utils.errors import ConversionError


@dataclass(frozen=True)
class WeightsFile:
    """A published weights file: its name, where it is, and what it must be once downloaded."""
    name: str
    url: str
    md5: str
    size: int


KERAS_VGG16_NOTOP = WeightsFile(
    name="vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
    url="https://storage.googleapis.com/tensorflow/keras-applications/vgg16/"
        "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
    # file_hash= of keras.applications.vgg16 (keras-team/keras, keras/src/applications/vgg16.py,
    # commit 51d7e77; the same in keras 3.15.1); get_file reads a 32-digit hash as md5.
    md5="6d6bbae143d832006294945121d1f1fc",
    # The byte count Keras' download progress bar ends on ("58889256/58889256"), which is also
    # the end-of-file address HDF5 records in the file's superblock.
    size=58889256,
)
DOWNLOAD_CHUNK = 1 << 20

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
        raise FileNotFoundError("Keras VGG16 weights not found: %s (check the path, or let "
                                "python -m tools.convert_vgg16 --download fetch them)" % h5_path)
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
    """Write the dict as a pickled npy; an interrupted write leaves no file at out_path."""
    directory = os.path.dirname(os.path.abspath(out_path))
    os.makedirs(directory, exist_ok=True)
    holder = np.empty((), dtype=object)
    holder[()] = weights
    partial = out_path + ".partial"
    try:
        with open(partial, "wb") as f:
            np.save(f, holder, allow_pickle=True)
        os.replace(partial, out_path)
    finally:
        _remove_if_present(partial)


def _remove_if_present(path):
    if os.path.exists(path):
        os.remove(path)


def _md5_of_file(path):
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(DOWNLOAD_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _stream_to(url, path, timeout):
    """Copy url to path; (bytes written, md5). Network errors propagate (URLError, OSError)."""
    digest, written = hashlib.md5(), 0
    with urllib.request.urlopen(url, timeout=timeout) as response, open(path, "wb") as f:
        for chunk in iter(lambda: response.read(DOWNLOAD_CHUNK), b""):
            f.write(chunk)
            digest.update(chunk)
            written += len(chunk)
    return written, digest.hexdigest()


def _check_download(expected, url, written, md5):
    by_hand = ("run the same command again, or download it by hand from %s and convert it with "
               "--h5" % expected.url)
    if written != expected.size:
        raise ConversionError("%s from %s has %d bytes, expected %d (a cut download or another "
                              "file): %s" % (expected.name, url, written, expected.size, by_hand))
    if md5 != expected.md5:
        raise ConversionError("%s from %s has md5 %s, expected %s (not Keras' file): %s"
                              % (expected.name, url, md5, expected.md5, by_hand))


def is_verified(path, expected):
    """True when path holds the expected file (same size and md5)."""
    return (os.path.isfile(path) and os.path.getsize(path) == expected.size
            and _md5_of_file(path) == expected.md5)


def download_verified(expected, cache_dir, url=None, timeout=60):
    """Path of `expected` in cache_dir, downloaded (from url, default expected.url) unless a
    verified copy is already there. The download goes to a `.partial` file that becomes the
    real one only once its size and md5 match; otherwise it is removed and ConversionError
    raised. Network failures propagate as urllib.error.URLError or OSError (timeouts)."""
    path = os.path.join(cache_dir, expected.name)
    if is_verified(path, expected):
        return path
    os.makedirs(cache_dir, exist_ok=True)
    url = url or expected.url
    partial = path + ".partial"
    try:
        written, md5 = _stream_to(url, partial, timeout)
        _check_download(expected, url, written, md5)
        os.replace(partial, path)
    finally:
        _remove_if_present(partial)
    return path
