"""The stages' optimizer: the original's tf.train.AdamOptimizer(lr, 0.9, 0.999, epsilon), and, where a
config asks for it (demo only), Adam whose step is larger for SAMP's heads: `head_lr_scale` for
everything under the scopes L/ and L_semi/ (fc_delta_1, mlp_bottleneck and the Cholesky block of
each), `cholesky_lr_scale` for the Cholesky blocks; a variable in both takes the product.

The scaled variant is the same optimizer (one `Adam`, the same slots and beta powers, so the
checkpoint's variables are the original's); only the learning rate that reaches those variables'
update ops differs.
"""
import re

import tensorflow.compat.v1 as tf

from utils.errors import ConfigError

CHOLESKY_SCOPE = re.compile(r"(^|/)cholesky_block(_\d+)?/")
HEAD_SCOPE = re.compile(r"(^|/)L(_semi)?/")


def rate_scale(name, cholesky_lr_scale=1.0, head_lr_scale=1.0):
    """The factor on the learning rate of the variable called `name`."""
    scale = 1.0
    if HEAD_SCOPE.search(name):
        scale *= float(head_lr_scale)
    if CHOLESKY_SCOPE.search(name):
        scale *= float(cholesky_lr_scale)
    return scale


class HeadScaledAdam(tf.train.AdamOptimizer):
    """Adam with learning rate `rate_scale(name) x lr` for each variable."""

    def __init__(self, learning_rate, beta1, beta2, epsilon, cholesky_lr_scale=1.0, head_lr_scale=1.0,
                 stage="<stage>"):
        super().__init__(learning_rate, beta1, beta2, epsilon=epsilon)
        self._scales = {"cholesky_lr_scale": float(cholesky_lr_scale), "head_lr_scale": float(head_lr_scale)}
        self._stage = stage

    def apply_gradients(self, grads_and_vars, global_step=None, name=None):
        grads_and_vars = list(grads_and_vars)
        names = [v.name for g, v in grads_and_vars if g is not None]
        scopes = {"cholesky_lr_scale": (CHOLESKY_SCOPE, "a Cholesky block"),
                  "head_lr_scale": (HEAD_SCOPE, "the scopes L/ or L_semi/")}
        for key, (scope, where) in scopes.items():
            if self._scales[key] != 1.0 and not any(scope.search(n) for n in names):
                raise ConfigError(f"stages.{self._stage}.{key} is {self._scales[key]:g} but this stage trains no "
                                  f"variable in {where} (SAMP's heads, trained in E_2_1 and E_2_2): set it to 1")
        return super().apply_gradients(grads_and_vars, global_step=global_step, name=name)

    def _scaled(self, var, apply):
        scale = rate_scale(var.op.name, **self._scales)
        if scale == 1.0:
            return apply()
        base = self._lr_t
        self._lr_t = base * scale
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


def stage_optimizer(rate, schedule, stage="<stage>"):
    """The stage's Adam: the original's unless `cholesky_lr_scale` or `head_lr_scale` differs from 1
    (docs/FAITHFULNESS.md, T16 and T18)."""
    scales = {"cholesky_lr_scale": float(schedule.cholesky_lr_scale), "head_lr_scale": float(schedule.head_lr_scale)}
    if all(value == 1.0 for value in scales.values()):
        return tf.train.AdamOptimizer(rate, 0.9, 0.999, epsilon=schedule.adam_epsilon)
    return HeadScaledAdam(rate, 0.9, 0.999, schedule.adam_epsilon, stage=stage, **scales)
