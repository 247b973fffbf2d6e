"""Convert NIfTI scans listed in a manifest into TFRecord slice shards (the CLI).

    python -m tfrecords_tools.convert --manifest M.csv --out_dir D [--workers 2]
    python -m tfrecords_tools.convert --preset atlas_r12 --root /data/ATLAS_R1.2 --out_dir D

The library is ``tfrecords_tools.conversion.pipeline.convert`` (docs/conversion.md).
"""
from __future__ import annotations

import dataclasses
import sys
from typing import Mapping

from absl import flags

from tfrecords_tools.conversion.pipeline import ON_ERROR, convert, parse_shard_job
from tfrecords_tools.manifests import manifest as mf, releases
from tfrecords_tools.scans import labels
from tfrecords_tools.scans.config import PreprocessConfig
from tl_common import cli


@dataclasses.dataclass(frozen=True)
class ConvertFlags:
    """The parsed command line (see ``define_flags``)."""
    manifest: str
    preset: str
    root: str
    image_glob: str
    label_glob: str
    subject_regex: str
    patient_regex: str
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
    context_slices: bool
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
                    "--root; group 'subject' is the id (default: the preset's naming, else "
                    "the file name).", **fv)
    f.DEFINE_string("patient_regex", "", "glob preset: regex on the image path relative to "
                    "--root; group 'patient' (or the first) is the patient id, which keeps a "
                    "patient's scans in one split (default: the preset's rule, else one "
                    "patient per scan).", **fv)
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
    f.DEFINE_boolean("context_slices", False, "Also store each slice's two axial neighbours "
                     "(2.5-D input for training's --slice_context; an edge slice repeats "
                     "itself).", **fv)
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
    known = {f.name for f in dataclasses.fields(PreprocessConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise cli.FlagError(f"PreprocessConfig has no parameter(s) {unknown}")
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
        raise cli.FlagError("give exactly one of --manifest or --root (with --preset)")
    if flags_cfg.root and not flags_cfg.preset:
        raise cli.FlagError("--root needs --preset (e.g. atlas_r12 or glob)")
    if flags_cfg.manifest:
        manifest = mf.read_manifest(flags_cfg.manifest)
    else:
        manifest = releases.build_manifest(flags_cfg.preset, flags_cfg.root,
                                           image_glob=flags_cfg.image_glob,
                                           label_glob=flags_cfg.label_glob,
                                           subject_regex=flags_cfg.subject_regex,
                                           patient_regex=flags_cfg.patient_regex)
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
                   overwrite=flags_cfg.overwrite,
                   context_slices=int(bool(flags_cfg.context_slices)))


def run(f: flags.FlagValues, args) -> None:
    """Convert as the flags say; print the split counts and the state."""
    meta = run_flags(flags_to_config(f))
    counts = ", ".join(f"{k}: {v.slices} slices / {len(v.subjects)} subjects"
                       for k, v in sorted(meta.splits.items()))
    if meta.errors:
        state = f"{meta.errors} subject(s) skipped, see errors*.csv"
    elif meta.complete:
        state = "complete"
    else:
        state = "partial (run once more without --shard_job to finish)"
    print(f"convert: {f.out_dir}: {counts}; {state}")


FLAGS = cli.private_flags(define_flags, required=("out_dir",))
# tensorflow=True: load TensorFlow quietly before the shards are written (its start-up lines).
main = cli.make_main("convert", FLAGS, __doc__, run, tensorflow=True)

if __name__ == "__main__":
    sys.exit(main())
