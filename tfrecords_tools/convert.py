"""Convert NIfTI scans listed in a manifest into TFRecord slice shards.

Library: ``convert(manifest, out_dir, config, ...)``. CLI::

    python -m tfrecords_tools.convert --manifest M.csv --out_dir D [--workers 2]
    python -m tfrecords_tools.convert --preset atlas_r12 --root /data/ATLAS_R1.2 --out_dir D

Stages: (1) read and check the manifest (every missing file reported at
once), assign splits, claim ``out_dir`` (lock, parameter check, temp debris:
``outdir``); (2) pre-process each subject not yet cached in a
worker process (spawned, so TensorFlow is never forked) and cache it under
``out_dir/subjects``; (3) write the shards whose subjects are all done, each
atomically; (4) rewrite ``dataset.json`` and ``subjects.csv`` from the shards
present. Every stage skips work already complete, so a rerun resumes; a
damaged shard (SHA-256) is re-created. Workers die with this process, and
SIGTERM / SIGINT stop it cleanly (``workers``).
"""
from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import os
import sys
from typing import Callable, Iterable, Mapping

from absl import flags
from tqdm import tqdm

from tfrecords_tools import (assemble, labels, manifest as mf, outdir, releases, subject_cache,
                             workers as workers_lib)
from tl_common import cli
from tl_common.cli import UserError
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
        raise ValueError(f"--shard_job must look like I/N (e.g. 0/4), got '{spec}'") from None
    if not 0 <= i < n:
        raise ValueError(f"--shard_job {spec}: need 0 <= I < N")
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
    out_dir, plan, subjects, fingerprints, info = args
    return assemble.write_planned_shard(out_dir, plan, subjects, fingerprints, info)


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


def _shard_tasks(out_dir, plans, fps, info, failed) -> list[tuple]:
    """Shards of ``plans`` whose content changed, that are missing or damaged (checksum),
    minus failed subjects. A damaged shard is named on stderr and re-created."""
    tasks = []
    for p in plans:
        subjects = [s for s in p.subjects if s not in failed]
        state = assemble.shard_state(out_dir, p, subjects, fps)
        if state == "damaged":
            print(f"convert: {os.path.join(out_dir, p.name)}: damaged (size or SHA-256 differs "
                  "from when it was written); re-creating it", file=sys.stderr, flush=True)
        if state != "current":
            tasks.append((out_dir, p, subjects, fps, info))
    return tasks


