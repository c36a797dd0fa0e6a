"""model/vgg.py and model/models.py (VIGOR) against independent numpy computations."""
import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from model import models
from model.vgg import VGG16_LAYER_KEYS, Vgg16

# Grappler's graph rewrites cost seconds on the first run of every graph; these tests run
# each graph once or twice, so they skip them.
QUICK_START = tf.ConfigProto()
QUICK_START.graph_options.rewrite_options.disable_meta_optimizer = True
TINY = dict(vgg_path="random", vgg_width=0.125)


# ------------------------------------------------------------------ numpy reference maths

def conv3x3_relu_np(x, kernel, bias):
    """SAME 3x3 convolution (cross-correlation, as TensorFlow) + bias + ReLU."""
    _, height, width, _ = x.shape
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    out = np.zeros(x.shape[:3] + (kernel.shape[-1],))
    for di in range(3):
        for dj in range(3):
            out += padded[:, di:di + height, dj:dj + width, :] @ kernel[di, dj]
    return np.maximum(out + bias, 0.0)


def max_pool_np(x):
    b, h, w, c = x.shape
    return x.reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def vgg16_np(x, layer_weights):
    outputs, index = [], 0
    for block, count in ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3)):
        if block > 1:
            x = max_pool_np(x)
        for _ in range(count):
            x = conv3x3_relu_np(x, *layer_weights[index])
            index += 1
        outputs.append(x)
    return outputs


def spatial_aware_np(feature, w1, b1, w2, b2):
    batch, height, width, _ = feature.shape
    channel_max = feature.max(axis=-1).reshape(batch, height * width)
    out = np.zeros((batch, height * width, w1.shape[-1]))
    for d in range(w1.shape[-1]):
        hidden = channel_max @ w1[:, :, d] + b1[0, :, d]
        out[:, :, d] = hidden @ w2[:, :, d] + b2[0, :, d]
    return out


def safa_descriptor_np(conv5_3, w1, b1, w2, b2):
    pooled = max_pool_np(conv5_3)
    batch, height, width, channels = pooled.shape
    importance = spatial_aware_np(pooled, w1, b1, w2, b2)
    flat = pooled.reshape(batch, height * width, channels)
    raw = np.stack([np.concatenate([flat[b].T @ importance[b, :, d] for d in
                                    range(importance.shape[-1])]) for b in range(batch)])
    return raw, raw / np.linalg.norm(raw, axis=1, keepdims=True)


def _variables(scope):
    return {v.op.name[len(scope) + 1:]: v for v in tf.global_variables(scope + "/")}


# ------------------------------------------------------------------------------ VGG16

def test_random_vgg_names_shapes_and_outputs(graph):
    x = tf.placeholder(tf.float32, [None, 64, 96, 3])
    with tf.variable_scope("vgg_grd"):
        maps = Vgg16("random", width=0.125).build(x)
    assert [m.get_shape().as_list() for m in maps] == [
        [None, 64, 96, 8], [None, 32, 48, 16], [None, 16, 24, 32], [None, 8, 12, 64],
        [None, 4, 6, 64]]
    names = [v.op.name for v in tf.global_variables()]
    expected = []
    for i in range(13):
        layer = "vgg_grd/conv2d" + ("_%d" % i if i else "")
        expected += [layer + "/kernel", layer + "/bias"]
    assert names == expected


def test_random_vgg_is_seeded(graph):
    x = tf.placeholder(tf.float32, [None, 32, 32, 3])
    for scope, seed in (("a", 3), ("b", 3), ("c", 4)):
        with tf.variable_scope(scope):
            Vgg16("random", width=0.125, seed=seed).build(x)
    with tf.Session(config=QUICK_START) as sess:
        sess.run(tf.global_variables_initializer())
        a, b, c = sess.run([tf.global_variables(s + "/")[0] for s in "abc"])
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_vgg_from_npy_matches_numpy_forward(graph, tmp_path):
    rng = np.random.default_rng(0)
    channels = (4, 4, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8)
    layer_weights, previous = [], 3
    for out in channels:
        layer_weights.append((rng.standard_normal((3, 3, previous, out)).astype(np.float32)
                              * np.sqrt(2.0 / (9 * previous)),
                              rng.uniform(-0.1, 0.1, out).astype(np.float32)))
        previous = out
    path = tmp_path / "vgg16.npy"
    np.save(str(path), dict(zip(VGG16_LAYER_KEYS, [list(w) for w in layer_weights])))
    image = rng.standard_normal((2, 32, 32, 3)).astype(np.float32)
    maps = Vgg16(str(path)).build(tf.constant(image))
    with tf.Session(config=QUICK_START) as sess:
        sess.run(tf.global_variables_initializer())
        values = sess.run(maps)
    for got, expected in zip(values, vgg16_np(image.astype(np.float64), layer_weights)):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_missing_vgg_file_says_where_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="convert_vgg16"):
        Vgg16(str(tmp_path / "absent.npy"))


