import h5py
import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from model.vgg import VGG16_LAYER_KEYS, Vgg16
from utils import convert_vgg16
from utils.errors import ConversionError

# A narrow VGG16 (8 channels per block start) keeps the files tiny; the layout is Keras'.
CHANNELS = (8, 8, 16, 16, 32, 32, 32, 64, 64, 64, 64, 64, 64)
KERAS_LAYERS = [layer for layer, _ in convert_vgg16.LAYER_MAP]


def _random_layers(seed=0):
    rng = np.random.default_rng(seed)
    arrays, previous = [], 3
    for out in CHANNELS:
        arrays.append((rng.standard_normal((3, 3, previous, out)).astype(np.float32),
                       rng.standard_normal(out).astype(np.float32)))
        previous = out
    return arrays


def write_original_layout(path, arrays):
    """The keras release file: block groups with `<layer>_W_1:0`, `<layer>_b_1:0` datasets."""
    with h5py.File(path, "w") as h5:
        h5.attrs["layer_names"] = [n.encode() for n in ["input_1"] + KERAS_LAYERS]
        h5.create_group("input_1").attrs["weight_names"] = []
        for layer, (kernel, bias) in zip(KERAS_LAYERS, arrays):
            group = h5.create_group(layer)
            names = ["%s_W_1:0" % layer, "%s_b_1:0" % layer]
            group.attrs["weight_names"] = [n.encode() for n in names]
            group.create_dataset(names[0], data=kernel)
            group.create_dataset(names[1], data=bias)


def write_keras2_layout(path, arrays, skip=None):
    """Keras 2 save_weights: block groups with a `<layer>/kernel:0`, `<layer>/bias:0` subgroup."""
    with h5py.File(path, "w") as h5:
        h5.attrs["layer_names"] = [n.encode() for n in KERAS_LAYERS]
        for layer, (kernel, bias) in zip(KERAS_LAYERS, arrays):
            if layer == skip:
                continue
            group = h5.create_group(layer)
            names = ["%s/kernel:0" % layer, "%s/bias:0" % layer]
            group.attrs["weight_names"] = [n.encode() for n in names]
            group.create_dataset(names[0], data=kernel)
            group.create_dataset(names[1], data=bias)


@pytest.mark.parametrize("writer", [write_original_layout, write_keras2_layout])
def test_converts_both_keras_layouts(tmp_path, writer):
    arrays = _random_layers()
    h5_path, npy_path = tmp_path / "vgg16.h5", tmp_path / "out" / "vgg16.npy"
    writer(str(h5_path), arrays)
    assert convert_vgg16.main(["--h5", str(h5_path), "--out", str(npy_path)]) == 0
    data = np.load(str(npy_path), encoding="latin1", allow_pickle=True).item()
    assert sorted(data) == sorted(VGG16_LAYER_KEYS)
    for key, (kernel, bias) in zip(VGG16_LAYER_KEYS, arrays):
        np.testing.assert_array_equal(data[key][0], kernel)
        np.testing.assert_array_equal(data[key][1], bias)


def test_converted_file_initialises_the_backbone(tmp_path, graph):
    arrays = _random_layers(1)
    h5_path, npy_path = tmp_path / "vgg16.h5", tmp_path / "vgg16.npy"
    write_keras2_layout(str(h5_path), arrays)
    convert_vgg16.write_vgg16_npy(convert_vgg16.read_keras_vgg16(str(h5_path)), str(npy_path))
    with tf.variable_scope("vgg_sat"):
        Vgg16(str(npy_path)).build(tf.placeholder(tf.float32, [None, 32, 32, 3]))
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        values = sess.run(tf.global_variables())
    for i, (kernel, bias) in enumerate(arrays):
        np.testing.assert_array_equal(values[2 * i], kernel)
        np.testing.assert_array_equal(values[2 * i + 1], bias)


def test_missing_layer_names_file_and_layer(tmp_path, capsys):
    h5_path = tmp_path / "broken.h5"
    write_keras2_layout(str(h5_path), _random_layers(), skip="block4_conv2")
    with pytest.raises(ConversionError, match=r"broken\.h5.*block4_conv2"):
        convert_vgg16.read_keras_vgg16(str(h5_path))
    assert convert_vgg16.main(["--h5", str(h5_path), "--out", str(tmp_path / "x.npy")]) == 1
    assert "block4_conv2" in capsys.readouterr().err
    assert not (tmp_path / "x.npy").exists()


def test_theano_ordered_kernel_is_refused(tmp_path):
    arrays = _random_layers()
    arrays[0] = (arrays[0][0].transpose(3, 2, 0, 1).copy(), arrays[0][1])
    h5_path = tmp_path / "th.h5"
    write_original_layout(str(h5_path), arrays)
    with pytest.raises(ConversionError, match="block1_conv1"):
        convert_vgg16.read_keras_vgg16(str(h5_path))


def test_missing_h5_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.h5"):
        convert_vgg16.read_keras_vgg16(str(tmp_path / "nope.h5"))
