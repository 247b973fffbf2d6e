"""Patch discriminators of the auto-encoding cGAN (spec section 3).

Taskonomy's ``pix2pix_discriminator`` (n_layers 5, stride 4, 64 channels): 5x5/4 convs,
then 4x4/1 convs, all TF 'SAME', LeakyReLU(0.2), BN on conv2-4, biases where no BN,
linear logits. The paper's text variant starts with a stride-1 5x5 conv, then two 5x5/4
convs and two 4x4/1 convs.

The input is ONE tensor: the channel concatenation ``input image ++ candidate``; callers
concatenate (``keras.ops.concatenate([x, y], axis=-1)``).
"""
from __future__ import annotations

import keras

from tl_keras.models.layers import Conv2D, activate, conv_bn, layer_name

#: (scope, kernel, stride, filters) of conv1..conv4; conv5 is the 4x4/1 logits conv.
VARIANTS = {
    "taskonomy": (("conv1", 5, 4, 64), ("conv2", 5, 4, 128), ("conv3", 5, 4, 256),
                  ("conv4", 4, 1, 512)),
    "paper": (("conv1", 5, 1, 64), ("conv2", 5, 4, 128), ("conv3", 5, 4, 256),
              ("conv4", 4, 1, 512)),
}


def build_discriminator(image_size, in_channels: int, variant: str = "taskonomy",
                        name: str = "discriminator") -> keras.Model:
    """Build the conditional patch discriminator.

    Args:
      image_size: side (int) or ``(height, width)`` of the images.
      in_channels: channels of ``input ++ candidate`` (6 for RGB auto-encoding).
      variant: ``"taskonomy"`` or ``"paper"``.
      name: model name.

    Returns:
      ``keras.Model`` (N, H, W, in_channels) -> patch logits (N, H', W', 1)
      (4x4 at 256 px for the Taskonomy variant).
    """
    if variant not in VARIANTS:
        raise ValueError(f"discriminator variant must be one of {sorted(VARIANTS)}, "
                         f"got {variant!r}")
    h, w = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    inputs = keras.Input((h, w, in_channels), name="image_and_candidate")
    (scope1, k1, s1, f1), *rest = VARIANTS[variant]
    x = Conv2D(f1, k1, strides=s1, padding="same", use_bias=True,
               name=layer_name(f"discriminator/{scope1}"))(inputs)
    x = activate(x, "leaky_relu", f"discriminator/{scope1}")
    for scope, kernel, stride, filters in rest:
        x = conv_bn(x, f"discriminator/{scope}", filters, kernel, stride=stride,
                    activation="leaky_relu")
    x = Conv2D(1, 4, padding="same", use_bias=True,
               name=layer_name("discriminator/conv5"))(x)
    return keras.Model(inputs, x, name=name)
