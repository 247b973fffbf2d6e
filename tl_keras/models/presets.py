"""Model presets: the networks a run trains, by name, with one ``TaskModels`` interface.

- ``taskonomy``: the Taskonomy ResNet-50 encoder and decoders (~40 M parameters,
  :mod:`tl_keras.models.factory`); the default of pretrain / finetune.
- ``compact``: the small networks below, 4x wider, with ``latent_channels`` from the
  config (the quickstart's default: small enough for a CPU, large enough to learn).
- ``tiny``: the few-thousand-parameter networks below (latent 8). Tracing a Taskonomy
  training step takes tens of seconds on a 2-core CPU; these (same inputs, outputs,
  BN and LeakyReLU conventions, /16 latent) let the loop, resume, distribution and
  sweep machinery be tested in seconds.

:func:`build_models` builds a preset for one network kind (``TASKS`` of
:mod:`tl_keras.models.factory`); :func:`build_taskonomy_models`,
:func:`build_compact_models` and :func:`build_tiny_models` are the ``build_models``
hooks of ``run_pretrain`` / ``run_finetune``: ``(config, meta, *, network,
num_outputs) -> TaskModels`` (docs/training.md, "Python API").
"""
from __future__ import annotations

import keras

from tl_keras.models import TaskModels
from tl_keras.models.batchnorm import BatchNormalization
from tl_keras.models.encoder import build_encoder
from tl_keras.models.factory import RECONSTRUCTING, UNET_REFUSED, build_task_models
from tl_keras.models.simsiam import build_simsiam_head
from tl_keras.models.unet import unet_model


def _conv(x, filters, stride=1, name=None, batch_norm=True):
    x = keras.layers.Conv2D(filters, 3, stride, padding="same", use_bias=not batch_norm,
                            name=name)(x)
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
    x = keras.layers.Conv2D(latent_channels, 1, activation="relu", name="compress1")(x)
    return keras.Model(inputs, x, name="encoder")


def tiny_decoder(latent_shape, out_channels: int, activation=None, width: int = 1):
    """Four stride-2 transposed convs and an output conv (float32 logits)."""
    inputs = keras.Input(tuple(latent_shape), name="latent")
    x = inputs
    for i, f in enumerate((16 * width, 16 * width, 8 * width, 8 * width)):
        x = keras.layers.Conv2DTranspose(f, 3, 2, padding="same", use_bias=False,
                                         name=f"dec{i}")(x)
        x = keras.layers.LeakyReLU(0.2, name=f"dec{i}_act")(x)
    x = keras.layers.Conv2D(out_channels, 3, padding="same", activation=activation,
                            dtype="float32", name="decoder_output")(x)
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
        d_out = keras.layers.Conv2D(1, 3, padding="same", dtype="float32", name="d_logits")(d)
        disc = keras.Model(d_in, d_out, name="discriminator")
        return TaskModels(keras.Model(inputs, decoder(latent)), encoder, decoder=decoder,
                          discriminator=disc)
    if decoder_variant == "unet":
        model, decoder = unet_model(encoder, num_classes, widths=(4 * width, 16 * width))
        return TaskModels(model, encoder, decoder=decoder)
    decoder = tiny_decoder(encoder.output_shape[1:], num_classes, width=width)
    return TaskModels(keras.Model(inputs, decoder(latent)), encoder, decoder=decoder)


PRESETS = ("taskonomy", "compact", "tiny")


def build_models(preset: str, network: str, image_size: int, input_channels: int,
                 num_outputs: int | None, *, latent_channels: int = 8,
                 decoder_variant: str = "taskonomy", discriminator_variant: str = "taskonomy",
                 batch_norm: bool = True) -> TaskModels:
    """The networks of ``preset`` for one network kind.

    Args:
      preset: one of ``PRESETS``.
      network: ``segmentation`` / ``target`` (pixel-wise logits), ``autoencoding``
        (tanh decoder + discriminator), ``reconstruction`` (tanh decoder), ``simsiam``
        (projector and predictor) or ``classification`` (head).
      image_size: square input size in px (a multiple of 16).
      input_channels: model input channels (1 or 3).
      num_outputs: classes (None for auto-encoding: as many as the input channels).
      latent_channels: ``compress1`` channels (``tiny`` keeps 8).
      decoder_variant: see :func:`tl_keras.models.build_task_models`; the small presets
        know ``unet`` and a plain decoder for any other value.
      discriminator_variant: ``taskonomy`` only.
      batch_norm: ``tiny`` only: False gives networks whose result does not depend on
        how the batch is split over replicas (strategy-equivalence tests).

    Returns:
      A :class:`TaskModels`.
    """
    if preset == "taskonomy":
        encoder = build_encoder(image_size=image_size, input_channels=input_channels,
                                latent_channels=latent_channels)
        return build_task_models(network, encoder, num_classes=num_outputs,
                                 decoder_variant=decoder_variant,
                                 discriminator_variant=discriminator_variant)
    if preset == "compact":
        return tiny_task_models(network, image_size, input_channels, num_outputs, width=4,
                                latent_channels=latent_channels,
                                decoder_variant=decoder_variant)
    if preset == "tiny":
        return tiny_task_models(network, image_size, input_channels, num_outputs, batch_norm,
                                decoder_variant=decoder_variant)
    raise ValueError(f"preset must be one of {PRESETS}, got {preset!r}")


def _hook(preset: str, config, meta: dict, network: str, num_outputs, **options) -> TaskModels:
    """:func:`build_models` with the sizes of ``meta`` and the options of ``config``."""
    return build_models(preset, network, int(meta["image_size"][0]), config.input_channels,
                        num_outputs, latent_channels=config.latent_channels,
                        decoder_variant=config.decoder_variant,
                        discriminator_variant=getattr(getattr(config, "task_options", None),
                                                      "discriminator_variant", "taskonomy"),
                        **options)


def build_taskonomy_models(config, meta: dict, *, network: str,
                           num_outputs: int | None) -> TaskModels:
    """``build_models`` hook: the Taskonomy networks (the default of every run)."""
    return _hook("taskonomy", config, meta, network, num_outputs)


def build_tiny_models(config, meta: dict, batch_norm: bool = True, *, network: str,
                      num_outputs: int | None) -> TaskModels:
    """``build_models`` hook: the tiny networks (same outputs as the Taskonomy ones)."""
    return _hook("tiny", config, meta, network, num_outputs, batch_norm=batch_norm)


def build_compact_models(config, meta: dict, *, network: str,
                         num_outputs: int | None) -> TaskModels:
    """``build_models`` hook: the compact networks (the quickstart's default)."""
    return _hook("compact", config, meta, network, num_outputs)
