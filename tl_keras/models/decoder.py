"""Pixel-wise decoders: Taskonomy's 15-layer decoder and the paper's 10-layer variant.

Taskonomy (``decoder_fc_15_layer_256_resolution_fully_convolutional_16x16x4``, spec
section 2): six 3x3 convs at the latent resolution, then transposed conv (3x3/2 'SAME')
and conv alternating up to 16x the latent size, a 3x3 output conv with bias. Every layer
but the last has BN (no bias) and LeakyReLU(0.2).

The paper (Zoetmulder et al. 2022) describes a 10-layer decoder: two convs, then four times
a transposed conv followed by a conv (the last of which is the output conv). Its widths are
not published; we taper them like Taskonomy (see ``PAPER_LAYERS``).
"""
from __future__ import annotations

import keras

from tl_keras.models.conv import Conv2D
from tl_keras.models.layers import conv_bn, layer_name

#: (scope, kind, filters) for the Taskonomy decoder, before ``decoder_output``.
TASKONOMY_LAYERS = (
    ("conv2", "conv", 1024), ("conv3", "conv", 1024), ("conv4", "conv", 512),
    ("conv5", "conv", 256), ("conv6", "conv", 256), ("conv7", "conv", 128),
    ("deconv8", "deconv", 64), ("conv9", "conv", 64),
    ("deconv10", "deconv", 32), ("conv11", "conv", 32),
    ("deconv12", "deconv", 16), ("conv13", "conv", 32),
    ("deconv14", "deconv", 16),
)
#: The paper's 10-layer variant: 9 BN layers + ``decoder_output`` (widths are our choice).
PAPER_LAYERS = (
    ("conv1", "conv", 512), ("conv2", "conv", 256),
    ("deconv3", "deconv", 128), ("conv4", "conv", 128),
    ("deconv5", "deconv", 64), ("conv6", "conv", 64),
    ("deconv7", "deconv", 32), ("conv8", "conv", 32),
    ("deconv9", "deconv", 16),
)
VARIANTS = {"taskonomy": TASKONOMY_LAYERS, "paper": PAPER_LAYERS}
#: Upsampling of the layers above; a /32 encoder (keras-hub backbones) gets one more
#: transposed conv (``decoder/up0``, the first layer's width) in front.
UPSAMPLING = 16
UPSAMPLINGS = (16, 32)
OUTPUT_ACTIVATIONS = (None, "tanh")


def build_decoder(latent_shape, out_channels: int, variant: str = "taskonomy",
                  output_activation: str | None = None, name: str = "decoder",
                  upsampling: int = UPSAMPLING) -> keras.Model:
    """Build a decoder from the encoder representation to a full-resolution map.

    Args:
      latent_shape: ``(h, w, c)`` of the encoder output (e.g. ``(16, 16, 8)``).
      out_channels: K, output channels (classes for segmentation logits, image channels
        for auto-encoding).
      variant: ``"taskonomy"`` (weights loadable from Taskonomy checkpoints) or ``"paper"``.
      output_activation: ``None`` (logits) or ``"tanh"`` (Taskonomy's, images in [-1, 1]).
      name: model name.
      upsampling: output size / latent size: 16 (the encoders of the paper) or 32 (one
        more transposed conv + BN + LeakyReLU in front, ``decoder/up0``).

    Returns:
      ``keras.Model`` (N, h, w, c) -> (N, upsampling h, upsampling w, K).
    """
    if variant not in VARIANTS:
        raise ValueError(f"decoder variant must be one of {sorted(VARIANTS)}, got {variant!r}")
    if output_activation not in OUTPUT_ACTIVATIONS:
        raise ValueError(f"output_activation must be None or 'tanh', got {output_activation!r}")
    if out_channels < 1:
        raise ValueError(f"decoder out_channels must be >= 1, got {out_channels}")
    if upsampling not in UPSAMPLINGS:
        raise ValueError(f"--decoder_variant={variant} upsamples the latent 16x (or 32x); "
                         f"this encoder's latent is 1/{upsampling} of the image (use "
                         "--decoder_variant=unet)")
    inputs = keras.Input(tuple(latent_shape), name="latent")
    x = inputs
    if upsampling == 32:
        x = conv_bn(x, "decoder/up0", VARIANTS[variant][0][2], 3, stride=2,
                    activation="leaky_relu", transpose=True)
    for scope, kind, filters in VARIANTS[variant]:
        x = conv_bn(x, f"decoder/{scope}", filters, 3, stride=2 if kind == "deconv" else 1,
                    activation="leaky_relu", transpose=kind == "deconv")
    x = Conv2D(out_channels, 3, padding="same", use_bias=True,
               name=layer_name("decoder/decoder_output"))(x)
    if output_activation == "tanh":
        x = keras.layers.Activation("tanh", name=layer_name("decoder/tanh"))(x)
    return keras.Model(inputs, x, name=name)
