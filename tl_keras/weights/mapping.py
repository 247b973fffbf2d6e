"""Name map between Keras variables and TF-slim checkpoint tensors, and the assignment.

A Keras layer ``encoder__conv1`` holds ``kernel``; the checkpoint holds
``encoder/conv1/weights``. :func:`weight_map` turns every variable of a model into its
checkpoint name; :func:`assign` copies a ``{name: array}`` source into those variables with
full checking, all-or-nothing in strict mode.
"""
from __future__ import annotations

import numpy as np

from tl_keras.models.naming import scope_of
from tl_keras.weights.load_report import LoadReport

#: Keras variable name -> slim variable name (others, e.g. BN ``gamma``, are identical).
_LEAF = {"kernel": "weights", "bias": "biases"}
#: The only kernel that may be adapted from RGB to one channel.
CONV1 = "encoder/conv1/weights"


def _layers(model):
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:  # nested model
            yield from _layers(layer)
        else:
            yield layer


def weight_map(model) -> dict:
    """Return ``{checkpoint name: keras variable}`` for every weight of ``model``."""
    out = {}
    for layer in _layers(model):
        scope = scope_of(layer.name)
        for var in layer.weights:
            out[f"{scope}/{_LEAF.get(var.name, var.name)}"] = var
    return out


def first_conv(model) -> str:
    """The checkpoint name of the kernel of ``model``'s first convolution (the one the
    images enter; :data:`CONV1` for the Taskonomy encoder), or "" when there is none."""
    for layer in _layers(model):
        kernel = getattr(layer, "kernel", None)
        if kernel is not None and len(kernel.shape) == 4:
            return f"{scope_of(layer.name)}/{_LEAF['kernel']}"
    return ""


#: The one rule for grey scans into RGB encoders (docs/sources.md), as the report notes it.
GREY_RULE = "RGB kernel summed over channels for a 1-channel input"


def _adapt(name: str, value: np.ndarray, shape: tuple, report: LoadReport,
           rgb_kernels=(CONV1,)) -> np.ndarray:
    """Sum RGB first-conv kernels over the input channels for a one-channel encoder.

    For a grey image g, conv(g repeated 3 times, W) == conv(g, sum_c W[..., c, :]), so a
    one-channel model reproduces the RGB model on grey inputs exactly. This is the one
    rule of every source (Taskonomy, ImageNet, keras-hub, our encoders).
    """
    if (name in rgb_kernels and value.ndim == 4 and len(shape) == 4 and value.shape[2] == 3
            and shape[2] == 1 and value.shape[:2] + value.shape[3:] == shape[:2] + shape[3:]):
        report.notes.append(f"{name}: {GREY_RULE}")
        report.adapted.append((name, tuple(value.shape), tuple(shape)))
        return value.sum(axis=2, keepdims=True)
    return value


def assign(sources: dict, targets: dict, report: LoadReport, *, strict: bool,
           random_ok=(), rgb_kernels=(CONV1,)) -> LoadReport:
    """Copy ``sources`` arrays into ``targets`` variables by name.

    Args:
      sources: checkpoint name -> array (already filtered: skipped tensors removed).
      targets: checkpoint name -> keras variable, from :func:`weight_map`.
      report: filled in place (matched, missing, unexpected, mismatched, left_random).
      strict: raise :class:`WeightLoadError` before assigning anything if a target is
        missing, a source unused, or a shape differs.
      random_ok: name prefixes that the source cannot provide by design; such targets go to
        ``report.left_random`` instead of ``report.missing``.
      rgb_kernels: names of the first-conv kernels that may be summed from RGB to one
        input channel (the grey rule, :func:`_adapt`).

    Returns:
      ``report``.
    """
    pending = []
    for name, var in targets.items():
        if name not in sources:
            (report.left_random if name.startswith(tuple(random_ok)) and random_ok
             else report.missing).append(name)
            continue
        value = _adapt(name, np.asarray(sources[name]), tuple(var.shape), report, rgb_kernels)
        if tuple(value.shape) != tuple(var.shape):
            report.mismatched.append((name, tuple(value.shape), tuple(var.shape)))
            continue
        pending.append((name, var, value))
    report.unexpected.extend(n for n in sources if n not in targets)
    if strict:
        report.raise_if_failed()
    for name, var, value in pending:
        var.assign(value.astype(var.dtype))
        report.matched.append((name, var.path))
    return report
