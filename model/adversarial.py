"""Adversarial modality alignment (DANN: Ganin & Lempitsky, ICML 2015): a gradient-reversal op and
a small domain discriminator on descriptors. utils/training/graph.py adds `dann_loss` to a stage's
loss when the config's adversarial.weight is above 0.

The discriminator learns to tell which modality a descriptor came from (optical 1, SAR or
ground 0); placed behind `reverse_gradient`, the same loss pushes the descriptor network the
other way, toward descriptors the discriminator cannot tell apart.
"""
import tensorflow.compat.v1 as tf

from model import layers

SCOPE = "domain_discriminator"
SCHEDULES = ("dann", "constant")


def reverse_gradient(x, strength=1.0):
    """Identity forward; backward, the incoming gradient times -strength (a Python float or a
    scalar tensor, e.g. DANN's schedule 2 / (1 + exp(-10 p)) - 1)."""
    strength = tf.convert_to_tensor(strength, dtype=x.dtype.base_dtype)

    @tf.custom_gradient
    def _reverse(value):
        def grad(upstream):
            return -strength * upstream
        return tf.identity(value), grad

    return _reverse(x)


def domain_discriminator(descriptors, hidden=(256,), reuse=tf.AUTO_REUSE, trainable=True):
    """(N,) logits that each descriptor (N, D) is of the source modality; its variables under
    `domain_discriminator/`, shared by every call (reuse)."""
    x = descriptors
    with tf.variable_scope(SCOPE, reuse=reuse):
        for k, units in enumerate(hidden):
            x = layers.dense(x, units, "hidden_%d" % k, layers.glorot_uniform(), layers.constant(0.0),
                             activation=tf.nn.relu, trainable=trainable)
        logits = layers.dense(x, 1, "logit", layers.glorot_uniform(), layers.constant(0.0), trainable=trainable)
    return tf.squeeze(logits, axis=-1)


def dann_loss(source_descriptors, target_descriptors, strength=1.0, hidden=(256,)):
    """Mean sigmoid cross-entropy of the discriminator on both modalities (source labelled 1,
    target 0), with the descriptors behind a gradient reversal of `strength`: minimising it
    trains the discriminator and pushes the descriptors toward each other."""
    source = domain_discriminator(reverse_gradient(source_descriptors, strength), hidden)
    target = domain_discriminator(reverse_gradient(target_descriptors, strength), hidden)
    logits = tf.concat([source, target], axis=0)
    labels = tf.concat([tf.ones_like(source), tf.zeros_like(target)], axis=0)
    return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits))


def discriminator_variables():
    return tf.get_collection(tf.GraphKeys.TRAINABLE_VARIABLES, scope=SCOPE + "/")


def dann_strength(global_step, total_steps, schedule="dann"):
    """The reversal strength at a step: DANN's 2 / (1 + exp(-10 p)) - 1 with p = step / total_steps
    clipped to [0, 1] (0 at the start, 1 at the end), or 1 throughout ("constant")."""
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, not {schedule!r}")
    if schedule == "constant":
        return tf.constant(1.0)
    progress = tf.clip_by_value(tf.cast(global_step, tf.float32) / float(max(int(total_steps), 1)), 0.0, 1.0)
    return 2.0 / (1.0 + tf.exp(-10.0 * progress)) - 1.0
