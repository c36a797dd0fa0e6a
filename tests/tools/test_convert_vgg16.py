import dataclasses
import hashlib
import http.server
import os
import socket
import subprocess
import sys
import threading
from functools import partial

import h5py
import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from model.vgg import VGG16_LAYER_KEYS, Vgg16
from tests import paths
from tools import convert_vgg16 as tool
from utils import convert_vgg16
from utils.cli import run
from utils.errors import ConversionError

REPO_ROOT = paths.REPO

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
    assert tool.main(["--h5", str(h5_path), "--out", str(npy_path)]) == 0
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
    values = _backbone_values(npy_path)
    for i, (kernel, bias) in enumerate(arrays):
        np.testing.assert_array_equal(values[2 * i], kernel)
        np.testing.assert_array_equal(values[2 * i + 1], bias)


def test_missing_layer_names_file_and_layer(tmp_path, capsys):
    h5_path = tmp_path / "broken.h5"
    write_keras2_layout(str(h5_path), _random_layers(), skip="block4_conv2")
    with pytest.raises(ConversionError, match=r"broken\.h5.*block4_conv2"):
        convert_vgg16.read_keras_vgg16(str(h5_path))
    argv = ["--h5", str(h5_path), "--out", str(tmp_path / "x.npy")]
    assert run(tool.main, argv, tensorflow=False) == 2
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


def _backbone_values(npy_path):
    with tf.variable_scope("vgg_sat"):
        Vgg16(str(npy_path)).build(tf.placeholder(tf.float32, [None, 32, 32, 3]))
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        return sess.run(tf.global_variables())


def _as_published(h5_path, **changes):
    """KERAS_VGG16_NOTOP with the size and md5 of a test-written file (or `changes`)."""
    data = h5_path.read_bytes()
    measured = dict(size=len(data), md5=hashlib.md5(data).hexdigest())
    return dataclasses.replace(convert_vgg16.KERAS_VGG16_NOTOP, **{**measured, **changes})


@pytest.fixture
def served(tmp_path):
    """A test-written Keras file on a local HTTP server: (url, path, layers)."""
    folder = tmp_path / "served"
    folder.mkdir()
    arrays = _random_layers(2)
    h5_path = folder / "weights.h5"
    write_original_layout(str(h5_path), arrays)
    handler = partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield "http://127.0.0.1:%d/weights.h5" % server.server_address[1], h5_path, arrays
    server.shutdown()
    server.server_close()
    thread.join()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def _closed_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_download_converts_into_a_loadable_backbone(tmp_path, served, capsys, graph):
    url, h5_path, arrays = served
    out = tmp_path / "data" / "vgg16.npy"
    status = tool.main(["--download", "--url", url, "--out", str(out)],
                       expected=_as_published(h5_path))
    assert status == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and str(out) in lines[0] and "13 conv layers" in lines[0]
    cached = out.parent / convert_vgg16.KERAS_VGG16_NOTOP.name
    assert cached.read_bytes() == h5_path.read_bytes()
    assert sorted(os.listdir(out.parent)) == sorted([cached.name, out.name])
    values = _backbone_values(out)
    for i, (kernel, bias) in enumerate(arrays):
        np.testing.assert_array_equal(values[2 * i], kernel)
        np.testing.assert_array_equal(values[2 * i + 1], bias)


def test_wrong_hash_is_refused_and_nothing_is_kept(tmp_path, served, capsys):
    url, h5_path, _ = served
    out = tmp_path / "data" / "vgg16.npy"
    expected = _as_published(h5_path, md5="0" * 32)
    status = run(lambda argv: tool.main(argv, expected=expected),
                 ["--download", "--url", url, "--out", str(out)], tensorflow=False)
    assert status == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected.name in err[0] and "md5" in err[0]
    assert os.listdir(out.parent) == []


def test_unreachable_url_names_the_manual_route(tmp_path, capsys):
    url = "http://127.0.0.1:%d/x.h5" % _closed_port()
    out = tmp_path / "data" / "vgg16.npy"
    status = run(tool.main, ["--download", "--url", url, "--out", str(out)], tensorflow=False)
    assert status == 1
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    published = convert_vgg16.KERAS_VGG16_NOTOP
    assert len(err) == 1 and captured.out == ""
    assert "could not download" in err[0] and published.url in err[0]
    assert "python -m tools.convert_vgg16 --h5" in err[0]
    assert not out.exists() and os.listdir(out.parent) == []


def test_verified_cached_file_is_not_downloaded_again(tmp_path):
    h5_path = tmp_path / convert_vgg16.KERAS_VGG16_NOTOP.name
    write_keras2_layout(str(h5_path), _random_layers())
    unreachable = "http://127.0.0.1:%d/x.h5" % _closed_port()
    found = convert_vgg16.download_verified(_as_published(h5_path), str(tmp_path), url=unreachable)
    assert found == str(h5_path)


def test_command_line_converts_a_local_file(tmp_path):
    h5_path, out = tmp_path / "weights.h5", tmp_path / "x" / "vgg16.npy"
    write_keras2_layout(str(h5_path), _random_layers())
    result = subprocess.run([sys.executable, "-m", "tools.convert_vgg16", "--h5", str(h5_path),
                             "--out", str(out)], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 1 and str(out) in result.stdout
    assert sorted(np.load(str(out), allow_pickle=True).item()) == sorted(VGG16_LAYER_KEYS)
