"""Compose one encoder with the task-specific parts (source tasks and the target task)."""
from __future__ import annotations

import dataclasses

import keras

from tl_keras.models.decoder import build_decoder
from tl_keras.models.discriminator import build_discriminator
from tl_keras.models.head import build_classification_head
from tl_keras.models.simsiam import build_simsiam_head
from tl_keras.models.unet import unet_model

TASKS = ("segmentation", "autoencoding", "classification", "target", "reconstruction",
         "simsiam")
#: Network kinds that reconstruct their input (a tanh decoder with the input's channels).
RECONSTRUCTING = ("autoencoding", "reconstruction")
#: Why a skip decoder is refused for the tasks that reconstruct their input.
UNET_REFUSED = ("--decoder_variant=unet is for segmentation tasks; --task={task} keeps its own "
                "decoder (a skip-connected auto-encoder learns the identity through the skips, "
                "and a restoration or masked-image model fills its gaps from the skips' "
                "full-resolution detail, so its encoder would learn little)")


@dataclasses.dataclass(frozen=True)
class TaskModels:
    """The networks of one task.

    Attributes:
      model: images (N, H, W, C) in [-1, 1] -> segmentation logits (N, H, W, K),
        reconstructions (N, H, W, C) in [-1, 1], or class logits (N, K).
      encoder: the shared encoder (a sub-model of ``model``).
      decoder: pixel-wise decoder, or None for classification.
      discriminator: auto-encoding only: (N, H, W, 2C) ``input ++ candidate`` -> patch logits.
      head: classification (class logits) and simsiam (projector and predictor; ``model``
        then maps images to ``[z, p]``, :mod:`tl_keras.models.simsiam`) only.
    """

    model: keras.Model
    encoder: keras.Model
    decoder: keras.Model | None = None
    discriminator: keras.Model | None = None
    head: keras.Model | None = None


def build_task_models(task: str, encoder: keras.Model, *, num_classes: int | None,
                      decoder_variant: str = "taskonomy",
                      discriminator_variant: str = "taskonomy",
                      output_activation: str | None = None) -> TaskModels:
    """Build the models of ``task`` around ``encoder``.

    Args:
      task: ``segmentation`` / ``target`` (encoder + decoder with ``num_classes`` logits),
        ``autoencoding`` (encoder + tanh decoder with C outputs + discriminator on 2C
        channels; ``num_classes`` is ignored), ``reconstruction`` (the same without
        discriminator: restoration, masked modelling), ``classification`` (encoder +
        head) or ``simsiam`` (encoder + projector and predictor; ``num_classes`` ignored).
      encoder: from :func:`tl_keras.models.build_encoder` or
        :func:`tl_keras.models.hub.build_hub_encoder` (defines image size and C; a /32
        latent gets one more upsampling step in the paper / Taskonomy decoders).
      num_classes: K output classes (segmentation, target, classification).
      decoder_variant: ``taskonomy``, ``paper`` or ``unet`` (skip-connected, fed by the
        encoder's stages; segmentation and target only, see docs/decoders.md).
      discriminator_variant: ``taskonomy`` or ``paper``.
      output_activation: segmentation decoder output, None (logits) or ``tanh``.

    Returns:
      A :class:`TaskModels`.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    image_shape = tuple(encoder.input_shape[1:])
    latent_shape = tuple(encoder.output_shape[1:])
    channels = image_shape[-1]
    if task not in RECONSTRUCTING + ("simsiam",) and (num_classes is None or num_classes < 1):
        raise ValueError(f"task {task!r} needs num_classes >= 1, got {num_classes}")
    inputs = keras.Input(image_shape, name="image")
    latent = encoder(inputs)
    if task == "classification":
        head = build_classification_head(latent_shape, num_classes)
        return TaskModels(keras.Model(inputs, head(latent), name=task), encoder, head=head)
    if task == "simsiam":
        head = build_simsiam_head(latent_shape)
        return TaskModels(keras.Model(inputs, head(latent), name=task), encoder, head=head)
    if decoder_variant == "unet" and task in RECONSTRUCTING:
        raise ValueError(UNET_REFUSED.format(task=task))
    if decoder_variant == "unet":
        model, decoder = unet_model(encoder, num_classes, output_activation=output_activation,
                                    name=task)
        return TaskModels(model, encoder, decoder=decoder)
    upsampling = image_shape[0] // latent_shape[0]
    if task in RECONSTRUCTING:
        decoder = build_decoder(latent_shape, channels, decoder_variant, "tanh",
                                upsampling=upsampling)
        model = keras.Model(inputs, decoder(latent), name=task)
        if task == "reconstruction":
            return TaskModels(model, encoder, decoder=decoder)
        discriminator = build_discriminator(image_shape[:2], 2 * channels, discriminator_variant)
        return TaskModels(model, encoder, decoder=decoder, discriminator=discriminator)
    decoder = build_decoder(latent_shape, num_classes, decoder_variant, output_activation,
                            upsampling=upsampling)
    return TaskModels(keras.Model(inputs, decoder(latent), name=task), encoder, decoder=decoder)