def test_default_vgg_path_is_repo_data():
    from model import vgg
    assert vgg.DEFAULT_NPY_PATH.endswith("data/vgg16.npy")


def test_width_needs_random_init():
    with pytest.raises(ValueError, match="random"):
        Vgg16("/some/vgg16.npy", width=0.5)


# ---------------------------------------------------------------- VIGOR building blocks

@pytest.mark.parametrize("activation", [tf.nn.relu, None])
def test_fc_layer(graph, activation):
    rng = np.random.default_rng(1)
    x_val = rng.standard_normal((5, 7)).astype(np.float32)
    out = models.fc_layer(tf.constant(x_val), 7, 3, 0.5, 0.1, "fc", activation_fn=activation)
    weights, biases = tf.global_variables()
    assert (weights.op.name, biases.op.name) == ("fc/weights", "fc/biases")
    with tf.Session(config=QUICK_START) as sess:
        sess.run(tf.global_variables_initializer())
        got, w, b = sess.run([out, weights, biases])
    np.testing.assert_allclose(b, 0.1)
    assert np.abs(w).max() <= 2 * 0.5 + 1e-6  # truncated at two standard deviations
    expected = x_val.astype(np.float64) @ w + b
    np.testing.assert_allclose(got, np.maximum(expected, 0) if activation else expected,
                               rtol=1e-5, atol=1e-6)


def test_fc_layer_rejects_wrong_input_dim(graph):
    with pytest.raises(ValueError, match="input_dim"):
        models.fc_layer(tf.zeros([2, 6]), 7, 3, 0.1, 0.1)


def test_spatial_aware(graph):
    rng = np.random.default_rng(2)
    feature = rng.standard_normal((3, 4, 6, 5)).astype(np.float32)
    out = models.spatial_aware(tf.constant(feature), 3, True, name="spatial_grd")
    variables = _variables("spatial_grd")
    assert {k: v.get_shape().as_list() for k, v in variables.items()} == {
        "weights1": [24, 12, 3], "biases1": [1, 12, 3],
        "weights2": [12, 24, 3], "biases2": [1, 24, 3]}
    assert tf.get_collection(tf.GraphKeys.REGULARIZATION_LOSSES) == []
    with tf.Session(config=QUICK_START) as sess:
        sess.run(tf.global_variables_initializer())
        got, w1, b1, w2, b2 = sess.run([out] + [variables[k] for k in
                                                ("weights1", "biases1", "weights2", "biases2")])
    np.testing.assert_allclose(got, spatial_aware_np(feature, w1, b1, w2, b2), rtol=1e-5,
                               atol=1e-6)


def _inputs(batch=2, sat=64, grd=(64, 128)):
    rng = np.random.default_rng(3)
    return (rng.uniform(-100, 100, (batch, sat, sat, 3)).astype(np.float32),
            rng.uniform(-100, 100, (batch,) + grd + (3,)).astype(np.float32))


def test_safa_descriptor_maths(graph):
    sat_val, grd_val = _inputs()
    sat_x = tf.placeholder(tf.float32, [None, 64, 64, 3])
    grd_x = tf.placeholder(tf.float32, [None, 64, 128, 3])
    outs = models.SAFA(sat_x, grd_x, dimension=4, original=True, **TINY)
    assert _variables("spatial_grd")["weights1"].get_shape().as_list() == [8, 4, 4]
    assert _variables("spatial_sat")["weights1"].get_shape().as_list() == [4, 2, 4]
    spatial = {side: [_variables("spatial_" + side)[k] for k in
                      ("weights1", "biases1", "weights2", "biases2")] for side in ("sat", "grd")}
    with tf.Session(config=QUICK_START) as sess:
        sess.run(tf.global_variables_initializer())
        sat_n, grd_n, sat_raw, grd_raw, sat_map, grd_map = sess.run(
            outs, {sat_x: sat_val, grd_x: grd_val})
        weights = sess.run(spatial)
    assert sat_map.shape == (2, 4, 4, 64) and grd_map.shape == (2, 4, 8, 64)
    for side, raw, normed, conv in (("sat", sat_raw, sat_n, sat_map),
                                    ("grd", grd_raw, grd_n, grd_map)):
        expected_raw, expected_n = safa_descriptor_np(conv.astype(np.float64), *weights[side])
        np.testing.assert_allclose(raw, expected_raw, rtol=1e-4, atol=1e-4 * abs(raw).max())
        np.testing.assert_allclose(normed, expected_n, rtol=1e-4, atol=1e-5)


def test_safa_default_returns(graph):
    sat_x = tf.placeholder(tf.float32, [None, 64, 64, 3])
    grd_x = tf.placeholder(tf.float32, [None, 64, 128, 3])
    sat_global, grd_global, sat_local, grd_local = models.SAFA(sat_x, grd_x, **TINY)
    assert sat_global.get_shape().as_list() == [None, 8 * 64]
    assert sat_local.get_shape().as_list() == [None, 4, 64]
    assert grd_local.get_shape().as_list() == [None, 8, 64]