def _process(out_dir, todo, mine, fps, info, *, workers, on_error, shard_job,
             progress) -> list[dict]:
    """Pre-process ``todo`` and write the shards of ``mine``; returns the errors.

    On SIGTERM / SIGINT (``workers.Stopped``) or any failure the workers are
    killed at once and this run's temporary files removed before re-raising.
    """
    pool = workers_lib.make_pool(min(workers, len(todo)) if todo else 1)
    try:
        with workers_lib.stop_on_signals():
            results = _run(subject_cache.run_task, sorted(todo, key=lambda t: t.subject_id),
                           pool, desc="pre-processing", unit="scan", progress=progress,
                           stop=lambda r: on_error == "fail" and r["status"] == "error")
            errors = _finish_errors(out_dir, results, shard_job, on_error)
            shard_tasks = _shard_tasks(out_dir, mine, fps, info, {e["subject"] for e in errors})
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
            overwrite: bool = False) -> dict:
    """Convert the scans of a manifest into shards under ``out_dir``.

    Args:
      manifest: CSV path or a Manifest (e.g. from ``releases.build_manifest``).
      out_dir: output folder (created); a rerun on the same folder resumes.
      config: ``preprocess.PreprocessConfig`` (defaults if None).
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

    Returns:
      The dataset.json contents (``complete`` is false for a partial job).

    Raises:
      manifest.ManifestError: unusable manifest or missing files (all listed).
      ConversionError: a subject failed and ``on_error='fail'``.
      outdir.OutDirError: ``out_dir`` unusable, or other parameters without ``overwrite``.
      tl_common.lock.LockError: another conversion is writing into ``out_dir``.
      workers.Stopped: SIGTERM / SIGINT (workers killed, temporary files removed).
    """
    from tfrecords_tools.preprocess import PreprocessConfig
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {ON_ERROR}, got '{on_error}'")
    config = config if config is not None else PreprocessConfig()
    if isinstance(manifest, str):
        manifest = mf.read_manifest(manifest, check=True)
    else:
        mf.validate(manifest, check_files=True)
    manifest = mf.assign_splits(manifest, counts=split_counts, fractions=split_fractions,
                                seed=split_seed, allow_large_last_split=allow_large_last_split)
    if synthetic is not None:
        manifest = dataclasses.replace(manifest, synthetic=bool(synthetic))
    out_dir = os.path.abspath(out_dir)
    config_dict = config.to_dict()
    params = {"manifest": manifest.source, "preprocessing": config_dict, "workers": workers,
              "on_error": on_error, "num_shards": num_shards, "shard_job": shard_job,
              "split_counts": split_counts, "split_fractions": split_fractions,
              "split_seed": split_seed}
    with outdir.claim(out_dir, params, shard_job=shard_job, overwrite=overwrite):
        # Recorded first, so a concurrent or later run compares against it.
        record_run(out_dir, params, seed=split_seed, name=outdir.RECORD_NAME)
        return _convert_locked(manifest, out_dir, config, params, workers=workers,
                               on_error=on_error, num_shards=num_shards, shard_job=shard_job,
                               progress=progress)


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
    todo = [subject_cache.Task(sid, by_id[sid].image, by_id[sid].label_dict(config.mask_mode),
                               config_dict,
                               out_dir, fps[sid])
            for p in mine for sid in p.subjects
            if not subject_cache.is_complete(out_dir, sid, fps[sid])]
    errors = _process(out_dir, todo, mine, fps, info, workers=workers, on_error=on_error,
                      shard_job=shard_job, progress=progress)
    if shard_job is None:
        assemble.remove_stale_shards(out_dir, plans)
    return assemble.write_metadata(out_dir, manifest, plans, info, preprocessing=config_dict,
                                   image_size=int(config.slice_size), errors=errors,
                                   tool_version=TOOL_VERSION)


# ----------------------------------------------------------------------------- CLI


@dataclasses.dataclass(frozen=True)
class ConvertFlags:
    """The parsed command line (see ``define_flags``)."""
    manifest: str
    preset: str
    root: str
    image_glob: str
    label_glob: str
    subject_regex: str
    out_dir: str
    workers: int
    on_error: str
    num_shards: int
    shard_job: str
    splits: str
    split_seed: int
    subjects_csv: str
    allow_large_last_split: bool
    synthetic: bool | None
    progress: bool
    overwrite: bool
    write_manifest: str
    preprocess: Mapping[str, object]


# Flags forwarded to PreprocessConfig when given (None = preset / config default).
_PREPROCESS_FLAGS = ("resolution", "slice_size", "crop_top", "crop_bottom",
                     "clip_percentiles", "skip_registration", "mask_mode", "label_mapping")


