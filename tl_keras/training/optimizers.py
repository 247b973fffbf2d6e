"""Optimizers with the paper's weight-decay semantics (docs/method.md section 6).

The original code used TensorFlow Addons' AdamW: after each step every variable
is shrunk by a *fixed* coefficient, ``w <- w - wd * w`` (plus the Adam update).
Keras 3's ``AdamW`` instead shrinks by ``wd * lr``, which ties the decay to the
learning rate and its schedule. :class:`DecoupledAdamW` restores the fixed
per-step coefficient while keeping Keras' distribution-aware update machinery.
"""
from __future__ import annotations

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="tl_keras")
class DecoupledAdamW(keras.optimizers.AdamW):
    """Adam with decoupled weight decay of a fixed per-step coefficient.

    Per step, for every trainable variable ``w`` with gradient ``g``:
    ``w <- w - weight_decay * w - lr * m_hat / (sqrt(v_hat) + epsilon)``,
    the decay using the value of ``w`` before the step (as TFA's AdamW did).
    ``weight_decay`` is *not* multiplied by the learning rate, so an LR schedule
    leaves the decay unchanged.
    """

    def _apply_weight_decay(self, variables):
        if self.weight_decay is None:
            return

        def decay(variable):
            if self._use_weight_decay(variable):
                variable.assign_sub(variable * tf.cast(self.weight_decay, variable.dtype))

        def distributed_decay(distribution, variables):
            # Same merge-call pattern as Keras' TF optimizer, minus the ``* lr``.
            for variable in variables:
                if isinstance(variable, keras.Variable):
                    variable = variable.value
                distribution.extended.update(variable, decay, group=False)

        tf.__internal__.distribute.interim.maybe_merge_call(
            distributed_decay, self._distribution_strategy, variables)


def learning_rate_schedule(learning_rate: float, boundaries=(), values=()):
    """A constant LR, or a piecewise-constant schedule over optimizer iterations.

    Args:
      learning_rate: the LR when ``boundaries`` is empty.
      boundaries: step boundaries (increasing).
      values: len(boundaries) + 1 LRs.
    """
    boundaries, values = list(boundaries), list(values)
    if not boundaries:
        return float(learning_rate)
    if len(values) != len(boundaries) + 1:
        raise ValueError(f"lr_values needs {len(boundaries) + 1} entries for "
                         f"{len(boundaries)} boundaries, got {len(values)}")
    return keras.optimizers.schedules.PiecewiseConstantDecay(
        [int(b) for b in boundaries], [float(v) for v in values])


def make_generator_optimizer(learning_rate, weight_decay: float, *, loss_scale: bool = False):
    """Adam with fixed per-step decoupled weight decay (``weight_decay`` 0 = plain Adam).

    ``learning_rate`` is a float or a Keras schedule. With ``loss_scale`` (float16
    mixed precision) the optimizer is wrapped in a dynamic ``LossScaleOptimizer``.
    """
    if weight_decay:
        opt = DecoupledAdamW(learning_rate=learning_rate, weight_decay=weight_decay,
                             beta_1=0.9, beta_2=0.999, epsilon=1e-8)
    else:  # Keras' AdamW refuses weight_decay=None
        opt = keras.optimizers.Adam(learning_rate=learning_rate, beta_1=0.9, beta_2=0.999,
                                    epsilon=1e-8)
    return keras.optimizers.LossScaleOptimizer(opt) if loss_scale else opt


def make_discriminator_optimizer(learning_rate: float, *, loss_scale: bool = False):
    """Plain SGD for the GAN discriminator (Taskonomy's GradientDescent, LR 1e-5)."""
    opt = keras.optimizers.SGD(learning_rate=learning_rate)
    return keras.optimizers.LossScaleOptimizer(opt) if loss_scale else opt
