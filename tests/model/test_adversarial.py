"""Gradient reversal and the domain discriminator (model/adversarial.py), checked numerically."""
import numpy as np
import tensorflow.compat.v1 as tf

from model import adversarial as adv


def _features(seed=0, n=5, d=8):
    return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)


def test_reversal_is_identity_forward_and_flips_the_gradient(graph):
    features = tf.constant(_features())
    strength = tf.placeholder(tf.float32, [])
    plain = adv.domain_discriminator(features, hidden=(16,))
    reversed_ = adv.domain_discriminator(adv.reverse_gradient(features, strength), hidden=(16,))
    (plain_grad,) = tf.gradients(tf.reduce_sum(tf.square(plain)), features)
    (reversed_grad,) = tf.gradients(tf.reduce_sum(tf.square(reversed_)), features)
    variables = adv.discriminator_variables()
    assert sorted(v.op.name for v in variables) == ["domain_discriminator/hidden_0/biases",
                                                     "domain_discriminator/hidden_0/weights",
                                                     "domain_discriminator/logit/biases",
                                                     "domain_discriminator/logit/weights"]
    (weight_plain,) = tf.gradients(tf.reduce_sum(tf.square(plain)), variables[0])
    (weight_reversed,) = tf.gradients(tf.reduce_sum(tf.square(reversed_)), variables[0])
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        for lam in (1.0, 0.3):
            out = sess.run([plain, reversed_, plain_grad, reversed_grad, weight_plain, weight_reversed],
                           {strength: lam})
            np.testing.assert_array_equal(out[0], out[1])                    # identity forward
            assert np.abs(out[2]).max() > 1e-4
            np.testing.assert_allclose(out[3], -lam * out[2], rtol=1e-5, atol=1e-7)
            np.testing.assert_allclose(out[5], out[4], rtol=1e-6)            # the discriminator learns as usual


def test_reversed_gradient_matches_finite_differences(graph):
    x0 = _features(1, n=2, d=3).astype(np.float64)
    features = tf.placeholder(tf.float64, x0.shape)
    output = tf.reduce_sum(tf.sin(adv.reverse_gradient(features, 0.5)) * np.arange(1, 7).reshape(2, 3))
    (gradient,) = tf.gradients(output, features)
    with tf.Session() as sess:
        analytic = sess.run(gradient, {features: x0})
        numeric = np.zeros_like(x0)
        for index in np.ndindex(x0.shape):
            step = np.zeros_like(x0)
            step[index] = 1e-6
            numeric[index] = (sess.run(output, {features: x0 + step}) - sess.run(output, {features: x0 - step})) / 2e-6
    np.testing.assert_allclose(analytic, -0.5 * numeric, rtol=1e-5)


def test_dann_loss_trains_the_discriminator_and_confuses_the_features(graph):
    source = tf.Variable(_features(2) + 1.0)
    target = tf.Variable(_features(3) - 1.0)
    loss = adv.dann_loss(source, target, strength=1.0, hidden=(16,))
    disc = adv.discriminator_variables()
    grads = tf.gradients(loss, [source, target] + disc)
    (plain_source_grad,) = tf.gradients(
        tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(
            labels=tf.ones([5]), logits=adv.domain_discriminator(source, hidden=(16,)))) * 0.5, source)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        value, source_grad, plain = sess.run([loss, grads[0], plain_source_grad])
    assert np.isfinite(value) and value > 0
    assert all(g is not None for g in grads)
    np.testing.assert_allclose(source_grad, -plain, rtol=1e-5, atol=1e-7)