def define_flags(flag_values: flags.FlagValues) -> None:
    """Define the absl flags of the CLI on ``flag_values``."""
    fv = {"flag_values": flag_values}
    f = flags
    f.DEFINE_string("manifest", "", "CSV manifest subject_id,image[,label,split,tissue,"
                    "structures,brain,anatomy,synthetic]; several files per cell with ';'.", **fv)
    f.DEFINE_string("preset", "", f"Data-set preset: {sorted(releases.PRESETS)}. Sets cropping, "
                    "registration and split defaults; with --root builds the manifest "
                    "from the published layout.", **fv)
    f.DEFINE_string("root", "", "Data root for a preset layout (instead of --manifest).", **fv)
    f.DEFINE_string("image_glob", "", "glob preset: image pattern under --root (** allowed).", **fv)
    f.DEFINE_string("label_glob", "", "glob preset: label pattern; {subject} = subject id.", **fv)
    f.DEFINE_string("subject_regex", "", "glob preset: regex on the image path relative to "
                    "--root; group 'subject' is the id (default: file name).", **fv)
    f.DEFINE_string("out_dir", None, "Output folder (shards, dataset.json, subjects.csv).", **fv)
    f.DEFINE_integer("workers", 1, "Worker processes.", **fv)
    f.DEFINE_enum("on_error", "fail", list(ON_ERROR), "Bad subject: stop (fail) or leave it "
                  "out and go on (skip); both write errors.csv.", **fv)
    f.DEFINE_integer("num_shards", 4, "Shards per split (at most one per subject).", **fv)
    f.DEFINE_string("shard_job", "", "I/N: process only shards k with k % N == I.", **fv)
    f.DEFINE_string("splits", "", "Split of subjects without one: counts 'train=200,test=104' "
                    "or fractions 'train=0.8,val=0.1,test=0.1' "
                    "(default: preset, else 0.8/0.1/0.1).", **fv)
    f.DEFINE_integer("split_seed", 0, "Seed of the random split.", **fv)
    f.DEFINE_string("subjects_csv", "", "Convert only the subjects listed in this CSV "
                    "(column subject_id, optional split), e.g. the 870 BAHC scans.", **fv)
    f.DEFINE_boolean("allow_large_last_split", False, "Accept a last split (from counts) more "
                     "than 10% larger than its count, e.g. all remaining scans as test.", **fv)
    f.DEFINE_boolean("synthetic", None, "Mark the data set synthetic (default: from manifest).",
                     **fv)
    f.DEFINE_boolean("progress", True, "Show progress bars.", **fv)
    f.DEFINE_boolean("overwrite", False, "Replace a conversion with other parameters in "
                     "--out_dir (otherwise refused).", **fv)
    f.DEFINE_string("write_manifest", "", "Also save the (preset-built) manifest to this CSV.",
                    **fv)
    f.DEFINE_float("resolution", None, "Template grid in mm (1.0 = 197x233x189).", **fv)
    f.DEFINE_integer("slice_size", None, "Axial slices zero-padded to this size (256).", **fv)
    f.DEFINE_integer("crop_top", None, "Axial slices dropped from the top (preset default).", **fv)
    f.DEFINE_integer("crop_bottom", None, "Axial slices dropped from the bottom (preset default).",
                     **fv)
    f.DEFINE_list("clip_percentiles", None, "Intensity clip percentiles, e.g. 1,99.", **fv)
    f.DEFINE_boolean("skip_registration", None, "Data already in MNI space (preset default).", **fv)
    f.DEFINE_enum("mask_mode", None, ["binary", "multiclass"], "Target mask: binary lesion "
                  "union, or classes via --label_mapping.", **fv)
    f.DEFINE_string("label_mapping", None, "CSV label,class[,name] for multiclass masks.", **fv)


def flags_to_config(values) -> ConvertFlags:
    """Freeze parsed absl flag values into a ConvertFlags."""
    pre = {k: getattr(values, k) for k in _PREPROCESS_FLAGS if getattr(values, k) is not None}
    if "clip_percentiles" in pre:
        pre["clip_percentiles"] = tuple(float(v) for v in pre["clip_percentiles"])
    names = [f.name for f in dataclasses.fields(ConvertFlags) if f.name != "preprocess"]
    return ConvertFlags(**{n: getattr(values, n) for n in names}, preprocess=pre)


