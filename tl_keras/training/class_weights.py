"""Class weights for the weighted cross-entropy (docs/method.md section 6).

The paper cites a method it does not name; four are offered. All are computed
from the per-slice class histograms stored in the shards (``tissue/counts`` for
source segmentation, ``mask/counts`` for targets), over the selected subjects
of the training split only.

A run caches its weights in ``class_weights.json``, the :class:`ClassWeights` record
(read back on resume instead of counting the data set again).
"""
from __future__ import annotations

import dataclasses
import os
from typing import Callable

import numpy as np
import tensorflow as tf

from tfrecords_tools.dataset_meta import DatasetMeta
from tfrecords_tools import schema
from tl_keras.data.dataset import list_shards, verify_shards
from tfrecords_tools.errors import DataSetError
from tl_common.records import from_fields, integer, read_json_object, real, text

METHODS = ("median_frequency", "inverse", "enet", "foreground", "none")
#: ``foreground`` weights: background 1, every other class this (docs/decoders.md).
FOREGROUND_WEIGHT = 5.0
COUNT_KEYS = {"tissue": schema.TISSUE_COUNTS, "mask": schema.MASK_COUNTS}
CLASS_WEIGHTS_FILE = "class_weights.json"


def _num_classes(meta: DatasetMeta, labels: str) -> int:
    return meta.num_tissue_classes if labels == "tissue" else meta.num_mask_classes


def read_slice_counts(data_dir: str, split: str, labels: str, meta: DatasetMeta,
                      subjects=None) -> np.ndarray:
    """Per-slice class histograms of one split, shape (slices, classes).

    Only the subject id and the count feature are parsed (no image decoding),
    so this is cheap even for large splits.

    Args:
      data_dir: converted data set.
      split: split name.
      labels: ``tissue`` or ``mask``.
      meta: the dataset.json record.
      subjects: keep only these subject ids (None = all).
    """
    key = COUNT_KEYS[labels]
    n = _num_classes(meta, labels)
    spec = {schema.SUBJECT_ID: tf.io.FixedLenFeature([], tf.string),
            key: tf.io.FixedLenFeature([n], tf.int64)}
    files = list_shards(data_dir, split)
    verify_shards(files, meta)  # a damaged shard is named, not a DataLossError
    ds = tf.data.TFRecordDataset(files).map(
        lambda s: tf.io.parse_single_example(s, spec))
    keep = None if subjects is None else {str(s) for s in subjects}
    rows = [ex[key].numpy() for ex in ds
            if keep is None or ex[schema.SUBJECT_ID].numpy().decode() in keep]
    return np.asarray(rows, np.int64).reshape(-1, n)


def compute_class_weights(slice_counts, method: str = "median_frequency",
                          foreground_weight: float = FOREGROUND_WEIGHT) -> np.ndarray:
    """Class weights from per-slice class histograms.

    Args:
      slice_counts: (slices, K) pixel counts per class (a single (K,) histogram is
        treated as one slice).
      method:
        - ``median_frequency`` (SegNet, Eigen & Fergus): ``freq_c`` = pixels of c /
          pixels of the slices in which c occurs; ``w_c = median(freq) / freq_c``.
        - ``inverse``: ``w_c = N / (K * n_c)`` (the weighted mean weight per pixel is 1).
        - ``enet``: ``w_c = 1 / ln(1.02 + p_c)`` with ``p_c = n_c / N`` (ENet).
        - ``foreground``: background 1, every other class ``foreground_weight``
          (a fixed, moderate up-weighting of a rare lesion class).
        - ``none``: all ones.
      foreground_weight: see ``foreground``.
      Classes that never occur get weight 0 (they have no pixels to weigh), except
      with ``enet``, whose formula is finite at p = 0.

    Returns:
      (K,) float32 weights.
    """
    counts = np.atleast_2d(np.asarray(slice_counts, np.float64))
    k = counts.shape[1]
    if method not in METHODS:
        raise ValueError(f"class_weights must be one of {METHODS}, got {method!r}")
    if method == "none":
        return np.ones(k, np.float32)
    if method == "foreground":
        return np.array([1.0] + [foreground_weight] * (k - 1), np.float32)
    n_c = counts.sum(axis=0)
    total = n_c.sum()
    if total <= 0:
        raise DataSetError("class weights: the selected slices contain no labelled pixels")
    present = n_c > 0
    if method == "enet":
        return (1.0 / np.log(1.02 + n_c / total)).astype(np.float32)
    weights = np.zeros(k)
    if method == "inverse":
        weights[present] = total / (k * n_c[present])
    else:
        slice_pixels = counts.sum(axis=1)
        pixels_where_present = np.array([slice_pixels[counts[:, c] > 0].sum() for c in range(k)])
        freq = np.zeros(k)
        freq[present] = n_c[present] / pixels_where_present[present]
        weights[present] = np.median(freq[present]) / freq[present]
    return weights.astype(np.float32)