def test_semi_and_delta_variants(graph):
    sat_val, grd_val = _inputs()
    sat_x = tf.placeholder(tf.float32, [None, 64, 64, 3])
    semi_x = tf.placeholder(tf.float32, [None, 64, 64, 3])
    grd_x = tf.placeholder(tf.float32, [None, 64, 128, 3])
    with tf.variable_scope("semi"):
        semi_outs = models.SAFA_semi(sat_x, semi_x, grd_x, **TINY)
    with tf.variable_scope("delta"):
        delta_outs = models.SAFA_delta(sat_x, semi_x, grd_x, delta_hidden=16, **TINY)
    with tf.variable_scope("delta", reuse=True):
        validate_outs = models.SAFA_delta_validate(sat_x, grd_x, delta_hidden=16, **TINY)
    assert len(semi_outs) == 5 and len(delta_outs) == 6 and len(validate_outs) == 5
    assert _variables("delta/fc_delta_1")["weights"].get_shape().as_list() == [1024, 16]
    assert _variables("delta/fc_delta_2")["weights"].get_shape().as_list() == [16, 2]
    feed = {sat_x: sat_val, semi_x: sat_val[::-1], grd_x: grd_val}
    with tf.Session(config=QUICK_START) as sess:
        sess.run(tf.global_variables_initializer())
        semi_v, delta_v, validate_v = sess.run([semi_outs, delta_outs, validate_outs], feed)
    for descriptor in semi_v[:3] + delta_v[:3]:
        np.testing.assert_allclose(np.linalg.norm(descriptor, axis=1), 1.0, rtol=1e-5)
    assert semi_v[3].shape == (4, 4, 64)  # positive and semi-positive tiles together
    assert delta_v[5].shape == (2, 2)
    # the validation graph shares the variables: same positive descriptors and offsets
    np.testing.assert_allclose(validate_v[0], delta_v[0], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(validate_v[4], delta_v[5], rtol=1e-4, atol=1e-5)


def test_clean_siamese_is_gap_fc_l2(graph):
    sat_val, grd_val = _inputs()
    sat_x = tf.placeholder(tf.float32, [None, 64, 64, 3])
    grd_x = tf.placeholder(tf.float32, [None, 64, 128, 3])
    outs = models.clean_siamese(sat_x, grd_x, 1.0, cam=True, fc_dim=32, **TINY)
    fc = _variables("Gap_local/fc1")
    assert fc["weights"].get_shape().as_list() == [64, 32]
    with tf.Session(config=QUICK_START) as sess:
        sess.run(tf.global_variables_initializer())
        (sat_g, grd_g, sat_l, grd_l, fc_sat, fc_grd), w, b = sess.run(
            [outs, fc["weights"], fc["biases"]], {sat_x: sat_val, grd_x: grd_val})
    for local, fc_out, normed in ((sat_l, fc_sat, sat_g), (grd_l, fc_grd, grd_g)):
        expected = local.astype(np.float64).mean(axis=(1, 2)) @ w + b
        np.testing.assert_allclose(fc_out, expected, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(normed, expected / np.linalg.norm(expected, axis=1,
                                                                     keepdims=True), rtol=1e-4, atol=1e-6)


def test_clean_siamese_delta_variants(graph):
    sat_x = tf.placeholder(tf.float32, [None, 64, 64, 3])
    semi_x = tf.placeholder(tf.float32, [None, 64, 64, 3])
    grd_x = tf.placeholder(tf.float32, [None, 64, 128, 3])
    outs = models.clean_siamese_delta(sat_x, semi_x, grd_x, fc_dim=32, delta_hidden=16, **TINY)
    with tf.variable_scope(tf.get_variable_scope(), reuse=True):
        validate = models.clean_siamese_delta_validate(sat_x, grd_x, fc_dim=32, delta_hidden=16,
                                                       **TINY)
    assert len(outs) == 6 and len(validate) == 5
    assert [v.op.name for v in tf.global_variables() if "vgg" not in v.op.name] == [
        "Gap_local/fc1/weights", "Gap_local/fc1/biases", "fc_delta_1/weights",
        "fc_delta_1/biases", "fc_delta_2/weights", "fc_delta_2/biases"]
    assert _variables("fc_delta_1")["weights"].get_shape().as_list() == [64, 16]
    sat_val, grd_val = _inputs()
    with tf.Session(config=QUICK_START) as sess:
        sess.run(tf.global_variables_initializer())
        got, val = sess.run([outs, validate], {sat_x: sat_val, semi_x: sat_val, grd_x: grd_val})
    np.testing.assert_allclose(got[0], got[1], rtol=1e-5)  # same tile as positive and semi
    np.testing.assert_allclose(val[4], got[5], rtol=1e-4, atol=1e-5)
