"""SimSiam's projector and predictor on an encoder's representation (Chen & He 2021).

The projector is three dense layers, each followed by batch norm, ReLU after the first
two, the last batch norm without scale and offset; the predictor a bottleneck of two
dense layers (batch norm and ReLU on the hidden one only, the output with a bias). Dense
layers followed by batch norm have no bias. SimSiam's widths on ResNet-50 are 2048
(projector) and 512 (predictor hidden); the projector's hidden layers are as wide as its
output here (on ResNet-50 both are 2048).

The representation the projector reads is the encoder output flattened, when it has at
most ``FLATTEN_LIMIT`` values (every model preset: 16 x 16 x 8 = 2048 at 256 px), else
its global average (wide backbones, as SimSiam's pooled ResNet features). The presets'
latent has 8 channels at 1/16 of the image side: pooling it would leave 8 numbers,
and the fine-tuning decoder reads it position by position.
"""
from __future__ import annotations

import math

import keras

from tl_keras.models.batchnorm import BatchNormalization

DIM, PRED_DIM = 2048, 512
#: Largest encoder output (values per image) the projector reads flattened.
FLATTEN_LIMIT = 8192


def _dense_bn(x, units: int, name: str, relu: bool = True, affine: bool = True):
    x = keras.layers.Dense(units, use_bias=False, name=name)(x)
    x = BatchNormalization(center=affine, scale=affine, name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x) if relu else x


def build_simsiam_head(latent_shape, dim: int = DIM, pred_dim: int = PRED_DIM,
                       name: str = "head") -> keras.Model:
    """Projector and predictor: latent (N, h, w, c) -> ``[z, p]``, both (N, dim) float32.

    Args:
      latent_shape: ``(h, w, c)`` of the encoder output.
      dim: projector output (and predictor output) width.
      pred_dim: predictor hidden width.
      name: model name.

    Returns:
      ``keras.Model`` with outputs ``[z, p]``: the projection and its prediction.
    """
    if dim < 1 or pred_dim < 1:
        raise ValueError(f"SimSiam widths must be >= 1, got dim={dim}, pred_dim={pred_dim}")
    inputs = keras.Input(tuple(latent_shape), name="latent")
    if math.prod(latent_shape) <= FLATTEN_LIMIT:
        x = keras.layers.Flatten(name="representation")(inputs)
    else:
        x = keras.layers.GlobalAveragePooling2D(name="representation")(inputs)
    x = _dense_bn(x, dim, "projector0")
    x = _dense_bn(x, dim, "projector1")
    z = _dense_bn(x, dim, "projector2", relu=False, affine=False)
    h = _dense_bn(z, pred_dim, "predictor0")
    p = keras.layers.Dense(dim, name="predictor1")(h)
    cast = keras.layers.Activation("linear", dtype="float32", name="projection")
    return keras.Model(inputs, [cast(z), keras.layers.Activation(
        "linear", dtype="float32", name="prediction")(p)], name=name)
