"""From per-subject caches to shards, ``dataset.json`` and ``subjects.csv``.

Subjects are assigned to shards deterministically: within a split, in sorted
id order, round-robin over ``min(num_shards, subjects in split)`` shards. A
shard job ``I/N`` owns the shards whose index k has ``k % N == I`` (in every
split). Each written shard gets a small record
``<out_dir>/.shards/<shard>.json`` (its subjects, the fingerprints of the
caches it was built from, its size and SHA-256), so a rerun rewrites a shard
only when its content would change or the file was damaged, and
``dataset.json`` (which carries the checksums for the reader) can be rebuilt
by any job from what is complete.
"""
from __future__ import annotations

import dataclasses
import glob
import json
import os

import numpy as np
import pandas as pd

from tfrecords_tools import schema
from tfrecords_tools.dataset_meta import DatasetMeta
from tfrecords_tools.conversion.subject_cache import cache_path, load_cache, read_cache_meta
from tfrecords_tools.manifests.manifest import Manifest, split_of
from tfrecords_tools.shards import writer as shards
from tl_common.io import sha256_file, write_csv_atomic, write_json_atomic
from tl_common.runinfo import package_versions
from tl_common.cli import FlagError
from tfrecords_tools.errors import DataSetError

RECORD_DIR = ".shards"
ERRORS_CSV = "errors.csv"


@dataclasses.dataclass(frozen=True)
class ShardPlan:
    """One shard: its split, index, count in the split and subjects (sorted)."""
    split: str
    index: int
    num_shards: int
    subjects: tuple[str, ...]

    @property
    def name(self) -> str:
        return schema.shard_name(self.split, self.index, self.num_shards)


@dataclasses.dataclass(frozen=True)
class ClassInfo:
    """Class names written into dataset.json and used for the per-slice counts."""
    mask_classes: tuple[str, ...]
    tissue_classes: tuple[str, ...]
    presence_labels: tuple[str, ...]


def plan_shards(manifest: Manifest, num_shards: int) -> list[ShardPlan]:
    """Deterministic subject -> shard assignment (sorted ids, round-robin)."""
    if num_shards < 1:
        raise FlagError(f"num_shards must be >= 1, got {num_shards}")
    plans = []
    for split, subjects in sorted(split_of(manifest.subjects).items()):
        ids = [s.subject_id for s in subjects]
        n = min(num_shards, len(ids))
        plans += [ShardPlan(split, k, n, tuple(ids[k::n])) for k in range(n)]
    return plans


def in_job(plan: ShardPlan, job: tuple[int, int] | None) -> bool:
    return job is None or plan.index % job[1] == job[0]


def _record_path(out_dir: str, name: str) -> str:
    return os.path.join(out_dir, RECORD_DIR, name + ".json")


def read_record(out_dir: str, plan: ShardPlan) -> dict | None:
    """The record of a written shard, or None if the shard or record is absent."""
    path = _record_path(out_dir, plan.name)
    if not (os.path.exists(path) and os.path.exists(os.path.join(out_dir, plan.name))):
        return None
    with open(path) as f:
        return json.load(f)


def shard_state(out_dir: str, plan: ShardPlan, subjects: list[str],
                fingerprints: dict[str, str], context_slices: int = 0) -> str:
    """``current``, ``missing``, ``changed`` (other subjects, caches or
    ``context_slices``) or ``damaged``.

    ``damaged``: the shard's size or SHA-256 differs from the one recorded when it
    was written (a flipped byte, a truncated copy); the caller re-creates it.
    """
    record = read_record(out_dir, plan)
    if record is None:
        return "missing"
    if (record["subjects"] != subjects
            or record["fingerprints"] != {s: fingerprints[s] for s in subjects}
            or record.get("context_slices", 0) != context_slices):
        return "changed"
    path = os.path.join(out_dir, plan.name)
    if "sha256" not in record:  # written before checksums existed: rewrite once
        return "changed"
    if os.path.getsize(path) != record["bytes"] or sha256_file(path) != record["sha256"]:
        return "damaged"
    return "current"


