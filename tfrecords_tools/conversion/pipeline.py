"""Convert NIfTI scans listed in a manifest into TFRecord slice shards: ``convert``.

The library of ``python -m tfrecords_tools.convert`` (docs/conversion.md). Stages: (1)
read and check the manifest (every missing file reported at once), assign splits, claim
``out_dir`` (lock, parameter check, temp debris: ``outdir``); (2) pre-process each
subject not yet cached in a worker process (spawned, so TensorFlow is never forked) and
cache it under ``out_dir/subjects``; (3) write the shards whose subjects are all done,
each atomically; (4) rewrite ``dataset.json`` and ``subjects.csv`` from the shards
present. Every stage skips work already complete, so a rerun resumes; a damaged shard
(SHA-256) is re-created. Workers die with this process, and SIGTERM / SIGINT stop it
cleanly (``workers``).
"""
from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import os
import sys
from typing import Callable, Iterable, Mapping

from tqdm import tqdm

from tfrecords_tools.dataset_meta import DatasetMeta
from tfrecords_tools.conversion import outdir, subject_cache
from tl_common import workers as workers_lib
from tfrecords_tools.manifests import manifest as mf
from tfrecords_tools.scans import labels
from tfrecords_tools.scans.config import PreprocessConfig
from tfrecords_tools.shards import assemble
from tl_common.cli import FlagError, UserError
from tl_common.io import remove_temp_debris
from tl_common.runinfo import TOOL_VERSION, record_run

ON_ERROR = ("fail", "skip")


class ConversionError(UserError, RuntimeError):
    """Subjects failed with ``on_error='fail'``; ``errors`` holds (subject, file, problem)."""

    def __init__(self, errors: list[dict]):
        self.errors = errors
        first = errors[0]
        more = f" (and {len(errors) - 1} more, see errors.csv)" if len(errors) > 1 else ""
        super().__init__(f"subject {first['subject']}: {first['file']}: {first['problem']}{more}")


def class_info(config) -> assemble.ClassInfo:
    """Class names for dataset.json, from the pre-processing's label definitions."""
    return assemble.ClassInfo(mask_classes=tuple(config.mask_classes),
                              tissue_classes=tuple(labels.TISSUE_CLASSES),
                              presence_labels=tuple(labels.PRESENCE_LABELS))


def parse_shard_job(spec: str | None) -> tuple[int, int] | None:
    """``"I/N"`` -> (I, N) with 0 <= I < N; empty -> None."""
    if not spec:
        return None
    try:
        i, n = (int(v) for v in spec.split("/"))
    except ValueError:
        raise FlagError(f"--shard_job must look like I/N (e.g. 0/4), got '{spec}'") from None
    if not 0 <= i < n:
        raise FlagError(f"--shard_job {spec}: need 0 <= I < N")
    return i, n


def _run(fn: Callable, items: Iterable, pool: cf.Executor | None, *, desc: str, unit: str,
         progress: bool, stop: Callable[[object], bool] = lambda r: False) -> list:
    """Map ``fn`` over ``items`` on ``pool`` (inline when None), in completion order.

    Shows a tqdm bar (rate, ETA) on stderr. When ``stop(result)`` is true the
    pending items are cancelled and the running ones allowed to finish, so no
    cache or shard is left half done.
    """
    items = list(items)
    results = []
    bar = tqdm(total=len(items), desc=desc, unit=unit, file=sys.stderr,
               disable=not progress or not items, dynamic_ncols=True)
    try:
        if pool is None:
            for item in items:
                results.append(fn(item))
                bar.update()
                if stop(results[-1]):
                    break
            return results
        futures = [pool.submit(fn, item) for item in items]
        for future in cf.as_completed(futures):
            results.append(future.result())
            bar.update()
            if stop(results[-1]):
                for f in futures:
                    f.cancel()
                cf.wait(futures)
                break
        return results
    finally:
        bar.close()


def _write_shard_task(args) -> dict:
    out_dir, plan, subjects, fingerprints, info, context_slices = args
    return assemble.write_planned_shard(out_dir, plan, subjects, fingerprints, info,
                                        context_slices)


