"""``init_encoder``: initialise an encoder from a spec string (what ``--init_from`` takes)."""
from __future__ import annotations

import os

from tl_keras.weights.checkpoint import is_checkpoint
from tl_keras.weights.encoder_io import encoder_dir, is_encoder_dir, load_encoder
from tl_keras.weights.imagenet import load_keras_resnet50, load_slim_resnet50
from tl_keras.weights.mapping import assign, weight_map
from tl_keras.weights.report import LoadReport, WeightLoadError
from tl_keras.weights.taskonomy import load_taskonomy

SPEC_HELP = ("scratch | PATH (tl_keras encoder dir) | taskonomy:CKPT | "
             "imagenet:CKPT (TF-slim resnet_v1_50) | imagenet:FILE.h5 (Keras ResNet50)")


def load_encoder_dir_into(encoder, path: str, *, strict: bool = True) -> LoadReport:
    """Copy a saved encoder into ``encoder`` by name.

    The target may have another image size (convs are size-independent) and may take one
    channel where the saved one takes RGB (conv1 summed over channels).
    """
    source = load_encoder(path, name="saved_encoder")
    report = LoadReport(source=encoder_dir(path))
    sources = {n: v.numpy() for n, v in weight_map(source).items()}
    return assign(sources, weight_map(encoder), report, strict=strict)


def init_encoder(encoder, spec: str, strict: bool = True) -> LoadReport:
    """Initialise ``encoder`` in place according to ``spec``.

    Args:
      encoder: from :func:`tl_keras.models.build_encoder`.
      spec: ``scratch`` (keep the random initialisation); ``PATH`` of a tl_keras encoder
        directory (``encoder.json`` + ``encoder.weights.h5``); ``taskonomy:CKPT`` (a
        task-bank ``model.permanent-ckpt``); ``imagenet:CKPT`` (TF-slim ``resnet_v1_50``)
        or ``imagenet:FILE.h5`` (Keras Applications ResNet50 weights).
      strict: raise on missing / unexpected / mis-shaped tensors.

    Returns:
      The :class:`LoadReport` (log ``report.summary()``).

    Raises:
      WeightLoadError: unknown spec, unreadable source, or a strict-mode problem.
    """
    kind, sep, path = spec.partition(":")
    if not sep:
        kind, path = ("scratch", "") if spec == "scratch" else ("dir", spec)
    if kind not in ("scratch", "taskonomy", "imagenet", "dir"):
        raise WeightLoadError(f"--init_from {spec}: unknown kind '{kind}'; expected {SPEC_HELP}")
    if kind != "scratch" and not os.path.exists(path) and not is_checkpoint(path):
        raise WeightLoadError(f"--init_from {spec}: {path or '(empty path)'} does not exist")
    if kind == "scratch":
        report = LoadReport(source="scratch")
        report.notes.append("random initialisation (no pre-trained weights)")
        return report
    if kind == "taskonomy":
        return load_taskonomy(path, {"encoder": encoder}, strict=strict)
    if kind == "imagenet":
        if is_checkpoint(path):
            return load_slim_resnet50(path, encoder, strict=strict)
        return load_keras_resnet50(path, encoder, strict=strict)
    if is_encoder_dir(path):
        return load_encoder_dir_into(encoder, path, strict=strict)
    if is_checkpoint(path):
        raise WeightLoadError(f"--init_from {spec}: a TF checkpoint; say taskonomy:{path} "
                              f"or imagenet:{path}")
    raise WeightLoadError(f"--init_from {spec}: no encoder.json there; expected {SPEC_HELP}")
