"""Segment new scans and write the result in each scan's own (native) space.

The model's training pre-processing is rebuilt from the export metadata
(``ExportMeta.dataset_meta.preprocessing``, the ``PreprocessConfig`` the data
set was converted with); each scan goes through ``prepare_scan`` (registration,
resampling, normalisation, slicing, padding), every kept slice is predicted and
``write_native`` maps the labels (nearest) or probabilities (linear) back onto
the input's grid with its affine and header.
"""
from __future__ import annotations

import dataclasses
import functools
import os

import numpy as np

from tfrecords_tools.errors import InputError, itk_reason
from tfrecords_tools.scans.config import PreprocessConfig
from tl_common import paths
from tl_common.cli import MissingFileError, UserError
from tl_common.progress import Progress
from tl_keras.models.export import ExportMeta, load_exported, read_exported_meta
from tl_keras.models.inference import predict_batches
from tfrecords_tools.manifests.manifest import ManifestError

NIFTI_SUFFIXES = (".nii.gz", ".nii")


class UnreproducibleError(UserError, ValueError):
    """The model's pre-processing cannot be rebuilt for a new scan."""


def preprocess_config_for(meta: ExportMeta, model_dir: str):
    """The ``PreprocessConfig`` a model was trained with, or a clear refusal.

    Refuses models whose data set records no pre-processing, synthetic test
    data sets, unknown or invalid parameters, and models whose input size is
    not the pre-processed slice size.

    Raises:
      UnreproducibleError: one line naming the model directory and the reason.
    """
    where = f"{model_dir}: cannot reproduce the model's pre-processing"
    data_meta = meta.dataset_meta  # the data set's own dataset.json record
    params = data_meta.preprocessing if data_meta is not None else None
    if not params:
        raise UnreproducibleError(f"{where}: its dataset_meta records no 'preprocessing' "
                                  f"parameters (was it trained on a converted data set?)")
    if not isinstance(params, dict) or "kind" in params:
        kind = params.get("kind") if isinstance(params, dict) else params
        raise UnreproducibleError(f"{where}: the data set was built by '{kind}', "
                                  f"not by tfrecords_tools.convert")
    try:
        config = PreprocessConfig.from_dict(params)
    except (TypeError, ValueError) as e:
        raise UnreproducibleError(f"{where}: {' '.join(str(e).split())}") from None
    size = list(meta.image_size)
    if size != [config.slice_size, config.slice_size]:
        raise UnreproducibleError(f"{where}: the model takes {size} slices but the "
                                  f"pre-processing makes {config.slice_size} x "
                                  f"{config.slice_size}")
    channels = data_meta.channels
    if channels != 1:
        raise UnreproducibleError(f"{where}: the data set has {channels} image channels; "
                                  f"pre-processing produces grey scans")
    return config


class OutputError(UserError, ValueError):
    """An output path that would replace an input or another output."""


@dataclasses.dataclass(frozen=True)
class PredictJob:
    """One scan to segment."""

    image: str
    output: str
    probabilities: str | None = None


def _stem(path: str) -> str:
    name = os.path.basename(path)
    for suffix in NIFTI_SUFFIXES:
        if name.endswith(suffix):
            return name[:-len(suffix)]
    return os.path.splitext(name)[0]


def jobs_from_dir(input_dir: str, output_dir: str, probabilities: bool) -> list[PredictJob]:
    """Every NIfTI file of ``input_dir`` -> ``<output_dir>/<stem>_seg.nii.gz``."""
    if not os.path.isdir(input_dir):
        raise MissingFileError(f"{input_dir}: no such input directory")
    files = sorted(f for f in os.listdir(input_dir) if f.endswith(NIFTI_SUFFIXES))
    if not files:
        raise MissingFileError(f"{input_dir}: no .nii / .nii.gz files")
    paths.refuse_overlap("--output_dir", output_dir, [("--input_dir", input_dir)], OutputError)
    return [_job(os.path.join(input_dir, f), _stem(f), output_dir, probabilities)
            for f in files]


def jobs_from_manifest(manifest: str, output_dir: str, probabilities: bool) -> list[PredictJob]:
    """A CSV with ``subject_id`` and ``image`` columns (relative paths: to the CSV)."""
    import pandas as pd
    if not os.path.exists(manifest):
        raise MissingFileError(f"{manifest}: no such manifest")
    frame = pd.read_csv(manifest, dtype=str)
    frame.columns = [c.strip().lower() for c in frame.columns]
    missing = {"subject_id", "image"} - set(frame.columns)
    if missing:
        raise ManifestError(f"{manifest}: missing column(s) {sorted(missing)}; "
                         f"expected subject_id,image")
    base = os.path.dirname(os.path.abspath(manifest))
    if frame["subject_id"].duplicated().any():
        dup = frame.loc[frame["subject_id"].duplicated(), "subject_id"].iloc[0]
        raise ManifestError(f"{manifest}: subject_id '{dup}' occurs twice")
    jobs = [_job(os.path.join(base, r["image"]), r["subject_id"], output_dir, probabilities)
            for r in frame.to_dict("records")]
    paths.refuse_overlap("--output_dir", output_dir, [("--manifest", manifest)] + [
        (f"the scan of {os.path.basename(j.output)[:-len('_seg.nii.gz')]}:", j.image)
        for j in jobs], OutputError)
    return jobs


