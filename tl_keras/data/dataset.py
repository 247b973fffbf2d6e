"""tf.data builder over the shards written by ``tfrecords_tools``.

The parser comes from ``tfrecords_tools.schema`` (one schema for writer and
reader). Targets per task:

- ``segmentation``: source segmentation labels (``tissue``), int32 (H, W).
- ``autoencoding``: the model input itself, (H, W, 3) in [-1, 1].
- ``classification``: the presence vector, float32 (P,).
- ``target``: the target mask (lesion / anatomy), int32 (H, W).
"""
from __future__ import annotations

import functools
import glob
import os
from typing import Callable, Sequence

import numpy as np
import tensorflow as tf

from tfrecords_tools import schema
from tfrecords_tools.dataset_meta import DatasetMeta
from tl_common.io import sha256_file
from tfrecords_tools.errors import DataSetError
from tl_common.cli import MissingFileError

TASKS = ("segmentation", "autoencoding", "classification", "target", "raw")


def list_shards(data_dir: str, split: str) -> list[str]:
    """Sorted shard files of one split; a clear error when there are none."""
    files = sorted(glob.glob(os.path.join(data_dir, f"{split}-*-of-*.tfrecord")))
    if not files:
        raise MissingFileError(f"{data_dir}: no shards for split '{split}' "
                                f"(expected {schema.shard_name(split, 0, 1)} and so on)")
    return files


@functools.lru_cache(maxsize=None)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    """SHA-256 of a shard, once per process for an unchanged file (size, mtime)."""
    return sha256_file(path)


def verify_shards(files: Sequence[str], meta: DatasetMeta) -> None:
    """Check shards against the sizes and SHA-256 sums recorded in dataset.json.

    Run before a data set is read, so a damaged shard is named here instead of
    surfacing as a ``DataLossError`` naming no file mid-training. Each file is
    hashed once per process (about 1.5-3 s per GB; see docs/training.md,
    "Reliability"). Data sets written before checksums existed are not checked.

    Raises:
      ValueError: a shard's size or content differs from the record.
    """
    for path in files:
        record = meta.checksums.get(os.path.basename(path))
        if record is None:
            continue
        stat = os.stat(path)
        redo = "rerun tfrecords_tools.convert with the same --out_dir to re-create it"
        if stat.st_size != record["bytes"]:
            raise DataSetError(f"{path}: {stat.st_size} bytes but dataset.json records "
                             f"{record['bytes']} (truncated or replaced); {redo}")
        if _sha256(path, stat.st_size, stat.st_mtime_ns) != record["sha256"]:
            raise DataSetError(f"{path}: content differs from its SHA-256 in dataset.json "
                             f"(damaged); {redo}")


def split_subjects(meta: DatasetMeta, split: str) -> list[str]:
    """Subject ids of one split as recorded in dataset.json."""
    info = meta.split(split)
    if info is None:
        raise DataSetError(f"dataset.json has no split '{split}' (has {sorted(meta.splits)})")
    return list(info.subjects)


def select_subjects(subjects: Sequence[str], k: int | None, seed: int) -> list[str]:
    """Draw ``k`` subjects without replacement with seed ``seed`` (all if k is None).

    Deterministic for a given (sorted subject list, k, seed), so set-size sweeps
    are reproducible. Raises ValueError if k exceeds the available subjects.
    """
    subjects = sorted(subjects)
    if k is None or k == len(subjects):
        return subjects
    if k <= 0 or k > len(subjects):
        raise ValueError(f"cannot draw {k} subjects from {len(subjects)} available")
    rng = np.random.default_rng(seed)
    return sorted(rng.choice(subjects, size=k, replace=False).tolist())


def to_model_input(image: tf.Tensor, input_channels: int = 3) -> tf.Tensor:
    """[0, 1] grey (or RGB) image -> [-1, 1] with ``input_channels`` channels."""
    x = image * 2.0 - 1.0
    c = image.shape[-1]
    if input_channels == c:
        return x
    if c == 1 and input_channels == 3:
        return tf.repeat(x, 3, axis=-1)
    if c == 3 and input_channels == 1:
        return tf.reduce_mean(x, axis=-1, keepdims=True)
    raise DataSetError(f"cannot map {c} image channels to {input_channels} model channels")


def with_context(ex: dict) -> dict:
    """Replace a parsed example's grey ``image`` by the 2.5-D stack [previous, slice,
    next] (H, W, 3) in [0, 1], from its ``context`` field (``schema.CONTEXT``)."""
    ctx = ex["context"]
    out = {k: v for k, v in ex.items() if k != "context"}
    out["image"] = tf.concat([ctx[..., :1], ex["image"], ctx[..., 1:]], axis=-1)
    return out