def _finish_errors(out_dir, results, shard_job, on_error) -> list[dict]:
    """Write this run's errors CSV; raise ConversionError in fail mode."""
    errors = [{k: r[k] for k in ("subject", "file", "problem")}
              for r in results if r["status"] == "error"]
    name = assemble.ERRORS_CSV if shard_job is None else \
        f"errors-job{shard_job[0]}of{shard_job[1]}.csv"
    assemble.write_errors(out_dir, errors, name=name)
    if errors and on_error == "fail":
        raise ConversionError(errors)
    return errors


def _shard_tasks(out_dir, plans, fps, info, failed, context_slices) -> list[tuple]:
    """Shards of ``plans`` whose content changed, that are missing or damaged (checksum),
    minus failed subjects. A damaged shard is named on stderr and re-created."""
    tasks = []
    for p in plans:
        subjects = [s for s in p.subjects if s not in failed]
        state = assemble.shard_state(out_dir, p, subjects, fps, context_slices)
        if state == "damaged":
            print(f"convert: {os.path.join(out_dir, p.name)}: damaged (size or SHA-256 differs "
                  "from when it was written); re-creating it", file=sys.stderr, flush=True)
        if state != "current":
            tasks.append((out_dir, p, subjects, fps, info, context_slices))
    return tasks


def _process(out_dir, todo, mine, fps, info, *, workers, on_error, shard_job,
             progress, context_slices) -> list[dict]:
    """Pre-process ``todo`` and write the shards of ``mine``; returns the errors.

    On SIGTERM / SIGINT (``workers.Stopped``) or any failure the workers are
    killed at once and this run's temporary files removed before re-raising.
    """
    pool = workers_lib.make_pool(min(workers, len(todo)) if todo else 1)
    try:
        with workers_lib.stop_on_signals():
            results = _run(subject_cache.cache_subject, sorted(todo, key=lambda t: t.subject_id),
                           pool, desc="pre-processing", unit="scan", progress=progress,
                           stop=lambda r: on_error == "fail" and r["status"] == "error")
            errors = _finish_errors(out_dir, results, shard_job, on_error)
            shard_tasks = _shard_tasks(out_dir, mine, fps, info, {e["subject"] for e in errors},
                                       context_slices)
            # Shards reuse the workers when there are several (PNG encoding dominates).
            _run(_write_shard_task, shard_tasks, pool if len(shard_tasks) > 1 else None,
                 desc="writing shards", unit="shard", progress=progress)
    except BaseException:
        if pool is not None:
            workers_lib.stop_pool(pool)
            pool = None
        if shard_job is None:  # alone in the folder (outdir.claim)
            remove_temp_debris(os.path.join(out_dir, d) for d in outdir.TEMP_FOLDERS)
        raise
    finally:
        if pool is not None:
            pool.shutdown(wait=True)
    return errors


