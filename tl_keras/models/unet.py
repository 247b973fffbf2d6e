"""Skip-connected (U-Net style) decoder for any encoder (``--decoder_variant unet``).

The paper's and Taskonomy's decoders see only the /16 latent (e.g. 4 x 4 x 8 at 64 px),
from which lesions of a few voxels cannot be placed (docs/decoders.md). This decoder is
also fed the encoder's stage outputs: for the Taskonomy ResNet-50 ``conv1`` (/2) and the
outputs of blocks 1-3 (/8, /16, /16) plus the latent; for the compact / tiny networks
each stride-2 stage; for a keras-hub backbone (:mod:`tl_keras.models.hub`) its
``pyramid_outputs`` finer than the latent. From the coarsest level up, each level
concatenates the upsampled path with that level's skips and applies a 3x3 conv + BN +
LeakyReLU; levels without a skip get the conv too. Upsampling is a 3x3/2 transposed conv + BN + LeakyReLU, as in the
paper decoder.

The encoder itself is unchanged (one output, the latent), so its weights are exported
alone (``encoder_best/``) and loaded by ``--init_from`` exactly as with the paper decoder;
:func:`encoder_stages` only exposes its intermediate tensors.
"""
from __future__ import annotations

import keras

from tl_keras.models.layers import conv_bn, layer_name

#: Stage outputs of the Taskonomy encoder used as skips (conv1, blocks 1-3).
TASKONOMY_SKIPS = ("encoder/conv1/relu",
                   "encoder/block1/unit_3/bottleneck_v1/relu",
                   "encoder/block2/unit_4/bottleneck_v1/relu",
                   "encoder/block3/unit_6/bottleneck_v1/relu")
#: Width of the decoder at level L (input size / L) is min(cap, base * L).
TASKONOMY_WIDTHS = (16, 256)


def skip_layer_names(encoder: keras.Model) -> list[str]:
    """Names of the layers of ``encoder`` whose outputs feed the skip decoder.

    Raises:
      ValueError: for an encoder whose stages are not known.
    """
    names = {layer.name for layer in encoder.layers}
    taskonomy = [layer_name(s) for s in TASKONOMY_SKIPS]
    if all(n in names for n in taskonomy):
        return taskonomy
    stages = sorted((n for n in names if n.startswith("enc") and n.endswith("_act")),
                    key=lambda n: int(n[3:-4]))
    if stages:  # the compact / tiny networks: enc0_act, enc1_act, ...
        return stages
    raise ValueError(f"encoder '{encoder.name}': no known stage outputs for the unet decoder "
                     f"(expected Taskonomy ResNet-50 or compact / tiny layers)")


def hub_backbone(encoder: keras.Model):
    """The keras-hub backbone nested in ``encoder``, or None for our own encoders."""
    for layer in encoder.layers:
        if (keras.saving.get_registered_name(type(layer)) or "").startswith("keras_hub>"):
            return layer
    return None


def pyramid_stages(encoder: keras.Model, backbone) -> keras.Model:
    """image -> [pyramid levels finer than the latent, finest first, ..., latent] of a
    keras-hub ``backbone`` nested in ``encoder`` (layers shared).

    Raises:
      ValueError: the backbone has no ``pyramid_outputs``.
    """
    levels = dict(getattr(backbone, "pyramid_outputs", None) or {})
    if not levels:
        raise ValueError(f"--decoder_variant=unet needs a backbone with pyramid_outputs; "
                         f"{type(backbone).__name__} has none (use --decoder_variant paper "
                         "or taskonomy)")
    latent_side = backbone.output.shape[1]
    finer = sorted((t for t in levels.values() if t.shape[1] > latent_side),
                   key=lambda t: -t.shape[1])
    features = keras.Model(backbone.inputs, finer + list(backbone.outputs), name="pyramid")
    # The backbone is called once in the encoder: its node's input is the mapped image.
    outputs = features(backbone._inbound_nodes[0].input_tensors[0])
    return keras.Model(encoder.inputs, outputs, name="encoder_stages")


def encoder_stages(encoder: keras.Model, skip_names=None) -> keras.Model:
    """A model sharing ``encoder``'s layers: image -> [skip_1, ..., skip_n, latent]."""
    backbone = hub_backbone(encoder) if skip_names is None else None
    if backbone is not None:
        return pyramid_stages(encoder, backbone)
    skip_names = skip_names or skip_layer_names(encoder)
    outputs = [encoder.get_layer(n).output for n in skip_names] + list(encoder.outputs)
    return keras.Model(encoder.inputs, outputs, name="encoder_stages")


def build_unet_decoder(feature_shapes, image_size: int, out_channels: int,
                       widths: tuple[int, int] = TASKONOMY_WIDTHS,
                       output_activation: str | None = None,
                       name: str = "decoder") -> keras.Model:
    """Decoder from ``[skip_1, ..., skip_n, latent]`` to full-resolution maps.

    Args:
      feature_shapes: ``(h, w, c)`` of each input, skips first, the latent last (any
        order of resolutions; each side must divide ``image_size`` by a power of 2).
      image_size: output side length.
      out_channels: K output channels (logits).
      widths: ``(base, cap)``: the conv width at level L (``image_size / L``) is
        ``min(cap, base * L)``.
      output_activation: None (logits) or ``tanh``.
      name: model name.

    Returns:
      ``keras.Model`` taking the list of features, giving (N, image_size, image_size, K).
    """
    if out_channels < 1:
        raise ValueError(f"decoder out_channels must be >= 1, got {out_channels}")
    inputs = [keras.Input(tuple(s), name=f"feature{i}") for i, s in enumerate(feature_shapes)]
    by_level = {}
    for tensor, shape in zip(inputs, feature_shapes):
        level = image_size // int(shape[0])
        if level < 1 or image_size % int(shape[0]) or level & (level - 1):
            raise ValueError(f"unet decoder: feature of {shape[0]} px does not divide "
                             f"{image_size} px by a power of 2")
        by_level.setdefault(level, []).append(tensor)
    base, cap = widths
    level = max(by_level)
    x = None
    while level >= 1:
        tag = f"decoder/level{level}"
        if x is not None:
            x = conv_bn(x, f"{tag}/up", min(cap, base * level), 3, stride=2,
                        activation="leaky_relu", transpose=True)
        parts = ([x] if x is not None else []) + by_level.get(level, [])
        if len(parts) > 1:
            x = keras.layers.Concatenate(name=layer_name(f"{tag}/concat"))(parts)
        else:
            x = parts[0]
        x = conv_bn(x, f"{tag}/conv", min(cap, base * level), 3, activation="leaky_relu")
        level //= 2
    x = keras.layers.Conv2D(out_channels, 3, padding="same", use_bias=True, dtype="float32",
                            name=layer_name("decoder/decoder_output"))(x)
    if output_activation == "tanh":
        x = keras.layers.Activation("tanh", name=layer_name("decoder/tanh"))(x)
    return keras.Model(inputs, x, name=name)


def unet_model(encoder: keras.Model, out_channels: int, widths=TASKONOMY_WIDTHS,
               output_activation: str | None = None, name: str = "target"):
    """(model, decoder): ``encoder`` with a skip decoder; the encoder's layers are shared."""
    stages = encoder_stages(encoder)
    image_shape = tuple(encoder.input_shape[1:])
    decoder = build_unet_decoder([tuple(t.shape[1:]) for t in stages.outputs], image_shape[0],
                                 out_channels, widths, output_activation)
    inputs = keras.Input(image_shape, name="image")
    model = keras.Model(inputs, decoder(stages(inputs)), name=name)
    return model, decoder

