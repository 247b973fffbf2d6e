"""The TFRecord slice schema, shared by every writer and reader.

One ``tf.train.Example`` per 2D slice. Feature keys are constants here; nothing
else in the project spells them out. Images are stored as 16-bit PNG after
quantising [0, 1] to ``quant_max`` levels (max error 0.5 / quant_max), labels as
8-bit PNG (lossless). A data set converted with ``--context_slices`` also stores each
slice's two axial neighbours (``CONTEXT``) for 2.5-D input; others read as before.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from tfrecords_tools.dataset_meta import (DATASET_JSON, DEFAULT_QUANT_MAX,  # noqa: F401
                                          SCHEMA_VERSION, DatasetMeta, read_dataset_meta)

# zlib level of the image PNG: 3 encodes ~7x faster than 9 for ~5 % more bytes.
IMAGE_PNG_COMPRESSION = 3

SUBJECT_ID = "subject_id"
SLICE_INDEX = "slice_index"
HEIGHT = "height"
WIDTH = "width"
CHANNELS = "channels"
VOXEL_SIZE = "voxel_size"
IMAGE = "image/png16"
IMAGE_QUANT_MAX = "image/quant_max"
MASK = "mask/png8"            # target mask (binary lesion or anatomy classes)
MASK_COUNTS = "mask/counts"   # voxels per mask class, length num_mask_classes
TISSUE = "tissue/png8"        # source segmentation labels (tissue / semantic)
TISSUE_COUNTS = "tissue/counts"
PRESENCE = "presence"         # multi-label presence vector (classification)
# The two axial neighbours of the slice (previous, next) as a 2-channel 16-bit PNG,
# present when dataset.json's CONTEXT_SLICES is 1 (2.5-D input, docs/conversion.md).
CONTEXT = "context/png16"
CONTEXT_SLICES = "context_slices"  # dataset.json key: neighbours stored on each side (0 or 1)

SUBJECTS_CSV = "subjects.csv"


def shard_name(split: str, index: int, num_shards: int) -> str:
    """File name of one shard: ``{split}-{i:05d}-of-{n:05d}.tfrecord``."""
    return f"{split}-{index:05d}-of-{num_shards:05d}.tfrecord"


def quantise(image: np.ndarray, quant_max: int = DEFAULT_QUANT_MAX) -> np.ndarray:
    """Map an image in [0, 1] to uint16 levels 0..quant_max."""
    if not 0 < quant_max <= 65535:
        raise ValueError(f"quant_max must be in 1..65535, got {quant_max}")
    return np.rint(np.clip(image, 0.0, 1.0) * quant_max).astype(np.uint16)


def _png(array: np.ndarray, compression: int = 6) -> bytes:
    import tensorflow as tf
    if array.ndim == 2:
        array = array[..., None]
    return tf.io.encode_png(array, compression=compression).numpy()


def _bytes(v):
    import tensorflow as tf
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))


def _ints(v):
    import tensorflow as tf
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(x) for x in v]))


def _floats(v):
    import tensorflow as tf
    return tf.train.Feature(float_list=tf.train.FloatList(value=[float(x) for x in v]))


def make_example(*, subject_id: str, slice_index: int, image: np.ndarray,
                 voxel_size=(1.0, 1.0, 1.0), mask: np.ndarray | None = None,
                 num_mask_classes: int = 2, tissue: np.ndarray | None = None,
                 num_tissue_classes: int = 1, presence=(),
                 quant_max: int = DEFAULT_QUANT_MAX,
                 context: np.ndarray | None = None) -> bytes:
    """Serialise one slice.

    Args:
      subject_id: subject the slice comes from.
      slice_index: axial index of the slice in the pre-processed volume.
      image: (H, W) or (H, W, C) float array in [0, 1].
      voxel_size: voxel size in mm (x, y, z) of the pre-processed volume.
      mask: (H, W) integer target mask, values < num_mask_classes; zeros if None.
      num_mask_classes: number of mask classes including background.
      tissue: (H, W) integer source-segmentation labels; zeros if None.
      num_tissue_classes: number of tissue classes including background.
      presence: multi-label presence vector (may be empty).
      quant_max: quantisation levels of the image.
      context: optional (H, W, 2) float array in [0, 1], the previous and the next
        axial slice of a grey image (stored under ``CONTEXT``).

    Returns:
      The serialised ``tf.train.Example``.
    """
    import tensorflow as tf
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 2:
        image = image[..., None]
    h, w, c = image.shape
    zeros = np.zeros((h, w), np.uint8)
    labels = {}
    for name, arr, n in (("mask", mask, num_mask_classes),
                         ("tissue", tissue, num_tissue_classes)):
        arr = zeros if arr is None else np.asarray(arr)
        if arr.shape != (h, w):
            raise ValueError(f"{name} shape {arr.shape} does not match image {(h, w)}")
        if arr.size and (arr.min() < 0 or arr.max() >= max(n, 1) or arr.max() > 255):
            raise ValueError(f"{name} values must be in 0..{n - 1}, got {arr.min()}..{arr.max()}")
        labels[name] = (arr.astype(np.uint8), np.bincount(arr.ravel().astype(np.int64),
                                                          minlength=n)[:n])
    feature = {
        SUBJECT_ID: _bytes(subject_id.encode()),
        SLICE_INDEX: _ints([slice_index]),
        HEIGHT: _ints([h]), WIDTH: _ints([w]), CHANNELS: _ints([c]),
        VOXEL_SIZE: _floats(voxel_size),
        IMAGE: _bytes(_png(quantise(image, quant_max), IMAGE_PNG_COMPRESSION)),
        IMAGE_QUANT_MAX: _ints([quant_max]),
        MASK: _bytes(_png(labels["mask"][0])),
        MASK_COUNTS: _ints(labels["mask"][1]),
        TISSUE: _bytes(_png(labels["tissue"][0])),
        TISSUE_COUNTS: _ints(labels["tissue"][1]),
        PRESENCE: _floats(presence),
    }
    if context is not None:
        context = np.asarray(context, dtype=np.float32)
        if context.shape != (h, w, 2) or c != 1:
            raise ValueError(f"context shape {context.shape} must be {(h, w, 2)} next to a "
                             f"grey image, got image channels {c}")
        feature[CONTEXT] = _bytes(_png(quantise(context, quant_max), IMAGE_PNG_COMPRESSION))
    # Deterministic map order: identical slices give identical bytes, so shard
    # checksums identify content (docs/conversion.md, "Reliability").
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString(
        deterministic=True)


def context_slices(meta: DatasetMeta | dict[str, Any]) -> int:
    """Neighbours stored on each side of every slice (0 for data sets without them)."""
    return DatasetMeta.from_dict(meta, "dataset metadata").context_slices


def neighbours(volume: np.ndarray, z: int) -> np.ndarray:
    """(H, W, 2): slices z - 1 and z + 1 of a (Z, H, W) volume; an edge slice stands in
    for its missing neighbour."""
    last = volume.shape[0] - 1
    return np.stack([volume[max(z - 1, 0)], volume[min(z + 1, last)]], axis=-1)


def feature_spec(meta: DatasetMeta | dict[str, Any]):
    """The parsing spec for a data set described by its ``dataset.json``."""
    import tensorflow as tf
    meta = DatasetMeta.from_dict(meta, "dataset metadata")
    spec = {
        SUBJECT_ID: tf.io.FixedLenFeature([], tf.string),
        SLICE_INDEX: tf.io.FixedLenFeature([], tf.int64),
        HEIGHT: tf.io.FixedLenFeature([], tf.int64),
        WIDTH: tf.io.FixedLenFeature([], tf.int64),
        CHANNELS: tf.io.FixedLenFeature([], tf.int64),
        VOXEL_SIZE: tf.io.FixedLenFeature([3], tf.float32),
        IMAGE: tf.io.FixedLenFeature([], tf.string),
        IMAGE_QUANT_MAX: tf.io.FixedLenFeature([], tf.int64),
        MASK: tf.io.FixedLenFeature([], tf.string),
        MASK_COUNTS: tf.io.FixedLenFeature([meta.num_mask_classes], tf.int64),
        TISSUE: tf.io.FixedLenFeature([], tf.string),
        TISSUE_COUNTS: tf.io.FixedLenFeature([meta.num_tissue_classes], tf.int64),
        PRESENCE: tf.io.FixedLenFeature([len(meta.presence_labels)], tf.float32),
    }
    if context_slices(meta):
        spec[CONTEXT] = tf.io.FixedLenFeature([], tf.string)
    return spec


PARSED_FIELDS = ("image", "mask", "tissue", "presence", "mask_counts", "tissue_counts",
                 "subject_id", "slice_index", "voxel_size", "context")


def available_fields(meta: DatasetMeta | dict[str, Any]) -> tuple:
    """The ``PARSED_FIELDS`` a data set has (``context`` only when it stores neighbours)."""
    return tuple(f for f in PARSED_FIELDS if f != "context" or context_slices(meta))


def parse_fn(meta: DatasetMeta | dict[str, Any], fields=None):
    """Return a graph function: serialised Example -> dict of decoded tensors.

    Args:
      meta: the data set's dataset.json record (or its JSON object).
      fields: the output keys wanted (default: all of ``available_fields(meta)``). PNG
        decoding dominates the cost, so a task that needs only the image and one
        label map should not decode the others.

    Output keys: ``image`` (H, W, C) float32 in [0, 1], ``mask`` and ``tissue``
    (H, W) int32, ``presence`` (P,) float32, ``mask_counts``, ``tissue_counts``,
    ``subject_id``, ``slice_index``, ``voxel_size``, and ``context`` (H, W, 2) float32
    in [0, 1] (the previous and next slice) when the data set stores it.
    """
    import tensorflow as tf
    known = available_fields(meta)
    fields = tuple(known if fields is None else fields)
    unknown = sorted(set(fields) - set(known))
    if unknown:
        raise ValueError(f"unknown fields {unknown}; known: {known}")
    meta = DatasetMeta.from_dict(meta, "dataset metadata")
    full = feature_spec(meta)
    keys = {"image": (IMAGE, IMAGE_QUANT_MAX), "mask": (MASK,), "tissue": (TISSUE,),
            "presence": (PRESENCE,), "mask_counts": (MASK_COUNTS,),
            "tissue_counts": (TISSUE_COUNTS,), "subject_id": (SUBJECT_ID,),
            "slice_index": (SLICE_INDEX,), "voxel_size": (VOXEL_SIZE,),
            "context": (CONTEXT, IMAGE_QUANT_MAX)}
    spec = {k: full[k] for f in fields for k in keys[f]}
    h, w = meta.image_size
    c = meta.channels

    def label(png):
        return tf.ensure_shape(tf.cast(tf.io.decode_png(png, channels=1)[..., 0], tf.int32),
                               (h, w))

    def parse(serialised):
        f = tf.io.parse_single_example(serialised, spec)
        out = {}
        for name in fields:
            if name in ("image", "context"):
                n = c if name == "image" else 2
                # decode_png takes no channels=2: the context PNG (grey + alpha) as stored
                image = tf.io.decode_png(f[keys[name][0]], channels=n if n != 2 else 0,
                                         dtype=tf.uint16)
                image = tf.cast(image, tf.float32) / tf.cast(f[IMAGE_QUANT_MAX], tf.float32)
                out[name] = tf.ensure_shape(image, (h, w, n))
            elif name in ("mask", "tissue"):
                out[name] = label(f[keys[name][0]])
            else:
                out[name] = f[keys[name][0]]
        return out
    return parse


def read_meta(data_dir: str) -> DatasetMeta:
    """The ``dataset.json`` record of a converted data set
    (:func:`tfrecords_tools.dataset_meta.read_dataset_meta`)."""
    return read_dataset_meta(data_dir)
