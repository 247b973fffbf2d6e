"""keras-hub preset weights into our encoders (``--init_from keras_hub:PRESET``).

The preset's backbone is loaded as saved (RGB) and copied by name into the encoder's
backbone (:func:`tl_keras.weights.mapping.assign`, strict by default); a one-channel
encoder gets the preset's first-conv kernels summed over RGB (the one grey rule,
docs/sources.md). The input mapping is part of the encoder (built from the same preset),
so the encoder reproduces the backbone on mapped inputs exactly.
"""
from __future__ import annotations

import numpy as np

from tl_keras.models.hub import MAPPING_LAYER, input_mapping, load_backbone, stem_convolutions
from tl_keras.models.hub_preset import PREFIX, resolve
from tl_keras.models.naming import scope_of
from tl_keras.models.unet import hub_backbone
from tl_keras.weights.load_report import LoadReport, WeightLoadError
from tl_keras.weights.mapping import CONV1, assign, first_conv, weight_map


def first_conv_kernels(encoder) -> tuple[str, ...]:
    """Weight names of ``encoder``'s first convolutions (the grey rule applies to them):
    a keras-hub backbone's stem convolutions, else the encoder's first convolution."""
    backbone = hub_backbone(encoder)
    if backbone is None:
        return (first_conv(encoder) or CONV1,)
    return tuple(f"{scope_of(n)}/weights" for n in stem_convolutions(backbone))


def load_keras_hub(preset: str, encoder, *, strict: bool = True) -> LoadReport:
    """Copy the weights of keras-hub preset ``preset`` into ``encoder`` (in place).

    Args:
      preset: a preset name or a local preset directory (without ``keras_hub:``).
      encoder: a keras-hub encoder of the same architecture
        (:func:`tl_keras.models.hub.build_hub_encoder`), 1 or 3 input channels.
      strict: raise before assigning anything if a weight is missing, unused or
        mis-shaped.

    Returns:
      The :class:`LoadReport` (notes: the input mapping, the grey rule when applied).

    Raises:
      WeightLoadError: the encoder is not a keras-hub encoder, or a strict-mode problem.
    """
    resolved = resolve("--init_from", preset)
    if hub_backbone(encoder) is None:
        raise WeightLoadError(f"--init_from {PREFIX}{preset}: the network is not a keras-hub "
                              f"backbone; use --network {PREFIX}{preset} (or --network auto)")
    source = load_backbone(resolved)
    report = LoadReport(source=f"{PREFIX}{preset}")
    sources = {n: v.numpy() for n, v in weight_map(source).items()}
    assign(sources, weight_map(encoder), report, strict=strict,
           rgb_kernels=first_conv_kernels(encoder))
    layer = encoder.get_layer(MAPPING_LAYER)
    a, b = float(layer.scale), float(layer.offset)
    report.notes.append(f"input mapping x -> {a:.6g} x + {b:.6g} for images x in [-1, 1]")
    if not np.allclose((a, b), input_mapping(resolved)):
        report.notes.append("the preset's image converter maps inputs otherwise: %.6g x + "
                            "%.6g (the encoder was built from another preset)"
                            % input_mapping(resolved))
    return report
