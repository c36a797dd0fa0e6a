"""The stages' optimizer: the original's tf.train.AdamOptimizer(lr, 0.9, 0.999, epsilon), and, where a
config asks for it (demo only), Adam whose step is larger for the Cholesky heads alone.

The scaled variant is the same optimizer (one `Adam`, the same slots and beta powers, so the
checkpoint's variables are the original's); only the learning rate that reaches the heads'
update ops differs.
"""
import tensorflow.compat.v1 as tf

HEAD_SCOPE = "cholesky_block"


class HeadScaledAdam(tf.train.AdamOptimizer):
    """Adam with learning rate `scale x lr` for the variables whose name contains `scoped`."""

    def __init__(self, learning_rate, beta1, beta2, epsilon, scale, scoped=HEAD_SCOPE):
        super().__init__(learning_rate, beta1, beta2, epsilon=epsilon)
        self._scale, self._scoped = float(scale), scoped

    def _scaled(self, var, apply):
        if self._scoped not in var.op.name:
            return apply()
        base = self._lr_t
        self._lr_t = base * self._scale
        try:
            return apply()
        finally:
            self._lr_t = base

    def _apply_dense(self, grad, var):
        return self._scaled(var, lambda: super(HeadScaledAdam, self)._apply_dense(grad, var))

    def _resource_apply_dense(self, grad, var):
        return self._scaled(var, lambda: super(HeadScaledAdam, self)._resource_apply_dense(grad, var))

    def _apply_sparse(self, grad, var):
        return self._scaled(var, lambda: super(HeadScaledAdam, self)._apply_sparse(grad, var))

    def _resource_apply_sparse(self, grad, var, indices):
        return self._scaled(var, lambda: super(HeadScaledAdam, self)._resource_apply_sparse(grad, var, indices))


def stage_optimizer(rate, schedule):
    """The stage's Adam: the original's unless `cholesky_lr_scale` differs from 1 (docs/FAITHFULNESS.md, T16)."""
    if float(schedule.cholesky_lr_scale) == 1.0:
        return tf.train.AdamOptimizer(rate, 0.9, 0.999, epsilon=schedule.adam_epsilon)
    return HeadScaledAdam(rate, 0.9, 0.999, schedule.adam_epsilon, schedule.cholesky_lr_scale)