def convert(manifest: str | mf.Manifest, out_dir: str, config=None, *, workers: int = 1,
            on_error: str = "fail", num_shards: int = 4,
            shard_job: tuple[int, int] | None = None,
            split_counts: Mapping[str, int] | None = None,
            split_fractions: Mapping[str, float] | None = None, split_seed: int = 0,
            allow_large_last_split: bool = False,
            synthetic: bool | None = None, progress: bool = True,
            overwrite: bool = False, context_slices: int = 0) -> DatasetMeta:
    """Convert the scans of a manifest into shards under ``out_dir``.

    Args:
      manifest: CSV path or a Manifest (e.g. from ``releases.build_manifest``).
      out_dir: output folder (created); a rerun on the same folder resumes.
      config: ``scans.config.PreprocessConfig`` (defaults if None).
      workers: worker processes (1 = in this process).
      on_error: ``fail`` raises ConversionError after the running subjects
        finish and no shard is written; ``skip`` leaves failed subjects out.
        Either way failures go to ``errors.csv`` (subject, file, problem).
      num_shards: shards per split (fewer if the split has fewer subjects).
      shard_job: (I, N): only the shards k with ``k % N == I``.
      split_counts / split_fractions / split_seed: split of subjects that have
        none in the manifest (see ``manifest.assign_splits``, which also
        explains ``allow_large_last_split``).
      synthetic: mark the data set synthetic (default: from the manifest).
      progress: show progress bars.
      overwrite: replace a conversion with other parameters in ``out_dir``
        (otherwise refused, see ``outdir.claim``).
      context_slices: 1 stores each slice's two axial neighbours with it (2.5-D input,
        training's ``--slice_context``; an edge slice repeats itself), 0 does not.

    Returns:
      The dataset.json record (``complete`` is false for a partial job).

    Raises:
      manifest.ManifestError: unusable manifest or missing files (all listed).
      ConversionError: a subject failed and ``on_error='fail'``.
      outdir.OutDirError: ``out_dir`` unusable, or other parameters without ``overwrite``.
      tl_common.lock.LockError: another conversion is writing into ``out_dir``.
      workers.Stopped: SIGTERM / SIGINT (workers killed, temporary files removed).
    """
    if on_error not in ON_ERROR:
        raise FlagError(f"on_error must be one of {ON_ERROR}, got '{on_error}'")
    if context_slices not in (0, 1):
        raise FlagError(f"--context_slices must be 0 or 1, got {context_slices}")
    config = config if config is not None else PreprocessConfig()
    if isinstance(manifest, str):
        manifest = mf.read_manifest(manifest, check=True)
    else:
        mf.validate(manifest, check_files=True)
    manifest = mf.assign_splits(manifest, counts=split_counts, fractions=split_fractions,
                                seed=split_seed, allow_large_last_split=allow_large_last_split)
    if synthetic is not None:
        manifest = dataclasses.replace(manifest, synthetic=bool(synthetic))
    for warning in mf.check_split_leaks(manifest):
        print(warning, file=sys.stderr, flush=True)
    out_dir = os.path.abspath(out_dir)
    outdir.refuse_input_overlap(out_dir, manifest)
    config_dict = config.to_dict()
    params = {"manifest": manifest.source, "preprocessing": config_dict, "workers": workers,
              "on_error": on_error, "num_shards": num_shards, "shard_job": shard_job,
              "split_counts": split_counts, "split_fractions": split_fractions,
              "split_seed": split_seed, "context_slices": context_slices}
    try:
        with outdir.claim(out_dir, params, shard_job=shard_job, overwrite=overwrite):
            # Recorded first, so a concurrent or later run compares against it.
            record_run(out_dir, params, seed=split_seed, name=outdir.RECORD_NAME)
            return _convert_locked(manifest, out_dir, config, params, workers=workers,
                                   on_error=on_error, num_shards=num_shards,
                                   shard_job=shard_job, progress=progress)
    except OSError as e:
        if e.filename is None and e.errno in subject_cache.OUTPUT_ERRNOS:
            # A write that did not name its file (e.g. in a library): name the folder.
            raise OSError(e.errno, e.strerror, out_dir) from None
        raise


def _convert_locked(manifest, out_dir, config, params, *, workers, on_error, num_shards,
                    shard_job, progress) -> dict:
    """``convert`` once ``out_dir`` is claimed (see there)."""
    config_dict = params["preprocessing"]
    info = class_info(config)
    plans = assemble.plan_shards(manifest, num_shards)
    mine = [p for p in plans if assemble.in_job(p, shard_job)]
    by_id = {s.subject_id: s for s in manifest.subjects}
    fps = {sid: subject_cache.fingerprint(config_dict, by_id[sid].files())
           for p in mine for sid in p.subjects}
    todo = [subject_cache.SubjectJob(sid, by_id[sid].image, by_id[sid].label_dict(config.mask_mode),
                               config_dict,
                               out_dir, fps[sid])
            for p in mine for sid in p.subjects
            if not subject_cache.is_complete(out_dir, sid, fps[sid])]
    context = params["context_slices"]
    errors = _process(out_dir, todo, mine, fps, info, workers=workers, on_error=on_error,
                      shard_job=shard_job, progress=progress, context_slices=context)
    if shard_job is None:
        assemble.remove_stale_shards(out_dir, plans)
    return assemble.write_metadata(out_dir, manifest, plans, info, preprocessing=config_dict,
                                   image_size=int(config.slice_size), errors=errors,
                                   tool_version=TOOL_VERSION, context_slices=context)
