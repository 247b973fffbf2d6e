"""Writing shards and dataset.json atomically (temporary name, then rename)."""
from __future__ import annotations

import errno
import os
from typing import Iterable

from tfrecords_tools import schema
from tfrecords_tools.dataset_meta import DatasetMeta
from tl_common.io import atomic_path, write_json_atomic


def write_shard(path: str, examples: Iterable[bytes]) -> int:
    """Write serialised examples to ``path`` atomically; returns the count.

    The records go to a temporary file in the same directory, renamed to
    ``path`` only once every record is written and the file closed, so an
    interrupted write never leaves a (half) shard under the final name.
    """
    import tensorflow as tf
    n = 0
    try:
        with atomic_path(path) as tmp:
            with tf.io.TFRecordWriter(tmp) as writer:
                for record in examples:
                    writer.write(record)
                    n += 1
    except tf.errors.OpError as e:  # e.g. ResourceExhaustedError: the disk is full
        raise OSError(errno.EIO, f"cannot write the shard: {type(e).__name__}: "
                      f"{e.message.replace(tmp, path)}", path) from None
    return n


def write_dataset_json(out_dir: str, meta: DatasetMeta | dict) -> DatasetMeta:
    """Check ``meta`` (:class:`DatasetMeta`) and write ``dataset.json`` atomically;
    returns the record.

    Raises:
      RecordError: a required key is missing or a value is bad.
    """
    path = os.path.join(out_dir, schema.DATASET_JSON)
    record = DatasetMeta.from_dict(meta, path)
    write_json_atomic(path, record.to_dict())
    return record
