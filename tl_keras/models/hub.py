"""keras-hub image backbones as encoders (``--network`` / ``--init_from keras_hub:PRESET``).

The encoder is ``image (N, H, W, C) in [-1, 1] -> input mapping -> backbone -> deepest
feature map`` (the latent), a functional model holding the keras-hub backbone as a nested
model. The backbone is rebuilt from the preset's ``config.json`` with our input shape
(``C`` = 1 or 3), so one-channel encoders have a one-channel first convolution.

Input mapping (docs/sources.md, "keras-hub backbones"): keras-hub presets ship an image
converter that takes pixels in [0, 255] to ``pixels * scale + offset`` (per RGB channel
for ImageNet). Our inputs are grey scans in [-1, 1] (a 3-channel input is the grey slice
repeated or its 2.5-D neighbours, never colour), so ONE affine map is used for every
channel: ``pixels = 127.5 (x + 1)`` then the channel means of ``scale`` and ``offset``.
A preset without an image converter (a backbone saved alone, or a ``--network`` random
initialisation) gets the [-1, 1] input unchanged. A single map for all channels keeps the
grey rule exact: RGB first-conv kernels summed over the input channels make the
one-channel encoder equal the RGB one on the grey slice repeated
(:mod:`tl_keras.weights.mapping`).

Decoders: ``unet`` takes its skips from the backbone's ``pyramid_outputs`` (every level
finer than the latent); ``paper`` / ``taskonomy`` upsample the latent 16x, so a /32
backbone gets one more transposed convolution in front (:mod:`tl_keras.models.decoder`).

keras-hub is optional (``pip install -e .[hub]``) and imported on first use.
"""
from __future__ import annotations

import json
import os

import keras
import numpy as np

from tfrecords_tools.dataset_meta import DatasetMeta
from tl_keras.models.factory import TaskModels, build_task_models
from tl_keras.models.hub_preset import (CONFIG_FILE, IMAGE_CONVERTER_FILE, PREFIX,
                                        HubPreset, HubPresetError, check, read_json,
                                        require_keras_hub)
from tl_keras.models.unet import hub_backbone

#: Layer names inside the encoder.
MAPPING_LAYER = "input_mapping"
BACKBONE_LAYER = "backbone"
#: Config keys keras-hub backbones use for their input shape.
SHAPE_KEYS = ("image_shape", "input_shape")
#: encoder.json ``architecture`` of a keras-hub encoder (:mod:`tl_keras.weights.encoder_io`).
ARCHITECTURE = "keras_hub"


def _keras_hub(flag: str, preset: str):
    require_keras_hub(f"{flag} {PREFIX}{preset}")
    import keras_hub
    return keras_hub


def input_mapping(preset: HubPreset) -> tuple[float, float]:
    """``(a, b)`` of the input map ``x -> a x + b`` for images ``x`` in [-1, 1].

    From the preset's ``image_converter.json``: ``a = 127.5 s``, ``b = 127.5 s + o`` with
    ``s`` and ``o`` the channel means of its ``scale`` and ``offset`` (None: 1 and 0); no
    converter: ``(1, 0)``.
    """
    path = preset.path and os.path.join(preset.path, IMAGE_CONVERTER_FILE)
    if not path or not os.path.isfile(path):
        return 1.0, 0.0
    config = read_json(path).get("config", {})
    scale = config.get("scale")
    offset = config.get("offset")
    s = 1.0 if scale is None else float(np.mean(scale))
    o = 0.0 if offset is None else float(np.mean(offset))
    return 127.5 * s, 127.5 * s + o


def backbone_from_config(config: dict, image_size: int, input_channels: int):
    """A randomly initialised keras-hub backbone from its serialized ``config.json`` with
    input ``(image_size, image_size, input_channels)``, computing in the global dtype
    policy (so mixed precision applies)."""
    _keras_hub("--network", config.get("class_name", "?"))
    cls = keras.saving.get_registered_object(config["registered_name"])
    if cls is None:
        raise HubPresetError(f"{config['registered_name']}: unknown keras-hub backbone class "
                             "in this keras-hub version")
    kwargs = dict(config["config"])
    keys = [k for k in SHAPE_KEYS if k in kwargs]
    if not keys:
        raise HubPresetError(f"{config['class_name']}: its config has no image shape "
                             f"({' / '.join(SHAPE_KEYS)}); not an image backbone")
    kwargs[keys[0]] = [image_size, image_size, input_channels]
    kwargs.pop("dtype", None)
    kwargs["name"] = BACKBONE_LAYER
    return cls.from_config(kwargs)


