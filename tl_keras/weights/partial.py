"""A fine-tuned model as a source: ``--init_from RUN_DIR`` (a fine-tuning run, or its
``export/`` folder) with another number of classes or input channels.

The encoder is loaded whole, by name, as from an encoder directory: the first convolution
adapted from 3 input channels to 1 by the one rule of :mod:`tl_keras.weights.mapping`
(RGB kernels summed); any other difference (1 -> 3 channels, another latent size or
architecture) fails with one line, because a partly loaded encoder is not the source
any more. With ``decoder`` (``--init_decoder``) the layers outside the encoder are copied
where name and shape match; the others (the output layer of another class count, layers
the source lacks) keep their fresh initialisation and are listed as re-initialised
(:meth:`tl_keras.weights.load_report.LoadReport.table`).
"""
from __future__ import annotations

import os

from tl_keras.models.export import (EXPORT_DIR, META_FILE, RecordError, load_exported,
                                    read_exported_meta)
from tl_keras.weights.load_report import LoadReport, WeightLoadError
from tl_keras.weights.mapping import assign, first_conv, weight_map

DECODER_NOT_REQUESTED = "outside the encoder (--init_decoder loads the matching layers)"


def export_run_dir(path: str) -> str | None:
    """The run directory of ``path`` (a fine-tuning run or its ``export/``), else None."""
    path = path.rstrip("/") or path
    if os.path.isfile(os.path.join(path, EXPORT_DIR, META_FILE)):
        return path
    if os.path.basename(path) == EXPORT_DIR and os.path.isfile(os.path.join(path, META_FILE)):
        return os.path.dirname(path) or "."
    return None


def is_export_dir(path: str) -> bool:
    """True if ``path`` is a fine-tuning run with an export, or that export."""
    return export_run_dir(path) is not None


def read_export_meta(path: str):
    """The :class:`~tl_keras.models.export.ExportMeta` of the export at ``path``.

    Raises:
      WeightLoadError: no export there, or a damaged ``model.json`` (one line).
    """
    run_dir = export_run_dir(path)
    if run_dir is None:
        raise WeightLoadError(f"--init_from {path}: no {EXPORT_DIR}/{META_FILE} there")
    try:
        return read_exported_meta(run_dir)
    except (OSError, RecordError) as e:
        raise WeightLoadError(f"--init_from {path}: {e}") from None


def _source_encoder(model):
    """The nested encoder of an exported model (``encoder``, or the skip decoder's
    ``encoder_stages`` sharing its layers), or None."""
    for name in ("encoder", "encoder_stages"):
        try:
            return model.get_layer(name)
        except ValueError:
            continue
    return None


def rgb_kernels(encoder) -> tuple[str, ...]:
    """The first-convolution kernels of ``encoder`` the grey rule applies to: a keras-hub
    backbone's stem convolutions, else the first convolution the images enter (``conv1``
    of the Taskonomy encoder, ``enc0`` of the small presets)."""
    from tl_keras.weights.hub import first_conv_kernels  # keras-hub's modules load Keras
    return tuple(dict.fromkeys(n for n in (*first_conv_kernels(encoder), first_conv(encoder))
                               if n))


def strict_encoder_load(sources: dict, encoder, report: LoadReport) -> LoadReport:
    """Copy ``sources`` into every weight of ``encoder`` (strict, all or nothing), the first
    convolution adapted from RGB to one channel; a mismatch is one line, with the channel
    rule spelled out when it is the first convolution's input channels."""
    kernels = rgb_kernels(encoder)
    try:
        return assign(sources, weight_map(encoder), report, strict=True, rgb_kernels=kernels)
    except WeightLoadError:
        for name, src, tgt in report.mismatched:
            if name in kernels and len(src) == len(tgt) == 4 and src[2] != tgt[2]:
                raise WeightLoadError(
                    f"{report.source}: the encoder's first convolution ({name}) takes "
                    f"{src[2]} input channel(s), this run {tgt[2]}; only 3 -> 1 is adapted "
                    f"(RGB kernels summed): pass --input_channels {src[2]}") from None
        raise


def load_export_into(path: str, encoder, model=None) -> LoadReport:
    """Initialise ``encoder`` (and, given ``model``, its other layers) from an export.

    Args:
      path: a fine-tuning run directory or its ``export/``.
      encoder: the encoder being initialised (``TaskModels.encoder``).
      model: the whole network (``TaskModels.model``) to take the matching decoder layers
        into, or None: encoder only.

    Returns:
      The :class:`LoadReport`; print :meth:`LoadReport.table`.

    Raises:
      WeightLoadError: unreadable export, or an encoder that does not fit (one line).
    """
    run_dir = export_run_dir(path)
    read_export_meta(path)
    try:
        exported, _ = load_exported(run_dir)
    except (OSError, ValueError, TypeError) as e:
        message = (str(e).splitlines() or [type(e).__name__])[0]
        raise WeightLoadError(f"--init_from {path}: cannot load the exported model: "
                              f"{message}") from None
    report = LoadReport(source=os.path.join(run_dir, EXPORT_DIR))
    sources = {n: v.numpy() for n, v in weight_map(exported).items()}
    enc_targets = weight_map(encoder)
    source_encoder = _source_encoder(exported)
    enc_names = (set(weight_map(source_encoder)) if source_encoder is not None
                 else set(sources) & set(enc_targets))
    strict_encoder_load({n: sources[n] for n in sources if n in enc_names}, encoder, report)
    rest = {n: v for n, v in sources.items() if n not in enc_names}
    if model is None:
        report.skipped.update({n: DECODER_NOT_REQUESTED for n in rest})
        return report
    targets = {n: v for n, v in weight_map(model).items() if n not in enc_targets}
    for name, var in targets.items():
        if name not in rest:
            report.reinitialised.append((name, "not in the source"))
        elif tuple(rest[name].shape) != tuple(var.shape):
            report.reinitialised.append(
                (name, f"source {tuple(rest[name].shape)} vs model {tuple(var.shape)}"))
        else:
            var.assign(rest[name].astype(var.dtype))
            report.matched.append((name, var.path))
    report.skipped.update({n: "not in this model" for n in rest if n not in targets})
    return report
