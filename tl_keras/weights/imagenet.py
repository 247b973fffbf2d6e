"""ImageNet ResNet-50 weights for the Taskonomy encoder.

Two sources:

* **TF-slim ``resnet_v1_50`` checkpoints** (``resnet_v1_50.ckpt`` of tf-models'
  slim zoo): the same unit naming as Taskonomy under root ``resnet_v1_50/``, so the
  transfer is exact (``resnet_v1_50/conv1`` -> ``encoder/conv1``, the ``logits`` layer is
  skipped). slim's ImageNet network also strides block 3; the Taskonomy encoder does not
  (it keeps 1/16 resolution), exactly as Taskonomy itself was derived from it.
* **Keras Applications ``ResNet50``** weights files (``resnet50_weights_tf_dim_ordering_
  tf_kernels[_notop].h5`` or a ``.weights.h5`` saved from ``keras.applications.ResNet50``).
  Mapped layer by layer (stage ``conv{s}`` -> ``block{s-1}``, ``_0`` shortcut, ``_1.._3``
  conv1..conv3). Keras convs carry a bias before BN and use BN epsilon 1.001e-5; both are
  folded exactly into our BN statistics (``mean -= bias``, ``var += 1.001e-5 - 1e-5``).
  Keras strides the FIRST 1x1 conv of a stage while slim strides the 3x3 conv of the last
  unit, and Keras pads the max-pool symmetrically: the weights transfer, the network
  function is not the original Keras one.

In both cases ``compress1`` is not in the source and keeps its random initialisation.
"""
from __future__ import annotations

import re

import numpy as np

from tl_keras.models.naming import BN_EPSILON
from tl_keras.weights.checkpoint import read_shapes
from tl_keras.weights.mapping import assign, weight_map
from tl_keras.weights.load_report import LoadReport, WeightLoadError
from tl_keras.weights.taskonomy import load_checkpoint_into

SLIM_ROOT = "resnet_v1_50/"
SLIM_RENAMES = ((SLIM_ROOT, "encoder/"),)
RANDOM_OK = ("compress1/",)
_KERAS_UNIT = re.compile(r"^conv(\d)_block(\d+)_(\d)_(conv|bn)$")
_KERAS_BRANCH = {"0": "shortcut", "1": "conv1", "2": "conv2", "3": "conv3"}
#: BatchNormalization epsilon of keras.applications.ResNet50.
KERAS_BN_EPSILON = 1.001e-5


def load_slim_resnet50(path: str, encoder, *, strict: bool = True) -> LoadReport:
    """Load a TF-slim ``resnet_v1_50`` ImageNet checkpoint into ``encoder`` (exact).

    Raises:
      WeightLoadError: not a resnet_v1_50 checkpoint, or a problem in strict mode.
    """
    prefix, shapes = read_shapes(path)
    if not is_slim(shapes):
        raise WeightLoadError(f"{prefix}: not a TF-slim resnet_v1_50 checkpoint (no "
                              f"'{SLIM_ROOT}' tensors); for Taskonomy files use "
                              "taskonomy:PATH (--taskonomy)")

    report = load_checkpoint_into(prefix, {"encoder": encoder}, strict=strict,
                                  renames=SLIM_RENAMES, skip=slim_skip, random_ok=RANDOM_OK)
    report.notes.append("slim ImageNet weights expect VGG-style inputs; the encoder is "
                        "fine-tuned on [-1, 1] images")
    return report


def is_slim(shapes: dict) -> bool:
    """True if the checkpoint tensors are a TF-slim ``resnet_v1_50``."""
    return any(n.startswith(SLIM_ROOT) for n in shapes)


def slim_skip(name: str) -> str | None:
    """Skip reason for slim tensors that are not part of the encoder."""
    if name.startswith(SLIM_ROOT + "logits/"):
        return "ImageNet classifier (not part of the encoder)"
    return None


def keras_layer_scope(name: str) -> str | None:
    """Our checkpoint scope for a keras.applications.ResNet50 conv/BN layer, else None."""
    if name in ("conv1_conv", "conv1_bn"):
        return "encoder/conv1" + ("/BatchNorm" if name.endswith("bn") else "")
    m = _KERAS_UNIT.match(name)
    if not m:
        return None
    stage, unit, branch, kind = m.groups()
    scope = (f"encoder/block{int(stage) - 1}/unit_{unit}/bottleneck_v1/"
             f"{_KERAS_BRANCH[branch]}")
    return scope + ("/BatchNorm" if kind == "bn" else "")


def _keras_resnet50(path: str):
    """Build keras.applications.ResNet50 offline and load ``path`` (with or without top)."""
    import keras
    errors = []
    for include_top in (False, True):
        model = keras.applications.ResNet50(weights=None, include_top=include_top,
                                            input_shape=(64, 64, 3))
        try:
            model.load_weights(path)
            return model
        except Exception as e:  # wrong topology: try the other one
            errors.append(str(e).splitlines()[0] if str(e) else type(e).__name__)
    raise WeightLoadError(f"{path}: not a keras.applications ResNet50 weights file "
                          f"({'; '.join(errors)})")


def keras_resnet50_sources(path: str) -> tuple[dict, dict]:
    """Read a Keras ResNet50 weights file as ``({our name: array}, {keras name: skip reason})``."""
    model = _keras_resnet50(path)
    layers = {layer.name: layer for layer in model.layers}
    sources, skipped = {}, {}
    for name, layer in layers.items():
        if not layer.weights:
            continue
        scope = keras_layer_scope(name)
        if scope is None:
            for var in layer.weights:
                skipped[f"{name}/{var.name}"] = "ImageNet classifier (not part of the encoder)"
        elif name.endswith("_conv"):
            sources[f"{scope}/weights"] = layer.kernel.numpy()
            skipped[f"{name}/bias"] = "folded into the following BatchNorm's moving_mean"
        else:
            conv = layers[name[: -len("bn")] + "conv"]
            bias = conv.bias.numpy() if conv.use_bias else 0.0
            sources[f"{scope}/gamma"] = layer.gamma.numpy()
            sources[f"{scope}/beta"] = layer.beta.numpy()
            sources[f"{scope}/moving_mean"] = layer.moving_mean.numpy() - bias
            variance = layer.moving_variance.numpy() + (layer.epsilon - BN_EPSILON)
            sources[f"{scope}/moving_variance"] = variance.astype(np.float32)
    return sources, skipped


def load_keras_resnet50(path: str, encoder, *, strict: bool = True) -> LoadReport:
    """Load a Keras Applications ResNet50 weights file into ``encoder``.

    Transfers every conv/BN weight (conv biases folded into BN); the function differs from
    Keras' ResNet50 in where the strides sit (see the module docstring).
    """
    sources, skipped = keras_resnet50_sources(path)
    report = LoadReport(source=path, skipped=skipped)
    report.notes.append("Keras ResNet50 strides the first 1x1 conv of a stage, slim/Taskonomy "
                        "the 3x3 of a block's last unit: weights transfer, the function differs")
    return assign(sources, weight_map(encoder), report, strict=strict, random_ok=RANDOM_OK)