def check_slice_context(meta: DatasetMeta | dict, where: str) -> None:
    """Refuse 2.5-D input from a data set converted without neighbours (one line)."""
    if not schema.context_slices(meta):
        raise DataSetError(f"{where}: converted without --context_slices, so it has no "
                           "neighbouring slices for 2.5-D input; convert it again with "
                           "--context_slices")


# Fields each task decodes; the label of a (x, y) pair; "raw" keeps every field.
_TASK_FIELDS = {"segmentation": ("image", "tissue"), "autoencoding": ("image",),
                "classification": ("image", "presence"), "target": ("image", "mask")}


def _pair_fn(task: str):
    """Example dict -> (image in [0, 1], target) before batching."""
    def fn(ex):
        label = _TASK_FIELDS[task][-1]
        return ex["image"], (ex["image"] if task == "autoencoding" else ex[label])
    return fn


def _model_input_fn(task: str, input_channels: int):
    """Batched (image in [0, 1], target) -> model input in [-1, 1] (and the target)."""
    def fn(image, target):
        x = to_model_input(image, input_channels)
        return x, (x if task == "autoencoding" else target)
    return fn


def build_dataset(data_dir: str, split: str, task: str, batch_size: int, *,
                  training: bool, subjects: Sequence[str] | None = None,
                  input_channels: int = 3, augment: Callable | None = None,
                  seed: int = 0, shuffle_buffer: int = 2048,
                  input_context: tf.distribute.InputContext | None = None,
                  drop_remainder: bool | None = None, repeat: bool = False,
                  meta: DatasetMeta | dict | None = None,
                  slice_context: bool = False) -> tf.data.Dataset:
    """Build a batched dataset of (input, target) pairs (or raw dicts for ``raw``).

    Args:
      data_dir: output directory of ``tfrecords_tools.convert``.
      split: split name (train / val / test).
      task: one of TASKS.
      batch_size: per-replica batch size when ``input_context`` is given, else global.
      training: shuffle files and examples and (by default) drop the remainder.
      subjects: keep only these subject ids (fine-tuning set sizes).
      input_channels: 3 (grey repeated) or 1.
      augment: optional function (image, y) -> (image, y) applied to single
        examples before batching, the image still in [0, 1] with the stored channels
        (for ``autoencoding`` the target is re-derived from the augmented image).
      seed: shuffle seed.
      input_context: from ``distribute_datasets_from_function``; shards by file.
      drop_remainder: defaults to ``training``.
      repeat: repeat indefinitely.
      meta: the dataset.json record, or its JSON object (read from data_dir when None).
      slice_context: 2.5-D input: the image becomes [previous, slice, next] (3
        channels, also for ``raw``); needs a data set converted with
        ``--context_slices`` and ``input_channels`` 3.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task '{task}', expected one of {TASKS}")
    meta = schema.read_meta(data_dir) if meta is None else DatasetMeta.from_dict(meta)
    if slice_context:
        check_slice_context(meta, data_dir)
        if input_channels != 3:
            raise DataSetError(f"2.5-D input has 3 channels, not input_channels="
                               f"{input_channels}")
    files = list_shards(data_dir, split)
    verify_shards(files, meta)
    ds = tf.data.Dataset.from_tensor_slices(files)
    if input_context is not None and input_context.num_input_pipelines > 1:
        if len(files) >= input_context.num_input_pipelines:
            ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
    if training:
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    ds = ds.interleave(tf.data.TFRecordDataset, cycle_length=min(4, len(files)),
                       num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if subjects is not None:
        # Select on the subject id alone, before any PNG is decoded: a fine-tuning
        # set of K subjects then decodes only its own slices.
        keep = tf.constant(sorted(set(subjects)))
        subject_of = schema.parse_fn(meta, ("subject_id",))
        ds = ds.filter(lambda rec: tf.reduce_any(tf.equal(subject_of(rec)["subject_id"], keep)))
    if task == "raw":
        fields = schema.available_fields(meta) if slice_context else tuple(
            f for f in schema.available_fields(meta) if f != "context")
    else:
        fields = _TASK_FIELDS[task] + (("context",) if slice_context else ())
    ds = ds.map(schema.parse_fn(meta, fields), num_parallel_calls=tf.data.AUTOTUNE)
    if slice_context:
        ds = ds.map(with_context, num_parallel_calls=tf.data.AUTOTUNE)
    if training:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    drop = training if drop_remainder is None else drop_remainder
    if task == "raw":
        return ds.batch(batch_size, drop_remainder=drop).prefetch(tf.data.AUTOTUNE)
    ds = ds.map(_pair_fn(task), num_parallel_calls=tf.data.AUTOTUNE)
    if augment is not None:
        ds = ds.map(augment, num_parallel_calls=tf.data.AUTOTUNE)
    # Scaling and the grey -> RGB repeat run once per batch, not per slice.
    ds = ds.batch(batch_size, drop_remainder=drop)
    ds = ds.map(_model_input_fn(task, input_channels), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)
