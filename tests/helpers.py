"""Helpers of the tests, in one module: tiny synthetic shard data sets and MNI cohorts,
stand-in scans, Dice, tiny exported models, CLIs run in a subprocess (optionally in a
private mount namespace), and the flags each CLI defines.

Beside it: ``model_harness.py`` (the checks every network passes), ``taskonomy_reference.py``
(TF1 checkpoints with Taskonomy names and an independent reference forward pass) and
``train_driver.py`` (a script, not a module to import: tests run it in a subprocess they
can SIGKILL at a chosen point of training).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tfrecords_tools import schema
from tfrecords_tools.shards import writer as shards


def make_tiny_dataset(out_dir, *, size=32, channels=1, splits=None, slices_per_subject=3,
                      num_mask_classes=2, num_tissue_classes=4, num_presence=16, seed=0,
                      num_shards=2):
    """Write a small data set whose labels are simple functions of the image.

    The image holds a bright disc per slice; ``tissue`` bins intensity into
    classes, ``mask`` marks the disc, ``presence`` is a deterministic pattern.
    Returns the dataset.json record.
    """
    rng = np.random.default_rng(seed)
    splits = splits or {"train": 4, "val": 2, "test": 2}
    meta = {"image_size": [size, size], "channels": channels,
            "num_mask_classes": num_mask_classes, "num_tissue_classes": num_tissue_classes,
            "mask_classes": [f"class{i}" for i in range(num_mask_classes)],
            "tissue_classes": [f"tissue{i}" for i in range(num_tissue_classes)],
            "presence_labels": [f"label{i}" for i in range(num_presence)],
            "splits": {}, "synthetic": True, "preprocessing": {"kind": "tiny-test"}}
    yy, xx = np.mgrid[:size, :size]
    for split, n_subj in splits.items():
        records = []
        subjects = [f"{split}{i:03d}" for i in range(n_subj)]
        for s in subjects:
            for k in range(slices_per_subject):
                cy, cx = rng.uniform(size * 0.3, size * 0.7, 2)
                r = rng.uniform(size * 0.1, size * 0.25)
                disc = (yy - cy) ** 2 + (xx - cx) ** 2 < r ** 2
                img = 0.2 + 0.1 * rng.random((size, size)) + 0.6 * disc
                img = np.clip(img, 0, 1)
                if channels == 3:
                    img = np.stack([img, img * 0.9, img * 0.8], -1)
                grey = img if img.ndim == 2 else img[..., 0]
                tissue = np.minimum((grey * num_tissue_classes).astype(int),
                                    num_tissue_classes - 1)
                mask = (disc.astype(int) * (1 + (k % (num_mask_classes - 1))))
                presence = ((np.arange(num_presence) + k) % 3 == 0).astype(float)
                records.append(schema.make_example(
                    subject_id=s, slice_index=k, image=img, mask=mask,
                    num_mask_classes=num_mask_classes, tissue=tissue,
                    num_tissue_classes=num_tissue_classes, presence=presence))
        n = min(num_shards, len(records))
        for i in range(n):
            shards.write_shard(os.path.join(out_dir, schema.shard_name(split, i, n)),
                               records[i::n])
        meta["splits"][split] = {"subjects": subjects, "slices": len(records), "shards": n}
    return shards.write_dataset_json(out_dir, meta)


def _mount_works() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
                           capture_output=True)
    return probe.returncode == 0


# Full and read-only disks are real mounts in a private mount namespace (a tiny
# tmpfs, a read-only bind mount); where that is not permitted the tests skip.
needs_mount = pytest.mark.skipif(not _mount_works(),
                                 reason="needs unshare -m and mount (a private mount namespace)")


def in_mount_namespace(mount_cmd: str) -> list:
    """Command prefix: run the rest in a private mount namespace after ``mount_cmd``,
    e.g. ``mount -t tmpfs -o size=64k tmpfs DIR`` (disk full) or
    ``mount --bind -o ro DIR DIR`` (read-only)."""
    return ["unshare", "-m", "sh", "-c", f'{mount_cmd} && exec "$@"', "sh"]


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_module(module: str, args, prefix=(), timeout: int = 600):
    """``python -m module *args`` from the repository root with its code first on the
    path, optionally behind ``prefix`` (e.g. :func:`in_mount_namespace`)."""
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([*prefix, sys.executable, "-m", module, *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT, env=env)


def read_only_error_lines(module: str, args, ro_dir) -> list:
    """Run CLI ``module`` with ``ro_dir`` mounted read-only; check it exits 1 without a
    traceback and return its ``error:`` lines."""
    proc = run_module(module, args, prefix=in_mount_namespace(
        f"mount --bind -o ro {ro_dir} {ro_dir}"))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    return [line for line in proc.stderr.splitlines() if "error:" in line]


def make_lesion_dataset(out_dir, *, size=32, splits=None, slices_per_subject=4, seed=0):
    """A 1-channel cohort of small dark 'lesions' at random places in a textured 'brain'.

    Each slice: an ellipse of intensity ~0.6 with noise (sd 0.08) on a black
    background; with probability 3/4 one or two lesions (radius 1.5-3 px,
    intensity ~0.35) anywhere inside it. Lesions cover ~1-2 % of the pixels and
    have no fixed location, so a location prior cannot segment them.
    Returns the dataset.json record.
    """
    rng = np.random.default_rng(seed)
    splits = splits or {"train": 16, "val": 2, "test": 3}
    meta = {"image_size": [size, size], "channels": 1, "num_mask_classes": 2,
            "num_tissue_classes": 2, "mask_classes": ["background", "lesion"],
            "tissue_classes": ["background", "brain"], "presence_labels": ["brain"],
            "splits": {}, "synthetic": True, "preprocessing": {"kind": "lesion-test"}}
    yy, xx = np.mgrid[:size, :size]
    c = size / 2
    brain = ((yy - c) / (0.42 * size)) ** 2 + ((xx - c) / (0.36 * size)) ** 2 < 1
    inside = np.argwhere(((yy - c) / (0.32 * size)) ** 2 + ((xx - c) / (0.26 * size)) ** 2 < 1)
    for split, n_subj in splits.items():
        records, subjects = [], [f"{split}{i:03d}" for i in range(n_subj)]
        for s in subjects:
            for k in range(slices_per_subject):
                mask = np.zeros((size, size), int)
                for _ in range(rng.choice([0, 1, 1, 2])):
                    cy, cx = inside[rng.integers(len(inside))]
                    r = rng.uniform(1.5, 3.0)
                    mask[(yy - cy) ** 2 + (xx - cx) ** 2 <= r ** 2] = 1
                img = brain * (0.6 + 0.08 * rng.standard_normal((size, size)))
                img = np.clip(np.where(mask > 0, img - 0.25, img), 0, 1)
                records.append(schema.make_example(
                    subject_id=s, slice_index=k, image=img, mask=mask, num_mask_classes=2,
                    tissue=brain.astype(int), num_tissue_classes=2,
                    presence=np.ones(1)))
        for i in range(2):
            shards.write_shard(os.path.join(out_dir, schema.shard_name(split, i, 2)),
                               records[i::2])
        meta["splits"][split] = {"subjects": subjects, "slices": len(records), "shards": 2}
    return shards.write_dataset_json(out_dir, meta)


def dice(a, b) -> float:
    """Dice overlap of two boolean arrays (0 when both are empty)."""
    return 2 * np.count_nonzero(a & b) / max(np.count_nonzero(a) + np.count_nonzero(b), 1)


def touch_nifti(root, *paths) -> None:
    """Create stand-in scans ``root/path`` (gzip magic only: layout builders read names)."""
    for rel in paths:
        path = os.path.join(str(root), rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(b"\x1f\x8b")


MNI_TEST_RES = 4  # mm: template grid 50 x 59 x 48, slices padded to 64


def mni_cohort_config(**kw):
    """Pre-processing of :func:`make_mni_cohort` scans (already in MNI space, cropped)."""
    from tfrecords_tools.scans.config import PreprocessConfig
    return PreprocessConfig.for_resolution(MNI_TEST_RES, skip_registration=True, crop_top=80,
                                           crop_bottom=60, **kw)


def make_mni_cohort(folder, n=4, seed=0, nan_subject=None):
    """n subjects on the 4 mm MNI grid: template * random gain + noise, a lesion ball each."""
    # Imported here: ``cli_flags`` runs this module in a fresh process, which starts faster.
    import nibabel as nib
    import pandas as pd
    from tfrecords_tools.scans import registration as reg
    tpl = reg.template_image(MNI_TEST_RES)
    # Template intensities are in [0, 1]: scale them so the noise (sd 2) stays noise and
    # the scans pass the template-correlation check (tfrecords_tools.checks).
    data = np.asarray(tpl.dataobj, np.float32) * 1000
    rng = np.random.default_rng(seed)
    grid = np.indices(data.shape)
    rows = []
    os.makedirs(folder, exist_ok=True)
    for i in range(n):
        sid = f"sub{i:02d}"
        img = data * rng.uniform(0.8, 1.2) + rng.normal(0, 2, data.shape).astype(np.float32)
        if sid == nan_subject:
            img[10, 10, 10] = np.nan
        centre = np.array([25, 30, 24]) + rng.integers(-4, 5, 3)
        lesion = (((grid - centre[:, None, None, None]) ** 2).sum(0) < 9).astype(np.uint8)
        nib.save(nib.Nifti1Image(img, tpl.affine), os.path.join(folder, f"{sid}_t1.nii.gz"))
        labels = []
        for part, sl in enumerate((slice(None, centre[2]), slice(centre[2], None))):
            half = np.zeros_like(lesion)
            half[:, :, sl] = lesion[:, :, sl]
            name = f"{sid}_lesion{part}.nii.gz"
            nib.save(nib.Nifti1Image(half, tpl.affine), os.path.join(folder, name))
            labels.append(name)
        rows.append({"subject_id": sid, "image": f"{sid}_t1.nii.gz", "label": ";".join(labels),
                     "split": "train" if i < n - 1 else "test", "synthetic": "true"})
    path = os.path.join(folder, "manifest.csv")
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


# Tiny exported models with known behaviour (evaluation, prediction, report tests).

def threshold_model(num_classes: int = 2, size: int = 32, channels: int = 3,
                    bias: float = 0.0):
    """A 1x1 conv predicting class 1 where the [-1, 1] input sums above ``-bias``.

    On ``make_tiny_dataset`` images the bright disc (the mask) is positive and
    the background negative, so with ``bias=0`` the prediction is the disc
    exactly; a positive bias adds false positives in the noisy background.
    """
    import keras
    inp = keras.Input((size, size, channels))
    conv = keras.layers.Conv2D(num_classes, 1, name="logits")
    out = conv(inp)
    kernel = np.zeros((1, 1, channels, num_classes), np.float32)
    kernel[0, 0, :, 1] = 1.0
    bias_vector = np.zeros(num_classes, np.float32)
    bias_vector[1] = bias
    conv.set_weights([kernel, bias_vector])
    return keras.Model(inp, out)


def dataset_json(size: int = 32, **fields) -> dict:
    """A complete ``dataset.json`` object of a grey two-class data set (one training
    subject), with ``fields`` replacing its keys."""
    return {"image_size": [size, size], "channels": 1, "num_mask_classes": 2,
            "num_tissue_classes": 4,
            "splits": {"train": {"subjects": ["train000"], "slices": 3, "shards": 1}},
            **fields}


def export_threshold_model(model_dir, num_classes=2, size=32, dataset_meta=None, bias=0.0,
                           **meta):
    """Save :func:`threshold_model` with export metadata; returns the meta.
    ``dataset_meta``: keys of the embedded ``dataset.json`` (:func:`dataset_json`)."""
    from tl_keras.models.export import save_exported
    full = {"image_size": [size, size], "input_channels": 3, "num_classes": num_classes,
            "class_names": ["background"] + [f"lesion{i}" for i in range(1, num_classes)],
            "target": "stroke", "source_task": "segmentation", "source_domain": "t1",
            "init": "runs/pretrain/encoder.weights.h5", "train_subjects": ["train000"],
            "subset_seed": 3, "seed": 7,
            "dataset_meta": dataset_json(size, **dataset_meta) if dataset_meta else None}
    full.update(meta)
    save_exported(threshold_model(num_classes, size, bias=bias), str(model_dir), full)
    return full


def cli_flags(module_names) -> dict:
    """The flags each CLI module defines: ``{module: sorted flag names}``, absl's own
    (``--flagfile``, ``--helpfull``, ``-v`` ...) left out.

    Read from absl's ``FlagValues`` after importing the module and calling its
    ``define_flags`` (if any): module-level private ``FlagValues`` and whatever the
    module added to the global ``FLAGS``. Global flags are removed again after each
    module, because CLIs run in separate processes and may reuse names (``--seed``).
    Run this in a fresh process (:func:`run_module` on ``tests.helpers``): an
    already-imported module would define nothing.
    """
    import importlib
    import inspect

    from absl import app, flags, logging  # noqa: F401  absl's flags exist before the snapshot

    def own(flag_values, names=None):
        return {flag.name for module, found in flag_values.flags_by_module_dict().items()
                if not module.startswith("absl") for flag in found
                if names is None or flag.name in names}

    app.define_help_flags()
    out = {}
    for name in module_names:
        before = set(flags.FLAGS)
        module = importlib.import_module(name)
        found = set()
        define = getattr(module, "define_flags", None)
        if define is not None and inspect.signature(define).parameters:
            private = flags.FlagValues()
            define(private)
            found |= own(private)
        elif define is not None:
            define()
        for value in vars(module).values():
            if isinstance(value, flags.FlagValues) and value is not flags.FLAGS:
                found |= own(value)
        new = set(flags.FLAGS) - before
        found |= own(flags.FLAGS, new)
        for flag_name in new:
            delattr(flags.FLAGS, flag_name)
        out[name] = sorted(found)
    return out


if __name__ == "__main__":
    # python -m tests.helpers cli_flags MODULE... : the flags as JSON, for a fresh process.
    import json
    if sys.argv[1:2] == ["cli_flags"]:
        print(json.dumps(cli_flags(sys.argv[2:])))


def save_hub_presets(root: str) -> dict:
    """Tiny keras-hub backbones (random, seeded) saved as presets under ``root``:
    ``resnet`` (basic blocks, /32, with an image converter using ImageNet's mean and std),
    ``efficientnet`` (five one-block stacks, /32) and ``vgg`` (no pyramid outputs)."""
    import keras
    import keras_hub
    keras.utils.set_random_seed(0)
    backbones = {
        "resnet": keras_hub.models.ResNetBackbone(
            input_conv_filters=[64], input_conv_kernel_sizes=[7],
            stackwise_num_filters=[64, 8, 8, 8], stackwise_num_blocks=[1, 1, 1, 1],
            stackwise_num_strides=[1, 2, 2, 2], block_type="basic_block"),
        "efficientnet": keras_hub.models.EfficientNetBackbone(
            stackwise_width_coefficients=[1.0] * 5, stackwise_depth_coefficients=[1.0] * 5,
            stackwise_kernel_sizes=[3] * 5, stackwise_num_repeats=[1] * 5,
            stackwise_input_filters=[8, 8, 8, 16, 16],
            stackwise_output_filters=[8, 8, 16, 16, 16],
            stackwise_expansion_ratios=[1, 2, 2, 2, 2],
            stackwise_squeeze_and_excite_ratios=[0.25] * 5,
            # num_features keeps its default (1280): keras-hub 0.32 does not save it.
            stackwise_strides=[1, 2, 2, 2, 2], stackwise_block_types=["v1"] * 5),
        "vgg": keras_hub.models.VGGBackbone(
            stackwise_num_repeats=[1, 1], stackwise_num_filters=[4, 8],
            image_shape=(None, None, 3)),
    }
    out = {}
    for name, backbone in backbones.items():
        # Non-trivial batch-norm statistics, so that loading them is visible in outputs.
        for w in backbone.weights:
            if w.path.endswith(("moving_mean", "moving_variance")):
                w.assign(np.random.default_rng(len(w.path)).uniform(0.5, 1.5, w.shape))
        out[name] = os.path.join(root, name)
        backbone.save_to_preset(out[name])
    keras_hub.layers.ResNetImageConverter(
        scale=[1 / (255 * s) for s in (0.229, 0.224, 0.225)],
        offset=[-m / s for m, s in ((0.485, 0.229), (0.456, 0.224), (0.406, 0.225))],
    ).save_to_preset(out["resnet"])
    return out