def preprocess_config(preset: releases.Preset, overrides: Mapping[str, object]):
    """PreprocessConfig from the preset's defaults and the flags given explicitly.

    ``label_mapping`` is a CSV path here (read into the mapping and class
    names); ``slice_size`` defaults to the smallest multiple of 32 holding the
    template slice at ``resolution`` (256 at 1 mm).
    """
    from tfrecords_tools.preprocess import PreprocessConfig
    known = {f.name for f in dataclasses.fields(PreprocessConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"PreprocessConfig has no parameter(s) {unknown}")
    values = {"crop_top": preset.crop_top, "crop_bottom": preset.crop_bottom,
              "skip_registration": preset.skip_registration, "mask_mode": preset.mask_mode}
    if preset.label_mapping:
        values["label_mapping"] = preset.label_mapping
    values.update(overrides)
    if values.get("label_mapping"):
        values["label_mapping"], values["mask_class_names"] = \
            labels.read_label_mapping(values["label_mapping"])
    resolution = float(values.pop("resolution", 1.0))
    # nilearn's template loader takes an int resolution: keep whole numbers integral.
    resolution = int(resolution) if resolution.is_integer() else resolution
    return PreprocessConfig.for_resolution(resolution, **values)


def run_flags(flags_cfg: ConvertFlags) -> dict:
    """Run a conversion described by ConvertFlags (the CLI minus parsing).

    The manifest is read and every file checked before anything else.
    """
    preset = releases.get_preset(flags_cfg.preset) if flags_cfg.preset else releases.Preset()
    if bool(flags_cfg.manifest) == bool(flags_cfg.root):
        raise ValueError("give exactly one of --manifest or --root (with --preset)")
    if flags_cfg.root and not flags_cfg.preset:
        raise ValueError("--root needs --preset (e.g. atlas_r12 or glob)")
    if flags_cfg.manifest:
        manifest = mf.read_manifest(flags_cfg.manifest)
    else:
        manifest = releases.build_manifest(flags_cfg.preset, flags_cfg.root,
                                           image_glob=flags_cfg.image_glob,
                                           label_glob=flags_cfg.label_glob,
                                           subject_regex=flags_cfg.subject_regex)
    if flags_cfg.subjects_csv:
        manifest = mf.select_subjects(manifest, flags_cfg.subjects_csv)
    config = preprocess_config(preset, flags_cfg.preprocess)
    counts, fractions = mf.parse_split_spec(flags_cfg.splits)
    if counts is None and fractions is None:
        counts, fractions = preset.split_counts, preset.split_fractions
    if flags_cfg.write_manifest:
        mf.write_manifest(mf.assign_splits(manifest, counts=counts, fractions=fractions,
                                           seed=flags_cfg.split_seed,
                                           allow_large_last_split=flags_cfg.allow_large_last_split),
                          flags_cfg.write_manifest)
    return convert(manifest, flags_cfg.out_dir, config, workers=flags_cfg.workers,
                   on_error=flags_cfg.on_error, num_shards=flags_cfg.num_shards,
                   shard_job=parse_shard_job(flags_cfg.shard_job), split_counts=counts,
                   split_fractions=fractions, split_seed=flags_cfg.split_seed,
                   allow_large_last_split=flags_cfg.allow_large_last_split,
                   synthetic=flags_cfg.synthetic, progress=flags_cfg.progress,
                   overwrite=flags_cfg.overwrite)


def run(f: flags.FlagValues, args) -> None:
    """Convert as the flags say; print the split counts and the state."""
    meta = run_flags(flags_to_config(f))
    counts = ", ".join(f"{k}: {v['slices']} slices / {len(v['subjects'])} subjects"
                       for k, v in sorted(meta["splits"].items()))
    if meta["errors"]:
        state = f"{meta['errors']} subject(s) skipped, see errors*.csv"
    elif meta["complete"]:
        state = "complete"
    else:
        state = "partial (run once more without --shard_job to finish)"
    print(f"convert: {f.out_dir}: {counts}; {state}")


FLAGS = flags.FlagValues()
define_flags(FLAGS)
flags.mark_flag_as_required("out_dir", flag_values=FLAGS)
main = cli.make_main("convert", FLAGS, __doc__, run)

if __name__ == "__main__":
    sys.exit(main())
