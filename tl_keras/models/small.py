"""The small networks of the ``compact`` and ``tiny`` presets (:mod:`tl_keras.models.presets`).

Tracing a Taskonomy training step takes tens of seconds on a 2-core CPU; these networks
(same inputs, outputs, BN and LeakyReLU conventions, /16 latent) train on a CPU
(``compact``: 4x wider) and let the loop, resume, distribution and sweep machinery be
tested in seconds (``tiny``: a few thousand parameters).
"""
from __future__ import annotations

import keras

from tl_keras.models.factory import RECONSTRUCTING, UNET_REFUSED, TaskModels
from tl_keras.models.layers import BatchNormalization, Conv2D
from tl_keras.models.simsiam import build_simsiam_head
from tl_keras.models.unet import unet_model


def _conv(x, filters, stride=1, name=None, batch_norm=True):
    x = Conv2D(filters, 3, stride, padding="same", use_bias=not batch_norm, name=name)(x)
    if batch_norm:
        x = BatchNormalization(momentum=0.9, epsilon=1e-5, name=f"{name}_bn")(x)
    return keras.layers.LeakyReLU(0.2, name=f"{name}_act")(x)


def tiny_encoder(image_size: int, input_channels: int, latent_channels: int = 8,
                 batch_norm: bool = True, width: int = 1):
    """Four stride-2 convs and a 1x1 ``compress1``: (H, W, C) -> (H/16, W/16, latent)."""
    inputs = keras.Input((image_size, image_size, input_channels), name="image")
    x = inputs
    for i, f in enumerate((8 * width, 16 * width, 16 * width, 16 * width)):
        x = _conv(x, f, 2, name=f"enc{i}", batch_norm=batch_norm)
    x = Conv2D(latent_channels, 1, activation="relu", name="compress1")(x)
    return keras.Model(inputs, x, name="encoder")


def tiny_decoder(latent_shape, out_channels: int, activation=None, width: int = 1):
    """Four stride-2 transposed convs and an output conv (float32 logits)."""
    inputs = keras.Input(tuple(latent_shape), name="latent")
    x = inputs
    for i, f in enumerate((16 * width, 16 * width, 8 * width, 8 * width)):
        x = keras.layers.Conv2DTranspose(f, 3, 2, padding="same", use_bias=False,
                                         name=f"dec{i}")(x)
        x = keras.layers.LeakyReLU(0.2, name=f"dec{i}_act")(x)
    x = Conv2D(out_channels, 3, padding="same", activation=activation, dtype="float32",
               name="decoder_output")(x)
    return keras.Model(inputs, x, name="decoder")


def tiny_task_models(task: str, image_size: int, input_channels: int = 3,
                     num_classes: int | None = None, batch_norm: bool = True,
                     width: int = 1, latent_channels: int = 8,
                     decoder_variant: str = "paper") -> TaskModels:
    """Tiny encoder + decoder / discriminator / head for ``task``.

    ``batch_norm=False`` gives networks whose result does not depend on how the
    batch is split over replicas (for strategy-equivalence tests). ``width``
    multiplies every layer's channels (the quickstart's "compact" network is 4).
    ``decoder_variant="unet"`` gives segmentation / target a skip-connected decoder fed
    by the four stages (:mod:`tl_keras.models.unet`, always with BN); any other value the
    plain decoder.
    """
    encoder = tiny_encoder(image_size, input_channels, latent_channels, batch_norm, width)
    inputs = keras.Input((image_size, image_size, input_channels), name="image")
    latent = encoder(inputs)
    if task == "classification":
        h = keras.Input(encoder.output_shape[1:], name="latent")
        logits = keras.layers.Dense(num_classes, dtype="float32", name="logits")(
            keras.layers.Flatten()(h))
        head = keras.Model(h, logits, name="head")
        return TaskModels(keras.Model(inputs, head(latent)), encoder, head=head)
    if task == "simsiam":
        # SimSiam's widths (2048 / 512 on ResNet-50) narrowed with the network.
        head = build_simsiam_head(encoder.output_shape[1:], 256 * width, 64 * width)
        return TaskModels(keras.Model(inputs, head(latent)), encoder, head=head)
    if task in RECONSTRUCTING and decoder_variant == "unet":
        raise ValueError(UNET_REFUSED.format(task=task))
    if task == "reconstruction":
        decoder = tiny_decoder(encoder.output_shape[1:], input_channels, "tanh", width)
        return TaskModels(keras.Model(inputs, decoder(latent)), encoder, decoder=decoder)
    if task == "autoencoding":
        decoder = tiny_decoder(encoder.output_shape[1:], input_channels, "tanh", width)
        d_in = keras.Input((image_size, image_size, 2 * input_channels))
        d = _conv(d_in, 8, 2, name="d0", batch_norm=batch_norm)
        d_out = Conv2D(1, 3, padding="same", dtype="float32", name="d_logits")(d)
        disc = keras.Model(d_in, d_out, name="discriminator")
        return TaskModels(keras.Model(inputs, decoder(latent)), encoder, decoder=decoder,
                          discriminator=disc)
    if decoder_variant == "unet":
        model, decoder = unet_model(encoder, num_classes, widths=(4 * width, 16 * width))
        return TaskModels(model, encoder, decoder=decoder)
    decoder = tiny_decoder(encoder.output_shape[1:], num_classes, width=width)
    return TaskModels(keras.Model(inputs, decoder(latent)), encoder, decoder=decoder)
