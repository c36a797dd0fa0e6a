import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from tests import paths
from utils.config import load_config
from utils.training.optimizer import HeadScaledAdam, stage_optimizer


def _one_step(schedule):
    """Weights after 3 Adam steps on a head variable and another one; the graph's variable names."""
    graph = tf.Graph()
    with graph.as_default():
        with tf.variable_scope("cholesky_block/dense"):
            head = tf.get_variable("kernel", initializer=np.array([1.0, -2.0, 3.0], np.float32))
        with tf.variable_scope("VGG_grd/conv1"):
            body = tf.get_variable("weights", initializer=np.array([0.5, 0.25], np.float32))
        loss = tf.reduce_sum(tf.square(head)) + tf.reduce_sum(tf.square(body - 4.0))
        with tf.name_scope("train"):
            train = stage_optimizer(tf.constant(1e-3), schedule).minimize(loss)
        with tf.Session(graph=graph) as sess:
            sess.run(tf.global_variables_initializer())
            for _ in range(3):
                sess.run(train)
            return sess.run([head, body]), sorted(v.op.name for v in tf.global_variables())


def test_the_heads_alone_take_a_scaled_step_in_the_original_variables():
    cfg = load_config("configs/demo.yaml")
    assert cfg.stages.E_1a.cholesky_lr_scale == 1.0      # the original's optimizer unless a config asks
    assert type(stage_optimizer(1e-3, cfg.stages.E_1a)) is tf.train.AdamOptimizer
    plain = load_config("configs/demo.yaml", ["stages.E_2_2.adam_epsilon=1e-8",
                                              "stages.E_2_2.head_lr_scale=1"]).stages.E_2_2
    scaled = load_config("configs/demo.yaml", ["stages.E_2_2.adam_epsilon=1e-8", "stages.E_2_2.head_lr_scale=1",
                                               "stages.E_2_2.cholesky_lr_scale=50"]).stages.E_2_2
    assert isinstance(stage_optimizer(1e-3, scaled), HeadScaledAdam)
    (head_1, body_1), names_1 = _one_step(plain)
    (head_50, body_50), names_50 = _one_step(scaled)
    start = np.array([1.0, -2.0, 3.0])
    # Adam's first steps are ~lr x sign(gradient): 3 steps move each entry by ~3 lr, 50 times that when scaled
    np.testing.assert_allclose(start - head_1, 3e-3 * np.sign(start), rtol=1e-3)
    np.testing.assert_allclose(start - head_50, 50 * 3e-3 * np.sign(start), rtol=1e-2)
    np.testing.assert_array_equal(body_1, body_50)      # every other variable: the same bytes
    assert names_1 == names_50                          # one Adam: same slots and beta powers
    assert "train/beta1_power" in names_1 and "cholesky_block/dense/kernel/Adam" in names_1


def _three_steps(overrides, scopes):
    """Start (ones) minus each variable after 3 Adam steps at lr 1e-3 on sum(square(v))."""
    schedule = load_config("configs/demo.yaml", ["stages.E_2_2.adam_epsilon=1e-8", "stages.E_2_2.head_lr_scale=1"]
                           + overrides).stages.E_2_2
    graph = tf.Graph()
    with graph.as_default():
        variables = [tf.get_variable(scope, initializer=np.ones(2, np.float32)) for scope in scopes]
        with tf.name_scope("train"):
            train = stage_optimizer(tf.constant(1e-3), schedule).minimize(
                tf.add_n([tf.reduce_sum(tf.square(v)) for v in variables]))
        with tf.Session(graph=graph) as sess:
            sess.run(tf.global_variables_initializer())
            for _ in range(3):
                sess.run(train)
            return {scope: float(1.0 - value[0]) for scope, value in zip(scopes, sess.run(variables))}


def test_head_lr_scale_covers_the_heads_bottleneck_mlp_and_multiplies_with_the_cholesky_scale():
    scopes = ["L/fc_delta_1/weights", "L_semi/mlp_bottleneck_semi/weights", "L/cholesky_block/dense/kernel",
              "L_semi/cholesky_block_1/dense_2/kernel", "vgg_grd/conv1_1/weights", "decoder/decode/conv0_1/weights",
              "spatial_grd/weights"]
    moved = _three_steps(["stages.E_2_2.head_lr_scale=5", "stages.E_2_2.cholesky_lr_scale=2"], scopes)
    expected = {"L/fc_delta_1/weights": 5, "L_semi/mlp_bottleneck_semi/weights": 5,
                "L/cholesky_block/dense/kernel": 10, "L_semi/cholesky_block_1/dense_2/kernel": 10,
                "vgg_grd/conv1_1/weights": 1, "decoder/decode/conv0_1/weights": 1, "spatial_grd/weights": 1}
    for scope, factor in expected.items():   # Adam's first steps are ~lr x sign(gradient)
        assert abs(moved[scope] - factor * 3e-3) < 1e-2 * factor * 3e-3, (scope, moved[scope])


def test_a_head_scale_in_a_stage_without_heads_is_an_error_naming_the_key():
    with pytest.raises(ValueError, match="head_lr_scale is 5 but this stage trains no variable in the scopes L/"):
        _three_steps(["stages.E_2_2.head_lr_scale=5"], ["vgg_grd/conv1_1/weights", "fc_delta_1/weights"])


def test_a_stage_script_given_a_head_scale_it_cannot_use_stops_with_one_line(city, tmp_path):
    """A real `python train_first_E_1.py` whose E_1a (no SAMP heads) is given head_lr_scale 5."""
    repo = paths.REPO
    overrides = [f"data.root={city}", "data.dataset=vigor", f"runs_dir={tmp_path}", "data.sat_size=[64, 64]",
                 "data.grd_size=[32, 64]", "model.vgg_width=0.125", "stages.E_1a.head_lr_scale=5"]
    done = subprocess.run([sys.executable, os.path.join(repo, "train_first_E_1.py")]
                          + [f"--set={o}" for o in overrides], capture_output=True, text=True, timeout=300)
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert len(lines) == 1 and "stages.E_1a.head_lr_scale is 5 but this stage trains no variable" in lines[0]
    assert not os.path.exists(os.path.join(tmp_path, "demo", "E_1a", "1"))   # nothing trained, nothing saved
