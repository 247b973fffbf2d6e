"""Shared building blocks of our Keras models (naming rules in ``naming``).

One rule for convolutions and batch norm: every builder in ``tl_keras.models`` takes
``Conv2D`` and ``BatchNormalization`` from here, i.e. :class:`tl_keras.models.conv.Conv2D`
(matrix-product kernel gradient under mixed bfloat16) and
:class:`tl_keras.models.batchnorm.BatchNormalization` (fused training pass), never
``keras.layers``' (``tests/tl_keras/models/test_layer_rule.py`` checks it). Both keep
Keras' class names, so ``.weights.h5`` files and checkpoints address their variables as
Keras' would; encoders saved with Keras' classes load as ours (``fused_keras_json``).
keras-hub backbones (``models.hub``) keep keras-hub's own layers.
"""
from __future__ import annotations

import keras

from tl_keras.models.batchnorm import BatchNormalization
from tl_keras.models.conv import Conv2D
from tl_keras.models.naming import BN_EPSILON, BN_MOMENTUM, LEAKY_SLOPE, layer_name

__all__ = ["BatchNormalization", "Conv2D", "activate", "batch_norm", "conv_bn",
           "conv_bn_explicit_pad", "layer_name"]


def batch_norm(scope: str) -> BatchNormalization:
    """slim ``batch_norm`` (center and scale) attached to the conv of ``scope``
    (a Keras ``BatchNormalization`` whose training pass is fused; ``models.batchnorm``)."""
    return BatchNormalization(
        momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=layer_name(scope + "/BatchNorm"))


def conv_bn(x, scope: str, filters: int, kernel: int, *, stride: int = 1,
            activation: str | None = "relu", transpose: bool = False):
    """Conv (no bias, TF 'SAME') + BN + activation, named after ``scope``.

    Strided non-transposed convs must use :func:`conv_bn_explicit_pad` instead (slim's
    ``conv2d_same``); this helper is for stride 1, and for the discriminator whose slim
    convs are plain 'SAME' at every stride.
    """
    layer = keras.layers.Conv2DTranspose if transpose else Conv2D
    x = layer(filters, kernel, strides=stride, padding="same", use_bias=False,
              name=layer_name(scope))(x)
    x = batch_norm(scope)(x)
    return activate(x, activation, scope)


def conv_bn_explicit_pad(x, scope: str, filters: int, kernel: int, stride: int,
                         activation: str | None = "relu"):
    """slim ``conv2d_same`` for stride > 1: symmetric zero padding, then a VALID conv.

    TF 'SAME' would pad 0 before / 1 after for even inputs; slim pads (k-1)//2 on both
    sides, which shifts the sampling grid. Using 'same' here changes the function.
    """
    pad = kernel - 1
    x = keras.layers.ZeroPadding2D(((pad // 2, pad - pad // 2),) * 2,
                                   name=layer_name(scope + "/pad"))(x)
    x = Conv2D(filters, kernel, strides=stride, padding="valid", use_bias=False,
                            name=layer_name(scope))(x)
    x = batch_norm(scope)(x)
    return activate(x, activation, scope)


def activate(x, activation: str | None, scope: str):
    """Apply ``relu``, ``leaky_relu`` (slope 0.2, Taskonomy's ``leaky_relu(0.2)``) or nothing."""
    if activation is None:
        return x
    if activation == "relu":
        return keras.layers.ReLU(name=layer_name(scope + "/relu"))(x)
    if activation == "leaky_relu":
        return keras.layers.LeakyReLU(LEAKY_SLOPE, name=layer_name(scope + "/lrelu"))(x)
    raise ValueError(f"unknown activation {activation!r}")