def _examples(out_dir: str, subjects: list[str], info: ClassInfo, counter: dict,
              read_fingerprints: dict, context_slices: int = 0):
    for sid in subjects:
        c = load_cache(cache_path(out_dir, sid))
        # What this shard really holds: a rerun compares it with what it expects.
        read_fingerprints[sid] = c["meta"].get("fingerprint")
        voxel = c["meta"]["voxel_size"]
        # The cache holds one contiguous slab of axial slices (crop_top / crop_bottom), so
        # the neighbours of slice z are z - 1 and z + 1 of the cache.
        if context_slices and np.any(np.diff(c["slice_indices"]) != 1):
            raise DataSetError(f"subject {sid}: its slices are not contiguous; "
                               "--context_slices needs consecutive axial slices")
        for z in range(c["image"].shape[0]):
            counter[sid] = counter.get(sid, 0) + 1
            yield schema.make_example(
                subject_id=sid, slice_index=int(c["slice_indices"][z]), image=c["image"][z],
                voxel_size=voxel, mask=None if c["mask"] is None else c["mask"][z],
                num_mask_classes=len(info.mask_classes), tissue=c["tissue"][z],
                num_tissue_classes=len(info.tissue_classes), presence=c["presence"][z],
                context=schema.neighbours(c["image"], z) if context_slices else None)


def write_planned_shard(out_dir: str, plan: ShardPlan, subjects: list[str],
                        fingerprints: dict[str, str], info: ClassInfo,
                        context_slices: int = 0) -> dict:
    """Write one shard from the caches of ``subjects`` (atomically), then its record.

    The record holds the fingerprints of the caches actually read (not
    ``fingerprints``, what the run expected), ``context_slices`` (each example then
    also stores its two axial neighbours, ``schema.CONTEXT``) and the shard's size and
    SHA-256.

    Raises:
      RuntimeError: a cache changed under the run (its fingerprint is not the
        expected one); the shard is written but its record tells a rerun to redo it.
    """
    counter: dict[str, int] = {}
    read: dict[str, str] = {}
    path = os.path.join(out_dir, plan.name)
    n = shards.write_shard(path, _examples(out_dir, subjects, info, counter, read,
                                           context_slices))
    record = {"split": plan.split, "index": plan.index, "num_shards": plan.num_shards,
              "subjects": subjects, "slices": n,
              "slices_per_subject": {s: counter.get(s, 0) for s in subjects},
              "fingerprints": {s: read.get(s) for s in subjects},
              "context_slices": context_slices, "bytes": os.path.getsize(path), "sha256": sha256_file(path)}
    write_json_atomic(_record_path(out_dir, plan.name), record)
    stale = sorted(s for s in subjects if read.get(s) != fingerprints[s])
    if stale:
        raise DataSetError(f"{path}: the caches of {stale} changed while the shard was "
                           "written (another conversion into the same folder?); rerun")
    return record


def remove_stale_shards(out_dir: str, plans: list[ShardPlan]) -> list[str]:
    """Delete shard files (and records) that the current plan does not produce.

    Only a run covering the whole manifest may call this: a changed
    ``--num_shards`` or split would otherwise leave old shards that the reader
    would pick up.
    """
    wanted = {p.name for p in plans}
    removed = []
    for path in sorted(glob.glob(os.path.join(out_dir, "*-*-of-*.tfrecord"))):
        name = os.path.basename(path)
        if name not in wanted:
            os.remove(path)
            rec = _record_path(out_dir, name)
            if os.path.exists(rec):
                os.remove(rec)
            removed.append(name)
    return removed