def ignored_class(meta: DatasetMeta, labels: str) -> int | None:
    """The class whose pixels the loss leaves out (dataset.json ``ignore_class``), or None.

    ``tfrecords_tools.convert_images --ignore_label`` stores such pixels (e.g.
    Taskonomy's unlabelled ones) as the last source-segmentation class.
    """
    return meta.ignore_class if labels == "tissue" else None


def class_weights_for(data_dir: str, split: str, labels: str, meta: DatasetMeta, method: str,
                      subjects=None, foreground_weight: float = FOREGROUND_WEIGHT) -> np.ndarray:
    """Read the histograms of ``subjects`` in ``split`` and compute weights by ``method``.

    The ignored class (``ignored_class``) gets weight 0 whatever the method,
    and its pixels do not enter the frequencies the other weights come from.
    """
    ignore = ignored_class(meta, labels)
    if method == "none":
        weights = np.ones(_num_classes(meta, labels), np.float32)
    else:
        counts = read_slice_counts(data_dir, split, labels, meta, subjects)
        if counts.shape[0] == 0:
            raise DataSetError(f"{data_dir}: no slices of the selected subjects in split '{split}'")
        if ignore is not None:
            counts[:, ignore] = 0
        weights = compute_class_weights(counts, method, foreground_weight)
    if ignore is not None:
        weights[ignore] = 0.0
    return weights


def _method(value) -> str:
    if text(value) not in METHODS:
        raise ValueError(f"expected one of {list(METHODS)}")
    return value


def _weights(value) -> tuple[float, ...]:
    if not isinstance(value, (list, tuple)):
        raise TypeError("expected a list of numbers")
    weights = tuple(real(w) for w in value)
    if any(w < 0 for w in weights):
        raise ValueError("expected weights >= 0")
    return weights


def _slices(value) -> int:
    if integer(value) < 0:
        raise ValueError("expected a count >= 0")
    return int(value)


@dataclasses.dataclass(frozen=True)
class ClassWeights:
    """What ``class_weights.json`` records (docs/training.md, "What a run directory
    holds").

    Attributes:
      method: the ``--class_weights`` method (one of :data:`METHODS`).
      weights: one weight per class (the ignored class 0).
      slices: the training slices counted (of the selected subjects); they set the
        schedule.
    """

    method: str
    weights: tuple[float, ...]
    slices: int

    @classmethod
    def of(cls, weights, method: str, num_slices: int) -> "ClassWeights":
        """The record of ``weights`` (any sequence of numbers, e.g. a numpy array)."""
        return cls(method, tuple(float(w) for w in weights), int(num_slices))

    def to_dict(self) -> dict:
        """The JSON object of ``class_weights.json``."""
        return {"method": self.method, "weights": list(self.weights), "slices": self.slices}

    @classmethod
    def from_dict(cls, data: dict, where: str = CLASS_WEIGHTS_FILE) -> "ClassWeights":
        """Check and convert ``data``.

        Raises:
          RecordError: naming ``where`` and the missing, unknown or bad key.
        """
        return from_fields(cls, data, where,
                           {"method": _method, "weights": _weights, "slices": _slices})


def cached_class_weights(path: str, compute: Callable[[], ClassWeights]) -> ClassWeights:
    """The record cached at ``path``, else ``compute()`` (not written here:
    :func:`tl_keras.training.runs.record_start` does; keeps resumed runs from re-reading
    the data set).

    Raises:
      RecordError: the cached file is damaged or foreign (one line naming it and the key).
    """
    if os.path.exists(path):
        return ClassWeights.from_dict(read_json_object(path), path)
    return compute()
