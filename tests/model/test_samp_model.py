"""SAMP's two-decoder SAFA_delta at a tiny size: shapes, names, a training step, checkpoints."""
import os

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from model import losses
from model.decoder import decoder
from model.models_two_dec import SAFA_delta
from model.uncertainty import get_uncertainty
from tests import paths

# Grappler's graph rewrites cost seconds on the first run of every graph; these tests run
# each graph once or twice, so they skip them.
QUICK_START = tf.ConfigProto()
QUICK_START.graph_options.rewrite_options.disable_meta_optimizer = True
TINY = dict(out_dim=64, fc_dim=64, cholesky_hidden=16, decoder_width=32, vgg_path="random",
            vgg_width=0.125)
SAT, GRD = 64, (64, 128)
LEGACY_LIST = os.path.join(paths.LEGACY,
                           "varnames_samp_safa_delta.txt")


def _placeholders(sat=SAT, grd=GRD):
    return (tf.placeholder(tf.float32, [None, sat, sat, 3], name="sat_x"),
            tf.placeholder(tf.float32, [None, sat, sat, 3], name="sat_x_semi"),
            tf.placeholder(tf.float32, [None, grd[0], grd[1], 3], name="grd_x"))


def _feed(placeholders, batch=3, seed=0):
    rng = np.random.default_rng(seed)
    sat_x, semi_x, grd_x = placeholders
    return {sat_x: rng.uniform(-100, 100, (batch, SAT, SAT, 3)),
            semi_x: rng.uniform(-100, 100, (batch, SAT, SAT, 3)),
            grd_x: rng.uniform(-100, 100, (batch,) + GRD + (3,))}


def _legacy_names():
    with open(LEGACY_LIST) as f:
        return [line.split()[0] for line in f if line.strip()]


@pytest.fixture(scope="module")
def tiny_graph():
    """One tiny SAFA_delta graph shared by the read-only tests below."""
    graph = tf.Graph()
    with graph.as_default():
        outs = SAFA_delta(*_placeholders(), **TINY)
    return graph, outs


def test_returns_and_shapes(tiny_graph):
    _, outs = tiny_graph
    assert len(outs) == 9
    sat_g, semi_g, grd_g, sat_local, grd_local, heatmap, heatmap_semi, L, L_semi = outs
    assert sat_g.get_shape().as_list() == [None, 8 * 64]
    assert sat_local.get_shape().as_list() == [None, 4, 64]
    assert grd_local.get_shape().as_list() == [None, 8, 64]
    assert heatmap.get_shape().as_list() == [None, 2 * SAT, 2 * SAT, 1]
    assert heatmap_semi.get_shape().as_list() == [None, 2 * SAT, 2 * SAT, 1]
    assert L.get_shape().as_list() == [None, 3]


def test_tiny_model_has_the_legacy_names(tiny_graph):
    graph, _ = tiny_graph
    with graph.as_default():
        names = [v.op.name + ":0" for v in tf.global_variables()]
    assert names == _legacy_names()


def test_decoder_channels_scale_with_width(tiny_graph):
    graph, _ = tiny_graph
    with graph.as_default():
        shapes = {v.op.name: v.get_shape().as_list() for v in tf.global_variables("decoder/")}
    assert shapes["decoder/decode/deconv0/weights"] == [3, 3, 32, 64]  # (k, k, out, in)
    assert shapes["decoder/decode/conv1_1/weights"] == [3, 3, 16, 8]
    assert shapes["decoder/decode/conv2_1/weights"] == [3, 3, 4 + 64, 4]  # + conv5_3 skip
    assert shapes["decoder/decode/conv6_1/weights"] == [3, 3, 4 + 8, 4]  # + conv1_2 skip; 4 at least
    assert shapes["decoder/decode/conv7_2/weights"] == [3, 3, 4, 1]


