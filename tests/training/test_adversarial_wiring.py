"""DANN in the training graph (utils/training/graph.py, adversarial.*): nothing at weight 0; at a
positive weight a discriminator under its own scope, trained by the stage's Adam, whose loss
reaches the descriptor network reversed (and scaled by the schedule) and the discriminator as is."""
import math
import os

import numpy as np
import tensorflow.compat.v1 as tf

import train_first_E_1
from model import adversarial
from tests import paths
from utils.config import load_config
from utils.training.graph import build_training_graph

CONFIG = os.path.join(paths.REPO, "configs", "demo.yaml")
TINY = ["data.sat_size=[32,32]", "data.grd_size=[32,64]", "model.vgg_width=0.125", "adversarial.hidden=[8]"]
BATCH, TOTAL_STEPS, WEIGHT = 4, 10, 0.5

SESSION_CONFIG = tf.ConfigProto()
SESSION_CONFIG.graph_options.rewrite_options.disable_meta_optimizer = True


def _build(weight, schedule="dann"):
    cfg = load_config(CONFIG, TINY + [f"adversarial.weight={weight}", f"adversarial.schedule={schedule}"])
    return build_training_graph(train_first_E_1.SAFA, cfg, BATCH, 1e-3, savers=False, total_steps=TOTAL_STEPS)


def _feed(parts, seed=0):
    rng = np.random.default_rng(seed)
    return {parts.inputs.sat: rng.normal(0, 50, (BATCH, 32, 32, 3)), parts.inputs.grd: rng.normal(0, 50, (BATCH, 32, 64, 3)),
            parts.inputs.delta: np.zeros((BATCH, 2))}


def _names(parts):
    with parts.graph.as_default():
        return [v.op.name for v in tf.global_variables()]


def test_weight_zero_builds_no_discriminator():
    parts = _build(0.0)
    assert not any(adversarial.SCOPE in name for name in _names(parts))
    assert set(parts.losses) == {"loss"}


def test_the_domain_loss_reaches_the_descriptors_reversed_and_the_discriminator_as_is():
    parts = _build(WEIGHT)
    names = _names(parts)
    own = [n for n in names if n.startswith(adversarial.SCOPE + "/")]
    assert {"domain_discriminator/hidden_0/weights", "domain_discriminator/logit/biases"} <= set(own)
    assert any(n.endswith("/Adam") for n in own)                      # the stage's optimizer trains it
    assert {"domain_loss", "domain_strength"} <= set(parts.losses)
    net, terms = parts.net, parts.losses
    with parts.graph.as_default():
        # the same discriminator (shared variables) without reversal: strength -1 undoes the minus
        plain = adversarial.dann_loss(net["sat_global"], net["grd_global"], strength=-1.0, hidden=(8,))
        wired_at_features = tf.gradients(terms["loss"], [net["sat_global"], net["grd_global"]])
        task_at_features = tf.gradients(terms["loss"] - WEIGHT * terms["domain_loss"],
                                        [net["sat_global"], net["grd_global"]])
        plain_at_features = tf.gradients(plain, [net["sat_global"], net["grd_global"]])
        discriminator = adversarial.discriminator_variables()
        wired_at_weights = tf.gradients(terms["loss"], discriminator)
        plain_at_weights = tf.gradients(plain, discriminator)
        set_step = parts.global_step.assign(TOTAL_STEPS // 2)
    feed = _feed(parts)
    with tf.Session(graph=parts.graph, config=SESSION_CONFIG) as sess:
        sess.run(parts.init_op)
        sess.run(set_step)
        out = sess.run([terms["domain_strength"], terms["domain_loss"], plain, wired_at_features, task_at_features,
                        plain_at_features, wired_at_weights, plain_at_weights], feed)
        strength, domain, plain_value, wired, task, plain_grad, wired_w, plain_w = out
        assert math.isclose(strength, 2.0 / (1.0 + math.exp(-5.0)) - 1.0, rel_tol=1e-5)
        assert math.isclose(domain, plain_value, rel_tol=1e-6)          # identity forward
        for w, t, p in zip(wired, task, plain_grad):                    # each branch's descriptors
            from_domain = w - t
            assert np.abs(p).max() > 1e-6
            np.testing.assert_allclose(from_domain, -WEIGHT * strength * p, rtol=1e-3, atol=1e-8)
            assert np.sum(from_domain * p) < 0                          # opposite to the discriminator's
        for w, p in zip(wired_w, plain_w):                              # the discriminator is not reversed
            np.testing.assert_allclose(w, WEIGHT * p, rtol=1e-4, atol=1e-9)
        # two training steps move the discriminator and keep the losses finite
        before = sess.run(discriminator)
        for step in range(2):
            _, losses = sess.run([parts.train_op, terms], _feed(parts, seed=step + 1))
            assert all(np.isfinite(v) for v in losses.values())
        after = sess.run(discriminator)
        assert all(np.abs(a - b).max() > 0 for a, b in zip(after, before))


def test_the_schedules_strength_over_the_run(graph):
    step = tf.placeholder(tf.int64, [])
    dann = adversarial.dann_strength(step, TOTAL_STEPS, "dann")
    constant = adversarial.dann_strength(step, TOTAL_STEPS, "constant")
    with tf.Session() as sess:
        values = [sess.run([dann, constant], {step: s}) for s in (0, 2, TOTAL_STEPS, 3 * TOTAL_STEPS)]
    expected = [2.0 / (1.0 + math.exp(-10.0 * min(s / TOTAL_STEPS, 1.0))) - 1.0 for s in (0, 2, TOTAL_STEPS, 30)]
    np.testing.assert_allclose([v[0] for v in values], expected, rtol=1e-5, atol=1e-7)
    assert values[0][0] == 0.0 and [v[1] for v in values] == [1.0] * 4