def write_metadata(out_dir: str, manifest: Manifest, plans: list[ShardPlan], info: ClassInfo,
                   *, preprocessing: dict, image_size: int, errors: list[dict],
                   tool_version: str, context_slices: int = 0) -> DatasetMeta:
    """(Re)write dataset.json and subjects.csv from the shards written so far.

    ``complete`` in dataset.json is true only when every planned shard exists;
    a shard job therefore writes a partial description, and a final run
    without ``--shard_job`` (which skips all finished work) writes the full one.
    """
    by_id = {s.subject_id: s for s in manifest.subjects}
    splits: dict[str, dict] = {}
    rows = []
    checksums = {}
    written = 0
    for plan in plans:
        entry = splits.setdefault(plan.split, {"subjects": [], "slices": 0,
                                               "shards": plan.num_shards, "complete": True})
        record = read_record(out_dir, plan)
        if record is None:
            entry["complete"] = False
            continue
        written += 1
        if "sha256" in record:
            checksums[plan.name] = {"bytes": record["bytes"], "sha256": record["sha256"]}
        entry["subjects"] = sorted(entry["subjects"] + record["subjects"])
        entry["slices"] += int(record["slices"])
        for sid in record["subjects"]:
            rows.append(_subject_row(out_dir, by_id[sid], plan, record))
    meta = {
        "image_size": [image_size, image_size],
        "channels": 1,
        schema.CONTEXT_SLICES: context_slices,
        "num_mask_classes": len(info.mask_classes),
        "mask_classes": list(info.mask_classes),
        "num_tissue_classes": len(info.tissue_classes),
        "tissue_classes": list(info.tissue_classes),
        "presence_labels": list(info.presence_labels),
        "splits": splits,
        "checksums": checksums,
        "preprocessing": preprocessing,
        "tool_version": tool_version,
        "versions": package_versions(),
        "quant_max": schema.DEFAULT_QUANT_MAX,
        "synthetic": bool(manifest.synthetic),
        "source": manifest.source,
        "complete": written == len(plans) and not errors,
        "errors": len(errors),
    }
    record = shards.write_dataset_json(out_dir, meta)
    columns = ["subject_id", "split", "shard", "slices", "first_slice", "last_slice",
               "voxel_size", "transform_file", "image_file", "label_files"]
    frame = pd.DataFrame(sorted(rows, key=lambda r: (r["split"], r["subject_id"])))
    frame = frame[columns + sorted(c for c in frame.columns if c not in columns)] if rows \
        else pd.DataFrame(columns=columns)
    write_csv_atomic(os.path.join(out_dir, schema.SUBJECTS_CSV), frame)
    return record


def _subject_row(out_dir: str, subject, plan: ShardPlan, record: dict) -> dict:
    meta = read_cache_meta(cache_path(out_dir, subject.subject_id)) or {}
    row = {"subject_id": subject.subject_id, "split": plan.split, "shard": plan.name,
           "slices": record["slices_per_subject"].get(subject.subject_id, 0),
           "first_slice": meta.get("first_slice", ""), "last_slice": meta.get("last_slice", ""),
           "voxel_size": json.dumps(meta.get("voxel_size")),
           "transform_file": meta.get("transform_file", ""),
           "image_file": subject.image,
           "label_files": json.dumps({k: list(v) for k, v in subject.labels.items()})}
    for key, value in sorted((meta.get("geometry") or {}).items()):
        row[key] = value if isinstance(value, (str, int, float)) else json.dumps(value)
    for key, value in sorted((meta.get("checks") or {}).items()):  # figures of checks.py
        row[key] = value if isinstance(value, (str, int, float)) else json.dumps(value)
    for key, value in sorted((meta.get("timings") or {}).items()):
        row[f"seconds_{key}"] = value
    return row


def write_errors(out_dir: str, errors: list[dict], name: str = ERRORS_CSV) -> str | None:
    """Write the errors CSV (subject, file, problem), or remove a stale one."""
    path = os.path.join(out_dir, name)
    if not errors:
        if os.path.exists(path):
            os.remove(path)
        return None
    frame = pd.DataFrame(errors, columns=["subject", "file", "problem"])
    write_csv_atomic(path, frame.sort_values("subject"))
    return path