def test_original_returns_thirteen(graph):
    placeholders = _placeholders()
    outs = SAFA_delta(*placeholders, original=True, **TINY)
    assert len(outs) == 13
    with tf.Session(config=QUICK_START) as sess:
        sess.run(tf.global_variables_initializer())
        values = sess.run(outs, _feed(placeholders))
    sat_n, semi_n, grd_n, sat_raw, grd_raw, sat_local, grd_local, sat_map, grd_map = values[:9]
    np.testing.assert_allclose(sat_n, sat_raw / np.linalg.norm(sat_raw, axis=1, keepdims=True),
                               rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(grd_n, grd_raw / np.linalg.norm(grd_raw, axis=1, keepdims=True),
                               rtol=1e-5, atol=1e-7)
    assert sat_map.shape == (6, 4, 4, 64) and grd_map.shape == (3, 4, 8, 64)
    heatmap, heatmap_semi, L, L_semi = values[9:]
    assert heatmap.shape == (3, 128, 128, 1) and (heatmap >= 0).all()
    assert (L > 0).all() and (L_semi > 0).all()


def test_decoder_needs_a_multiple_of_64(graph):
    maps = [tf.zeros([1, 96 // 2 ** i, 96 // 2 ** i, 4]) for i in range(5)]
    with pytest.raises(ValueError, match="multiple of 64"):
        decoder(32).decode(tf.zeros([1, 1, 1, 8]), True, "decode", *maps)


def _stage_losses(outs, delta, delta_semi, ratio, weights, batch):
    sat_g, semi_g, grd_g, _, _, heatmap, heatmap_semi, L, L_semi = outs
    stage_2_1 = (losses.compute_loss(sat_g, grd_g, batch_size=batch)
                 + losses.E_loss_2_1(heatmap_semi, delta_semi)
                 + losses.E_loss_2_1(heatmap, delta))
    stage_2_2 = (losses.compute_loss(sat_g, grd_g, batch_size=batch)
                 + losses.E_loss_2_2(heatmap_semi, L_semi, delta_semi) * 1e-4
                 + losses.E_loss_2_2(heatmap, L, delta) * 1e-3)
    stage_3 = losses.compute_loss_continuous_IOU_weighted(sat_g, semi_g, grd_g, ratio, weights,
                                                          batch_size=batch)[0]
    return stage_2_1, stage_2_2, stage_3


def test_training_step_gives_finite_losses(graph):
    batch = 3
    placeholders = _placeholders()
    delta = tf.placeholder(tf.float32, [None, 2])
    delta_semi = tf.placeholder(tf.float32, [None, 2])
    ratio = tf.placeholder(tf.float32, [None])
    weights = tf.placeholder(tf.float32, [None])
    global_step = tf.Variable(0, trainable=False)
    outs = SAFA_delta(*placeholders, **TINY)
    stage_losses = _stage_losses(outs, delta, delta_semi, ratio, weights, batch)
    uncertainty = get_uncertainty(outs[7]) / losses.heatmap_scale(outs[5])
    with tf.name_scope("train"):  # stage 2.2 trains every variable
        train_step = tf.train.AdamOptimizer(1e-4).minimize(stage_losses[1],
                                                           global_step=global_step)
    rng = np.random.default_rng(1)
    feed = _feed(placeholders)
    feed.update({delta: rng.uniform(-300, 300, (batch, 2)),
                 delta_semi: rng.uniform(-300, 300, (batch, 2)),
                 ratio: rng.uniform(0.2, 0.8, batch), weights: np.ones(batch)})
    with tf.Session(config=QUICK_START) as sess:
        sess.run(tf.global_variables_initializer())
        before = sess.run(stage_losses, feed)
        sess.run(train_step, feed)
        after, u = sess.run([stage_losses, uncertainty], feed)
        assert sess.run(global_step) == 1
    assert np.all(np.isfinite(before)) and np.all(np.isfinite(after))
    assert not np.allclose(before, after)
    assert u.shape == (batch,) and np.all(np.isfinite(u)) and (u > 0).all()


def test_checkpoint_restores_by_name_into_a_fresh_graph(tmp_path):
    path = str(tmp_path / "model.ckpt")
    with tf.Graph().as_default():
        placeholders = _placeholders()
        outs = SAFA_delta(*placeholders, **TINY)
        feed = _feed(placeholders, seed=5)
        with tf.Session(config=QUICK_START) as sess:
            sess.run(tf.global_variables_initializer())
            saved_values = sess.run(tf.global_variables())
            saved_heatmap = sess.run(outs[5], feed)
            tf.train.Saver().save(sess, path)
    keys = [name for name, _ in tf.train.list_variables(path)]
    assert sorted(keys) == sorted(name[:-2] for name in _legacy_names())
    with tf.Graph().as_default():
        placeholders = _placeholders()
        # a different seed: values only match if the restore really overwrote them
        outs = SAFA_delta(*placeholders, **dict(TINY, vgg_seed=7))
        with tf.Session(config=QUICK_START) as sess:
            tf.train.Saver().restore(sess, path)
            restored_values = sess.run(tf.global_variables())
            heatmap = sess.run(outs[5], _feed(placeholders, seed=5))
    for saved, restored in zip(saved_values, restored_values):
        np.testing.assert_array_equal(saved, restored)
    np.testing.assert_allclose(heatmap, saved_heatmap, rtol=1e-5, atol=1e-6)
