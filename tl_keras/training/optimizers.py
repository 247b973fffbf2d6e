"""Optimizers with the paper's weight-decay semantics (docs/method.md section 6).

The original code used TensorFlow Addons' AdamW: after each step every variable
is shrunk by a *fixed* coefficient, ``w <- w - wd * w`` (plus the Adam update).
Keras 3's ``AdamW`` instead shrinks by ``wd * lr``, which ties the decay to the
learning rate and its schedule. :class:`DecoupledAdamW` restores the fixed
per-step coefficient while keeping Keras' distribution-aware update machinery.

Both Adam variants run their per-variable update as TensorFlow's fused training
kernels: Keras' ``Adam.update_step`` is a chain of about ten element-wise ops per
variable (each one a pass over memory), and over the 40 M weights of the Taskonomy
network that chain cost about as much as the whole batch norm of a bfloat16 step
(docs/training.md, "Speed"). ``ResourceApplyAdam`` computes the same formula
(``alpha = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)``, ``m += (g - m)(1 - beta_1)``,
``v += (g^2 - v)(1 - beta_2)``, ``w -= alpha m / (sqrt(v) + epsilon)``) in one pass, and
the decay is one ``ResourceApplyGradientDescent`` (``w -= wd * w``). The optimizer
variables are Keras' own, so checkpoints are unchanged.
"""
from __future__ import annotations

import keras
import tensorflow as tf

#: Variable dtypes TensorFlow's fused training kernels are registered for.
_FUSED_DTYPES = (tf.float16, tf.bfloat16, tf.float32, tf.float64)


class _FusedAdamUpdate:
    """Mixin for Keras' ``Adam``/``AdamW``: ``update_step`` as one ``ResourceApplyAdam``.

    Falls back to Keras' own update for AMSGrad, sparse gradients and other dtypes.
    """

    def update_step(self, gradient, variable, learning_rate):
        if isinstance(variable, keras.Variable):
            variable = variable.value
        if (self.amsgrad or isinstance(gradient, tf.IndexedSlices)
                or variable.dtype not in _FUSED_DTYPES):
            return super().update_step(gradient, variable, learning_rate)
        index = self._get_variable_index(variable)
        dtype = variable.dtype
        step = tf.cast(self.iterations + 1, dtype)
        beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle, m=self._momentums[index].value.handle,
            v=self._velocities[index].value.handle,
            beta1_power=tf.pow(beta_1, step), beta2_power=tf.pow(beta_2, step),
            lr=tf.cast(learning_rate, dtype), beta1=beta_1, beta2=beta_2,
            epsilon=tf.cast(self.epsilon, dtype), grad=tf.cast(gradient, dtype),
            use_locking=False, use_nesterov=False)


@keras.saving.register_keras_serializable(package="tl_keras")
class FusedAdam(_FusedAdamUpdate, keras.optimizers.Adam):
    """Keras' ``Adam`` (same arguments, variables and results), fused update."""


@keras.saving.register_keras_serializable(package="tl_keras")
class DecoupledAdamW(_FusedAdamUpdate, keras.optimizers.AdamW):
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
            if not self._use_weight_decay(variable):
                return
            wd = tf.cast(self.weight_decay, variable.dtype)
            if variable.dtype in _FUSED_DTYPES:
                # One pass (w -= wd * w) instead of a multiply and an assign_sub.
                tf.raw_ops.ResourceApplyGradientDescent(
                    var=variable.handle, alpha=wd, delta=variable.read_value(),
                    use_locking=False)
            else:
                variable.assign_sub(variable * wd)

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


@keras.saving.register_keras_serializable(package="tl_keras")
class ShiftedScaledSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """``multiplier * base(step + offset)``: the encoder's LR when it has its own optimizer.

    The encoder optimizer counts only its own steps, which start ``offset`` steps into the
    run (the frozen epochs), so ``step + offset`` is the run's step and the encoder follows
    the run's schedule (LR / 10 after half the run) at ``multiplier`` times its value.
    ``base`` is a float or a schedule.
    """

    def __init__(self, base, multiplier: float, offset: int = 0):
        self.base, self.multiplier, self.offset = base, float(multiplier), int(offset)

    def __call__(self, step):
        if isinstance(self.base, keras.optimizers.schedules.LearningRateSchedule):
            return self.multiplier * self.base(step + self.offset)
        return tf.constant(self.multiplier * float(self.base), tf.float32)

    def get_config(self):
        base = (keras.optimizers.schedules.serialize(self.base)
                if isinstance(self.base, keras.optimizers.schedules.LearningRateSchedule)
                else float(self.base))
        return {"base": base, "multiplier": self.multiplier, "offset": self.offset}

    @classmethod
    def from_config(cls, config):
        base = config["base"]
        if isinstance(base, dict):
            base = keras.optimizers.schedules.deserialize(base)
        return cls(base, config["multiplier"], config["offset"])


def make_generator_optimizer(learning_rate, weight_decay: float, *, loss_scale: bool = False):
    """Adam with fixed per-step decoupled weight decay (``weight_decay`` 0 = plain Adam).

    ``learning_rate`` is a float or a Keras schedule. With ``loss_scale`` (float16
    mixed precision) the optimizer is wrapped in a dynamic ``LossScaleOptimizer``.
    """
    if weight_decay:
        opt = DecoupledAdamW(learning_rate=learning_rate, weight_decay=weight_decay,
                             beta_1=0.9, beta_2=0.999, epsilon=1e-8)
    else:  # Keras' AdamW refuses weight_decay=None
        opt = FusedAdam(learning_rate=learning_rate, beta_1=0.9, beta_2=0.999, epsilon=1e-8)
    return keras.optimizers.LossScaleOptimizer(opt) if loss_scale else opt


def make_discriminator_optimizer(learning_rate: float, *, loss_scale: bool = False):
    """Plain SGD for the GAN discriminator (Taskonomy's GradientDescent, LR 1e-5)."""
    opt = keras.optimizers.SGD(learning_rate=learning_rate)
    return keras.optimizers.LossScaleOptimizer(opt) if loss_scale else opt
