"""Per-subject cache of pre-processed volumes: the unit of work of the conversion.

A worker process pre-processes one subject and writes
``<out_dir>/subjects/<id>.npz`` atomically. A cache whose fingerprint (the
pre-processing parameters plus the input files' paths, sizes and modification
times) matches the current run is complete, so a rerun skips that subject.
Shards are assembled from these caches afterwards.

The image is stored quantised with the shard schema's levels, so storing it
here loses nothing relative to the shard itself and keeps the cache small.
"""
from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import os
import sys
import time
import zipfile
import zlib

import numpy as np

from tfrecords_tools import schema
from tfrecords_tools.errors import InputError
from tfrecords_tools.scans.config import PreprocessConfig
from tl_common.io import atomic_path

CACHE_DIR = "subjects"
# Disk full, quota, read-only: the output folder fails every subject alike.
OUTPUT_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)
TRANSFORM_DIR = "transforms"


@dataclasses.dataclass(frozen=True)
class SubjectJob:
    """Everything a worker needs to pre-process and cache one subject (picklable, no TF
    objects)."""
    subject_id: str
    image: str
    labels: dict
    config: dict
    out_dir: str
    fingerprint: str


def cache_path(out_dir: str, subject_id: str) -> str:
    return os.path.join(out_dir, CACHE_DIR, f"{subject_id}.npz")


def fingerprint(config: dict, files: list[str]) -> str:
    """Hash of the pre-processing parameters and the input files' identity."""
    stats = []
    for f in files:
        try:
            st = os.stat(f)
            stats.append([os.path.abspath(f), st.st_size, int(st.st_mtime)])
        except OSError:
            stats.append([os.path.abspath(f), None, None])
    blob = json.dumps({"config": config, "files": stats}, sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def read_cache_meta(path: str) -> dict | None:
    """The metadata of a cache file, or None if absent or unreadable."""
    try:
        with np.load(path) as z:
            return json.loads(str(z["meta"]))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, EOFError):
        return None


def _damaged_member(path: str) -> str | None:
    """The first member of a cache whose CRC-32 checksum fails (or ``"the archive"``),
    None when every member reads back intact."""
    with zipfile.ZipFile(path) as z:
        for name in z.namelist():
            try:
                with z.open(name) as f:
                    while f.read(1 << 22):
                        pass
            except (OSError, zipfile.BadZipFile, EOFError, ValueError, zlib.error):
                return name  # a CRC mismatch, a truncated or undecodable member
    return None


def is_complete(out_dir: str, subject_id: str, expected_fingerprint: str) -> bool:
    """The subject's cache exists for these parameters and reads back intact. A damaged
    cache (its metadata may still read) is named on stderr and is redone."""
    path = cache_path(out_dir, subject_id)
    meta = read_cache_meta(path)
    if meta is None or meta.get("fingerprint") != expected_fingerprint:
        return False
    try:
        damaged = _damaged_member(path)
    except (OSError, zipfile.BadZipFile, EOFError, ValueError):
        damaged = "the archive"
    if damaged:
        print(f"convert: {path}: damaged ({damaged} fails its checksum); pre-processing "
              f"subject {subject_id} again", file=sys.stderr, flush=True)
        return False
    return True


def save_cache(path: str, result, *, subject_id: str, fp: str, out_dir: str,
               extra: dict | None = None) -> dict:
    """Write a SubjectResult to ``path`` atomically; returns its metadata."""
    transform = getattr(result, "transform_file", None)
    if transform:
        transform = os.path.relpath(transform, out_dir)
    image = np.asarray(result.image, np.float32)
    indices = np.asarray(result.slice_indices, np.int32)
    meta = {
        "subject_id": subject_id,
        "fingerprint": fp,
        "slices": int(image.shape[0]),
        "first_slice": int(indices.min()) if indices.size else -1,
        "last_slice": int(indices.max()) if indices.size else -1,
        "shape": list(image.shape[1:]),
        "voxel_size": [float(v) for v in result.voxel_size],
        "geometry": _jsonable(getattr(result, "geometry", {}) or {}),
        "transform_file": transform or "",
        "timings": _jsonable(getattr(result, "timings", {}) or {}),
        "checks": _jsonable(getattr(result, "checks", {}) or {}),
        "quant_max": schema.DEFAULT_QUANT_MAX,
        **(extra or {}),
    }
    arrays = {
        "image": schema.quantise(image, schema.DEFAULT_QUANT_MAX),
        "slice_indices": indices,
        "tissue": np.asarray(result.tissue, np.uint8),
        "presence": np.asarray(result.presence, np.float32),
        "meta": np.array(json.dumps(meta)),
    }
    if getattr(result, "mask", None) is not None:
        arrays["mask"] = np.asarray(result.mask, np.uint8)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
    return meta


def load_cache(path: str) -> dict:
    """Arrays of a cache (image float32 in [0, 1]) plus ``meta``."""
    with np.load(path) as z:
        meta = json.loads(str(z["meta"]))
        out = {k: z[k] for k in z.files if k != "meta"}
    out["image"] = out["image"].astype(np.float32) / float(meta["quant_max"])
    out.setdefault("mask", None)
    out["meta"] = meta
    return out


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def cache_subject(job: SubjectJob) -> dict:
    """Pre-process one subject and cache it; runs in a worker process.

    Never raises for a bad subject: returns ``{"status": "error", "subject",
    "file", "problem"}`` so the parent decides (fail or skip). An
    ``InputError`` keeps its own file and problem; any other exception is
    reported against the image file with its type, so one broken scan cannot
    take down a long conversion silently. A full or read-only disk is raised:
    it is not the subject's fault and would fail every one of them.
    """
    from tfrecords_tools.scans.preprocess import preprocess_subject
    start = time.perf_counter()
    try:
        config = PreprocessConfig.from_dict(job.config)
        transform_dir = os.path.join(job.out_dir, TRANSFORM_DIR)
        os.makedirs(transform_dir, exist_ok=True)
        result = preprocess_subject(job.subject_id, job.image, job.labels, config,
                                    transform_dir)
        if np.asarray(result.image).shape[0] == 0:
            raise InputError(job.subject_id, job.image,
                             "no axial slices left after cropping; lower --crop_top/--crop_bottom")
        meta = save_cache(cache_path(job.out_dir, job.subject_id), result,
                          subject_id=job.subject_id, fp=job.fingerprint, out_dir=job.out_dir,
                          extra={"image_file": job.image, "label_files": job.labels})
    except InputError as e:
        return {"status": "error", "subject": e.subject, "file": e.file, "problem": e.problem}
    except OSError as e:
        if e.errno in OUTPUT_ERRNOS:  # the output, not this subject: stop the conversion
            raise
        return _unexpected(job, e)
    except Exception as e:  # noqa: BLE001 - reported per subject, see docstring
        return _unexpected(job, e)
    return {"status": "done", "subject": job.subject_id, "slices": meta["slices"],
            "seconds": time.perf_counter() - start}


def _unexpected(job: SubjectJob, error: Exception) -> dict:
    problem = " ".join(f"unexpected {type(error).__name__}: {error}".split())
    return {"status": "error", "subject": job.subject_id, "file": job.image,
            "problem": problem}
