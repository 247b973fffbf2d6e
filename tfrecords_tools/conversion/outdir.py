"""Claiming a conversion's ``--out_dir``: lock, parameter check, temp debris.

One conversion at a time writes into a folder (``tl_common.lock``). Shard
jobs (``--shard_job I/N``) of one conversion run side by side by design, so each
takes its own lock ``.lock-jobIofN`` and the whole-manifest run takes ``.lock``;
each kind refuses to start while the other is held. A folder that already holds
a conversion with other parameters (``convert.json``, or ``dataset.json`` of
older folders) is refused unless ``overwrite``. See docs/conversion.md,
"Reliability".
"""
from __future__ import annotations

import glob
import json
import os

from tfrecords_tools import schema
from tl_common import lock, paths
from tl_common.cli import UserError
from tl_common.io import remove_temp_debris

# The conversion parameters that decide the content of the shards (a changed
# manifest, --workers or --on_error may resume the same conversion).
PARAM_KEYS = ("preprocessing", "num_shards", "split_counts", "split_fractions", "split_seed",
              "context_slices")
RECORD_NAME = "convert.json"
# Sub-folders written with temporary names (see assemble, subject_cache, preprocess).
TEMP_FOLDERS = ("", ".shards", "subjects", "transforms")


class OutDirError(UserError, ValueError):
    """The output folder cannot be used (message: one line naming it)."""


def _lock_name(shard_job) -> str:
    return lock.LOCK_NAME if shard_job is None else \
        f"{lock.LOCK_NAME}-job{shard_job[0]}of{shard_job[1]}"


def _other_locks_held(out_dir: str, shard_job) -> list[str]:
    if shard_job is not None:
        names = [lock.LOCK_NAME]
    else:
        names = [os.path.basename(p) for p in glob.glob(
            os.path.join(out_dir, glob.escape(lock.LOCK_NAME) + "-job*"))]
    return [n for n in names if lock.is_locked(out_dir, n)]


def _normal(value):
    """JSON round trip, so tuples / int keys compare equal to what was stored."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def _stored_parameters(out_dir: str) -> dict | None:
    record = os.path.join(out_dir, RECORD_NAME)
    if os.path.exists(record):
        with open(record) as f:
            return json.load(f).get("flags", {})
    if os.path.exists(os.path.join(out_dir, schema.DATASET_JSON)):
        # converted before convert.json existed
        return {"preprocessing": schema.read_meta(out_dir).preprocessing or None}
    return None


def parameter_differences(stored: dict, params: dict) -> list[str]:
    """``name: old -> new`` for every content parameter present in both records."""
    out = []
    for key in PARAM_KEYS:
        if key not in stored or key not in params:
            continue
        old, new = _normal(stored[key]), _normal(params[key])
        if isinstance(old, dict) and isinstance(new, dict) and key == "preprocessing":
            out += [f"{k}: {old.get(k)} -> {new.get(k)}" for k in sorted(set(old) | set(new))
                    if old.get(k) != new.get(k)]
        elif old != new:
            out.append(f"{key}: {old} -> {new}")
    return out


def refuse_input_overlap(out_dir: str, manifest) -> None:
    """OutDirError when ``out_dir`` is, contains or sits inside the manifest's folder
    (or the preset's ``--root``), or holds any input file."""
    source = manifest.source
    where = [("the manifest's folder", os.path.dirname(source)) if os.path.isfile(source)
             else ("--root", source)]
    paths.refuse_overlap("--out_dir", out_dir, where + [
        (f"the input file of subject {s.subject_id}:", f)
        for s in manifest.subjects for f in s.files()], OutDirError)


def check_folder(out_dir: str) -> None:
    paths.check_output_folder(out_dir, "--out_dir", OutDirError)
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as e:
        raise OutDirError(f"{out_dir}: cannot create the output folder ({e.strerror})") from None
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise OutDirError(f"{out_dir}: the output folder is not writable (read-only?)")


def _remove_previous_conversion(out_dir: str) -> None:
    """--overwrite: drop the shards and descriptions of the other parameters (caches
    stay: their fingerprints include the parameters, so they are redone as needed)."""
    patterns = ("*-*-of-*.tfrecord", os.path.join(".shards", "*.json"), schema.DATASET_JSON,
                schema.SUBJECTS_CSV, "errors*.csv", RECORD_NAME)
    for pattern in patterns:
        for path in glob.glob(os.path.join(out_dir, pattern)):
            os.remove(path)


def claim(out_dir: str, params: dict, *, shard_job=None, overwrite: bool = False,
          quiet: bool = False) -> lock.FolderLock:
    """Lock ``out_dir`` for this conversion, check its parameters, clean temp debris.

    Args:
      out_dir: the conversion's output folder (created).
      params: this run's parameters (keys ``PARAM_KEYS`` are compared).
      shard_job: (I, N) for a shard job, None for the whole manifest.
      overwrite: replace a conversion with other parameters instead of refusing.
      quiet: no message when a stale lock is taken over.

    Returns:
      The held lock (release it when the run ends).

    Raises:
      OutDirError: not a folder, not writable, or other parameters without overwrite.
      lock.LockError: another conversion is writing into ``out_dir``.
    """
    check_folder(out_dir)
    held = lock.acquire(out_dir, name=_lock_name(shard_job), what=out_dir, quiet=quiet)
    try:
        others = _other_locks_held(out_dir, shard_job)
        if others:
            raise lock.LockError(f"{out_dir} is in use by another conversion "
                                 f"({', '.join(others)} held); wait for it to finish")
        stored = _stored_parameters(out_dir)
        diff = parameter_differences(stored, params) if stored else []
        if diff and not overwrite:
            raise OutDirError(
                f"{out_dir} holds a conversion with other parameters ({'; '.join(diff)}); "
                "use a new --out_dir, or --overwrite to replace it")
        if diff:
            _remove_previous_conversion(out_dir)
        if shard_job is None:  # alone in the folder: no temporary file is in use
            remove_temp_debris(os.path.join(out_dir, d) for d in TEMP_FOLDERS)
    except BaseException:
        held.release()
        raise
    return held