def _job(image, name, output_dir, probabilities):
    return PredictJob(image, os.path.join(output_dir, f"{name}_seg.nii.gz"),
                      os.path.join(output_dir, f"{name}_prob.nii.gz") if probabilities else None)


def check_jobs(jobs: list[PredictJob]) -> None:
    """Refuse outputs that would replace an input scan or another job's output.

    Raises:
      OutputError: one line naming both paths (e.g. ``x.nii`` and ``x.nii.gz`` of one
        folder would both write ``x_seg.nii.gz``).
    """
    def key(path):
        return os.path.realpath(os.path.abspath(path))
    inputs = {key(j.image): j.image for j in jobs}
    owner: dict[str, str] = {}
    for job in jobs:
        for path in (job.output, job.probabilities):
            if not path:
                continue
            if key(path) in inputs:
                raise OutputError(f"{path}: the output would replace the input scan "
                                  f"{inputs[key(path)]}; choose another output path")
            if key(path) in owner:
                raise OutputError(f"{path}: both {owner[key(path)]} and {job.image} would be "
                                  "written there; rename one of the scans (or use --manifest "
                                  "with distinct subject ids)")
            owner[key(path)] = job.image


def predict_slices(model, slices: np.ndarray, input_channels: int, batch_size: int = 8,
                   slice_context: bool = False):
    """(N, S, S) slices in [0, 1] -> (N, S, S, K) class probabilities (K >= 2).

    ``slice_context``: the model takes [previous, slice, next] (the slices are the
    scan's consecutive axial slab; an edge slice repeats itself, as in conversion).
    """
    import tensorflow as tf
    if slice_context:
        z = np.arange(len(slices))
        images = np.stack([slices[np.maximum(z - 1, 0)], slices,
                           slices[np.minimum(z + 1, len(slices) - 1)]], axis=-1)
    else:
        images = slices[..., None]
    batches = (tf.constant(images[start:start + batch_size], tf.float32)
               for start in range(0, len(slices), batch_size))
    out = [probs for _, probs in predict_batches(model, batches, input_channels,
                                                 image_key=None, probabilities=True)]
    return np.concatenate(out) if out else np.zeros((0,) + slices.shape[1:] + (2,), np.float32)


def _prepare(image: str, config):
    """``prepare_scan``, with SimpleITK's failures (raw C++ text) turned into an
    :class:`InputError` that says what is wrong with the scan (implausible scans, e.g.
    constant ones, are refused by ``prepare_scan``'s own checks)."""
    from tfrecords_tools.scans.preprocess import prepare_scan
    try:
        return prepare_scan(image, config)
    except RuntimeError as e:  # keep ITK's own sentence, not its source path and address
        raise InputError(_stem(image), image,
                         "pre-processing failed: " + itk_reason(e)) from None


def predict_scans(model_dir: str, jobs: list[PredictJob], *, batch_size: int = 8,
                  overwrite: bool = False, verbose: bool = True,
                  predict_fn=None) -> list[str]:
    """Segment every job's scan; finished outputs are skipped unless ``overwrite``.

    Args:
      model_dir: fine-tuning run directory with ``export/``.
      jobs: scans and output paths.
      batch_size: slices per forward pass.
      overwrite: redo finished scans.
      verbose: show progress (``tl_common.progress``).
      predict_fn: optional ``(slices (N, S, S) in [0, 1]) -> (N, S, S, K)``
        probabilities replacing the exported model's forward pass (ensembles,
        test-time augmentation, tests); the model's pre-processing still applies.

    Returns:
      The label output paths written (or found finished).

    Raises:
      OutputError: an output would replace an input or another output.
      UnreproducibleError: the model's pre-processing cannot be rebuilt.
      tfrecords_tools.errors.InputError: a scan cannot be used (names it).
    """
    from tfrecords_tools.scans.preprocess import write_native
    check_jobs(jobs)
    meta = read_exported_meta(model_dir)
    config = preprocess_config_for(meta, model_dir)
    missing = [j.image for j in jobs if not os.path.isfile(j.image)]
    if missing:  # before the model is loaded
        raise MissingFileError(f"{missing[0]}: no such scan" + (
            f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    if predict_fn is None:
        model, meta = load_exported(model_dir)
        predict_fn = functools.partial(predict_slices, model,
                                       input_channels=meta.input_channels,
                                       batch_size=batch_size,
                                       slice_context=meta.slice_context)
    done = []
    progress = Progress(len(jobs), "predict", "scan", enabled=verbose)
    for job in jobs:
        finished = os.path.exists(job.output) and (
            job.probabilities is None or os.path.exists(job.probabilities))
        if finished and not overwrite:
            done.append(job.output)
            progress.update(1)
            continue
        for path in (job.output, job.probabilities):
            if path:
                os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        prepared = _prepare(job.image, config)
        probs = predict_fn(prepared.slices)
        write_native(probs.argmax(-1).astype(np.uint8), prepared, job.output, kind="label")
        if job.probabilities:
            write_native(probs, prepared, job.probabilities, kind="prob")
        done.append(job.output)
        progress.update(1, lambda: job.output)
    progress.close()
    return done
