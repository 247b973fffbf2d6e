"""Batch normalisation whose training pass runs TensorFlow's fused kernel.

Keras 3's ``BatchNormalization`` is not fused on the TensorFlow backend: in training
each layer casts to float32, computes moments, normalises and casts back as separate
ops, forward and backward. On a CPU with native bfloat16 those element-wise ops cost
more than the convolutions (docs/training.md, "Speed"). This module's
:class:`BatchNormalization` keeps the Keras layer (same variables, names, ``.weights.h5`` and checkpoint layout, same
inference path) and only routes the training-mode call through ``FusedBatchNormV3``
(NHWC, float32 scale/offset, float32 or bfloat16/float16 input).

It has Keras' class name on purpose: ``.weights.h5`` files address a layer's variables
by its snake-cased class name (``layers/batch_normalization/vars``), so any other name
would make every existing weights file unreadable. It is registered as
``tl_keras>BatchNormalization``, which tells the two apart in Keras JSON.

The moving statistics follow Keras exactly: ``moving = moving * momentum + batch *
(1 - momentum)`` with the *biased* batch variance. ``FusedBatchNormV3`` returns the
unbiased (Bessel-corrected) variance, so it is scaled back by ``(n - 1) / n``.

The fused kernel is not CPU-specific: TensorFlow registers ``FusedBatchNormV3`` and its
gradient for float32, float16 and bfloat16 on CPU and GPU alike (cuDNN's fused batch norm
on a GPU, which is also what ``tf.keras`` 2 ran there). On any other device type (TPU, a
pluggable device) the layer runs Keras' code: :func:`fused_kernel_everywhere`.

With several replicas in sync (``MirroredStrategy``, ``MultiWorkerMirroredStrategy``)
the layer uses Keras' synchronized batch norm instead: moments are all-reduced over
the global batch, so a distributed run normalises as one device with the whole batch
would (the fused kernel only sees its replica's share).
"""
from __future__ import annotations

import json

import keras
import tensorflow as tf

from tl_keras.models import conv, machine

__all__ = ["BatchNormalization", "fused_keras_json", "fused_kernel_everywhere"]

#: Device types with a ``FusedBatchNormV3`` kernel for float32, float16 and bfloat16.
FUSED_DEVICE_TYPES = frozenset({"CPU", "GPU"})


@keras.saving.register_keras_serializable(package="tl_keras")
class BatchNormalization(keras.layers.BatchNormalization):
    """``keras.layers.BatchNormalization`` with a fused training pass (module docstring).

    Takes the arguments of ``keras.layers.BatchNormalization``. The fused pass applies to
    rank-4 inputs normalised over the last axis without mask or renorm; anything else
    (e.g. the classification head's BN on a dense layer) runs the Keras code unchanged.
    """

    def call(self, inputs, training=None, mask=None):
        if (not (training and self.trainable) or not self._fusable(inputs, mask)
                or _replicas_in_sync() > 1 or not fused_kernel_everywhere()):
            return super().call(inputs, training=training, mask=mask)
        x = inputs
        if x.dtype not in (tf.float32, tf.bfloat16, tf.float16):
            x = tf.cast(x, tf.float32)
        channels = x.shape[-1]
        gamma = self.gamma if self.scale else tf.ones((channels,), tf.float32)
        beta = self.beta if self.center else tf.zeros((channels,), tf.float32)
        empty = tf.constant([], tf.float32)
        # exponential_avg_factor=1 returns the batch statistics themselves; the moving
        # averages are updated below with Keras' momentum semantics.
        y, mean, unbiased_var, _, _, _ = tf.raw_ops.FusedBatchNormV3(
            x=x, scale=tf.cast(gamma, tf.float32), offset=tf.cast(beta, tf.float32),
            mean=empty, variance=empty, epsilon=self.epsilon, exponential_avg_factor=1.0,
            data_format="NHWC", is_training=True)
        shape = tf.shape(x)
        n = tf.cast(shape[0] * shape[1] * shape[2], tf.float32)
        variance = unbiased_var * ((n - 1.0) / tf.maximum(n, 1.0))
        mean, variance = tf.stop_gradient(mean), tf.stop_gradient(variance)
        m = self.momentum
        self.moving_mean.assign(self.moving_mean * m + mean * (1.0 - m))
        self.moving_variance.assign(self.moving_variance * m + variance * (1.0 - m))
        return tf.cast(y, self.compute_dtype)

    def _fusable(self, inputs, mask) -> bool:
        """NHWC input normalised over channels, no mask, renorm or explicit sync."""
        return (len(inputs.shape) == 4 and self.axis in (-1, 3) and mask is None
                and not self.renorm and not self.synchronized)

    def _moments(self, inputs, mask):
        # Several replicas: all-reduce the moments (Keras' synchronized batch norm).
        if mask is None and _replicas_in_sync() > 1:
            return keras.ops.moments(inputs, axes=self._reduction_axes, synchronized=True)
        return super()._moments(inputs, mask)


def fused_kernel_everywhere() -> bool:
    """Whether every device TensorFlow may train on has the fused kernel (CPU, GPU)."""
    return machine.device_types() <= FUSED_DEVICE_TYPES


def _replicas_in_sync() -> int:
    """Replicas of the current replica context (1 outside any strategy)."""
    ctx = tf.distribute.get_replica_context()
    return 1 if ctx is None else ctx.num_replicas_in_sync


def fused_keras_json(text: str) -> str:
    """Keras model JSON with Keras' ``BatchNormalization`` and ``Conv2D`` replaced by ours.

    Encoders saved before these layers existed name Keras' own classes; loading them through
    this keeps their variables (same class names, same configs) and trains them with the
    fused batch norm and the matrix-product kernel gradient (``models.conv``).
    """
    def visit(node):
        if isinstance(node, dict):
            ours = _REPLACEMENTS.get(node.get("class_name"))
            if ours is not None and node.get("module") == "keras.layers":
                node = {**node, "module": ours[0], "registered_name": ours[1]}
            return {k: visit(v) for k, v in node.items()}
        if isinstance(node, list):
            return [visit(v) for v in node]
        return node
    return json.dumps(visit(json.loads(text)))


_REPLACEMENTS = {
    cls.__name__: (cls.__module__, keras.saving.get_registered_name(cls))
    for cls in (BatchNormalization, conv.Conv2D)}
