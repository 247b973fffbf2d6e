"""Classification head ``encoder_multilayers_fc_bn`` (spec section 4).

Flatten (NHWC, as tf.contrib flatten), dense 2048 without bias + BN + ReLU + dropout 0.5
(``three_layer_fc_network/fc0``), dense to N with bias (``three_layer_fc_network/fc2``).
"""
from __future__ import annotations

import keras

from tl_keras.models.layers import batch_norm, layer_name

HIDDEN = 2048
DROPOUT = 0.5
SCOPE = "three_layer_fc_network"


def build_classification_head(latent_shape, num_outputs: int, name: str = "head") -> keras.Model:
    """Build the classification head on the encoder representation.

    Args:
      latent_shape: ``(h, w, c)`` of the encoder output.
      num_outputs: N classes (logits).
      name: model name.

    Returns:
      ``keras.Model`` (N, h, w, c) -> logits (N, num_outputs).
    """
    if num_outputs < 1:
        raise ValueError(f"head num_outputs must be >= 1, got {num_outputs}")
    inputs = keras.Input(tuple(latent_shape), name="latent")
    x = keras.layers.Flatten(name=layer_name(f"{SCOPE}/flatten"))(inputs)
    x = keras.layers.Dense(HIDDEN, use_bias=False, name=layer_name(f"{SCOPE}/fc0"))(x)
    x = batch_norm(f"{SCOPE}/fc0")(x)
    x = keras.layers.ReLU(name=layer_name(f"{SCOPE}/fc0/relu"))(x)
    x = keras.layers.Dropout(DROPOUT, name=layer_name(f"{SCOPE}/fc0/dropout"))(x)
    x = keras.layers.Dense(num_outputs, use_bias=True, name=layer_name(f"{SCOPE}/fc2"))(x)
    return keras.Model(inputs, x, name=name)