def build_hub_encoder(config: dict, image_size: int, input_channels: int,
                      mapping: tuple[float, float] = (1.0, 0.0),
                      name: str = "encoder") -> keras.Model:
    """The encoder: images in [-1, 1] -> input mapping -> backbone -> deepest feature map.

    Args:
      config: the backbone's serialized config (a preset's ``config.json``).
      image_size: square input side in px.
      input_channels: 1 or 3.
      mapping: ``(a, b)`` of :func:`input_mapping`.
      name: model name.

    Raises:
      HubPresetError: not an image backbone, or a size its stride does not divide.
    """
    if input_channels not in (1, 3):
        raise ValueError(f"encoder input_channels must be 1 or 3, got {input_channels}")
    backbone = backbone_from_config(config, image_size, input_channels)
    inputs = keras.Input((image_size, image_size, input_channels), name="image")
    x = keras.layers.Rescaling(mapping[0], mapping[1], name=MAPPING_LAYER)(inputs)
    latent = backbone(x)
    if len(latent.shape) != 4 or not latent.shape[1] or image_size % latent.shape[1]:
        raise HubPresetError(f"{config['class_name']}: output {tuple(latent.shape[1:])} is "
                             f"not a feature map dividing {image_size} px")
    return keras.Model(inputs, latent, name=name)


def stem_convolutions(backbone) -> list[str]:
    """Layer names of the convolutions that read the image: those whose input reaches
    the backbone input through weightless layers only (padding, ...)."""
    def reads_image(tensor) -> bool:
        history = getattr(tensor, "_keras_history", None)
        if history is None:
            return False
        op = history.operation
        if isinstance(op, keras.layers.InputLayer):
            return True
        if op.weights:
            return False
        node = op._inbound_nodes[history.node_index]
        return all(reads_image(t) for t in node.input_tensors)

    names = []
    for layer in backbone.layers:
        if isinstance(layer, keras.layers.Conv2D) and reads_image(layer.input):
            names.append(layer.name)
    return names


def build_hub_models(preset: str, network_kind: str, image_size: int, input_channels: int,
                     num_outputs: int | None, *, decoder_variant: str = "unet",
                     discriminator_variant: str = "taskonomy", flag: str = "--network",
                     **_unused) -> TaskModels:
    """``keras_hub:PRESET``'s architecture (random initialisation) with our task parts.

    Args:
      preset: a keras-hub preset name or a local preset directory (without the prefix).
      network_kind: ``segmentation`` / ``target`` / ``autoencoding`` / ``classification``.
      image_size: square input side in px (a multiple of the backbone's stride).
      input_channels: 1 or 3.
      num_outputs: classes (None for auto-encoding).
      decoder_variant: ``unet`` (skips from ``pyramid_outputs``), ``paper`` or ``taskonomy``.
      discriminator_variant: auto-encoding only.
      flag: the flag named in errors.
      _unused: other builder options (``latent_channels``: the backbone fixes its own).

    Returns:
      A :class:`TaskModels`; its encoder keeps the preset's input mapping.
    """
    resolved = check(flag, preset, decoder_variant=decoder_variant)
    encoder = build_hub_encoder(preset_config(resolved), image_size, input_channels,
                                input_mapping(resolved))
    return build_task_models(network_kind, encoder, num_classes=num_outputs,
                             decoder_variant=decoder_variant,
                             discriminator_variant=discriminator_variant)


def hub_models_hook(preset: str):
    """A ``build_models`` hook of ``run_pretrain`` / ``run_finetune`` (``(config, meta, *,
    network, num_outputs) -> TaskModels``) building ``keras_hub:PRESET``."""
    def build(config, meta: DatasetMeta, *, network: str, num_outputs) -> TaskModels:
        return build_hub_models(preset, network, meta.image_size[0],
                                config.input_channels, num_outputs,
                                decoder_variant=config.decoder_variant,
                                discriminator_variant=getattr(config, "discriminator_variant",
                                                              "taskonomy"))
    return build


def preset_config(preset: HubPreset) -> dict:
    """The backbone's ``config.json`` (downloaded for a name not in the cache)."""
    if preset.path is not None:
        return read_json(os.path.join(preset.path, CONFIG_FILE))
    from keras_hub.src.utils.preset_utils import get_file
    with open(get_file(preset.name, CONFIG_FILE)) as f:
        return json.load(f)


def load_backbone(preset: HubPreset):
    """The preset's backbone with its weights (RGB, as saved)."""
    keras_hub = _keras_hub("--init_from", preset.name)
    try:
        return keras_hub.models.Backbone.from_preset(preset.handle)
    except (ValueError, OSError) as e:
        raise HubPresetError(f"--init_from {PREFIX}{preset.name}: keras-hub cannot load it: "
                             f"{str(e).splitlines()[0]}") from e


def hub_encoder_config(encoder: keras.Model) -> dict | None:
    """What rebuilds a keras-hub encoder (stored in encoder.json), None for others."""
    backbone = hub_backbone(encoder)
    if backbone is None:
        return None
    mapping = encoder.get_layer(MAPPING_LAYER)
    return {"architecture": ARCHITECTURE,
            "backbone_config": keras.saving.serialize_keras_object(backbone),
            "input_mapping": [float(mapping.scale), float(mapping.offset)]}


def rebuild_hub_encoder(meta, name: str = "encoder") -> keras.Model:
    """The encoder :func:`hub_encoder_config` described (random initialisation), from
    its ``encoder.json`` record (:class:`tl_keras.weights.encoder_meta.EncoderMeta`)."""
    return build_hub_encoder(meta.backbone_config, meta.image_size[0], meta.input_channels,
                             meta.input_mapping, name=name)
