"""Input pipeline throughput: TFRecord shards vs reading NIfTI files each epoch.

Builds a small cohort of 1 mm MNI-space NIfTI scans with a lesion mask each
(template intensities with noise of 2 % of the maximum; SYNTHETIC), converts it with
``tfrecords_tools.convert`` (stroke cropping, 256 x 256 slices), then measures
in the same run:

- ``parse_batch``: shards -> ``schema.parse_fn`` (PNG decode of image, mask
  and tissue) -> batch -> prefetch; against ``nifti_slice_pad``: per epoch
  ``nibabel`` loads each scan and its mask (.nii.gz), takes the kept axial
  slices, zero-pads them to 256 x 256 and stacks batches;
- ``training_input``: ``tl_keras.data.build_dataset(..., task="target")``
  (adds [-1, 1] and grey x 3); against ``nifti_training_input``, which adds
  the percentile normalisation, [-1, 1] and x 3 to the baseline.

Slices per second after one warm-up epoch. Targets (issue 2): >= 500 slices/s
and >= 20x the baseline on 2 cores. Usage::

    python benchmarks/bench_input_pipeline.py --work_dir /tmp/bench_ip --subjects 4 --epochs 3
"""
from __future__ import annotations

import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

flags.DEFINE_string("work_dir", "/tmp/bench_input_pipeline", "Scratch folder (reused).")
flags.DEFINE_integer("subjects", 4, "Scans in the cohort.")
flags.DEFINE_integer("epochs", 3, "Timed epochs (after one warm-up epoch).")
flags.DEFINE_integer("batch_size", 32, "Batch size.")
flags.DEFINE_integer("workers", 2, "Conversion worker processes.")
flags.DEFINE_string("out_json", "", "Also write the figures to this JSON file.")
FLAGS = flags.FLAGS

CROP_TOP = 29  # stroke default (docs/method.md section 3)
SIZE = 256


def make_cohort(folder: str, n: int) -> str:
    """n scans on the 1 mm MNI grid with a lesion ball each; returns the manifest path."""
    import nibabel as nib
    import pandas as pd
    from tfrecords_tools.scans import registration as reg
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "manifest.csv")
    if os.path.exists(path):
        return path
    tpl = reg.template_image(1)
    data = np.asarray(tpl.dataobj, np.float32)
    rng = np.random.default_rng(0)
    grid = np.indices(data.shape, dtype=np.int16)
    rows = []
    for i in range(n):
        sid = f"bench{i:03d}"
        # Noise of 2 % of the template's maximum, as in the phantoms (the template is in
        # [0, 1]: a fixed standard deviation of 2 made these scans pure noise, which the
        # conversion's template-correlation check rightly refuses).
        noise = rng.normal(0, 0.02 * float(data.max()), data.shape).astype(np.float32)
        img = data * rng.uniform(0.8, 1.2) + noise
        centre = np.array([98, 116, 94]) + rng.integers(-20, 21, 3)
        lesion = (((grid - centre[:, None, None, None]) ** 2).sum(0) < 100).astype(np.uint8)
        nib.save(nib.Nifti1Image(img, tpl.affine), os.path.join(folder, f"{sid}_t1.nii.gz"))
        nib.save(nib.Nifti1Image(lesion, tpl.affine), os.path.join(folder, f"{sid}_les.nii.gz"))
        rows.append({"subject_id": sid, "image": f"{sid}_t1.nii.gz",
                     "label": f"{sid}_les.nii.gz", "split": "train", "synthetic": "true"})
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def nifti_epoch(manifest: str, batch_size: int, training_input: bool = False) -> int:
    """One epoch of the baseline; returns the number of slices produced.

    Reads each scan and mask with nibabel, takes the kept axial slices and
    zero-pads them to 256 x 256 in batches: image (B, S, S, 1) and mask. With
    ``training_input`` it also does what the shards already hold or the
    reader adds: percentile clip + min-max scaling, [-1, 1], grey x 3.
    """
    import nibabel as nib
    import pandas as pd
    base = os.path.dirname(manifest)
    slices = 0
    images, masks = [], []
    channels = 3 if training_input else 1
    for row in pd.read_csv(manifest).itertuples():
        img = np.asarray(nib.load(os.path.join(base, row.image)).get_fdata(), np.float32)
        lab = np.asarray(nib.load(os.path.join(base, row.label)).dataobj, np.uint8)
        x, y, z = img.shape
        if training_input:
            lo, hi = np.percentile(img[img != 0], (1, 99))
            img = (np.clip(img, lo, hi) - lo) / (hi - lo) * 2 - 1
        px, py = (SIZE - x) // 2, (SIZE - y) // 2
        for k in range(z - CROP_TOP):
            pad_i = np.zeros((SIZE, SIZE, channels), np.float32)
            pad_m = np.zeros((SIZE, SIZE), np.int32)
            pad_i[px:px + x, py:py + y, :] = img[:, :, k, None]
            pad_m[px:px + x, py:py + y] = lab[:, :, k]
            images.append(pad_i)
            masks.append(pad_m)
            if len(images) == batch_size:
                np.stack(images), np.stack(masks)
                slices += len(images)
                images, masks = [], []
    return slices + len(images)


def timed(fn, epochs: int) -> float:
    """Slices per second of ``fn`` (returns slices per epoch) after one warm-up call."""
    fn()
    start, total = time.perf_counter(), 0
    for _ in range(epochs):
        total += fn()
    return total / (time.perf_counter() - start)


def main(argv):
    del argv
    from tfrecords_tools.conversion import pipeline as cv
    from tfrecords_tools.scans.config import PreprocessConfig
    manifest = make_cohort(os.path.join(FLAGS.work_dir, "scans"), FLAGS.subjects)
    out = os.path.join(FLAGS.work_dir, "shards")
    config = PreprocessConfig(skip_registration=True, crop_top=CROP_TOP)
    start = time.perf_counter()
    meta = cv.convert(manifest, out, config, workers=FLAGS.workers, num_shards=4)
    convert_s = time.perf_counter() - start
    import tensorflow as tf
    from tl_keras.data.dataset import build_dataset
    from tfrecords_tools import schema
    files = sorted(os.path.join(out, f) for f in os.listdir(out) if f.startswith("train-"))
    # (a) parse + batch: the schema parser, as every reader uses it.
    parsed = (tf.data.TFRecordDataset(files, num_parallel_reads=2)
              .map(schema.parse_fn(meta), num_parallel_calls=tf.data.AUTOTUNE)
              .batch(FLAGS.batch_size).prefetch(tf.data.AUTOTUNE))
    # (b) the training input: build_dataset's (x in [-1, 1] x 3 channels, mask).
    training = build_dataset(out, "train", "target", FLAGS.batch_size, training=False,
                             meta=meta)
    rates = {
        "parse_batch": timed(lambda: sum(int(b["image"].shape[0]) for b in parsed),
                             FLAGS.epochs),
        "nifti_slice_pad": timed(lambda: nifti_epoch(manifest, FLAGS.batch_size), 1),
        "training_input": timed(lambda: sum(int(x.shape[0]) for x, _ in training),
                                FLAGS.epochs),
        "nifti_training_input": timed(lambda: nifti_epoch(manifest, FLAGS.batch_size, True), 1),
    }
    shard_bytes = sum(os.path.getsize(f) for f in files)
    slices = meta.split("train").slices
    speedup = rates["parse_batch"] / rates["nifti_slice_pad"]
    result = {
        "subjects": FLAGS.subjects, "slices_per_epoch": slices, "slice_size": SIZE,
        "batch_size": FLAGS.batch_size, "cpus": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "tf_version": tf.__version__, "convert_seconds": round(convert_s, 1),
        "bytes_per_slice": round(shard_bytes / slices),
        **{f"{k}_slices_per_s": round(v, 1) for k, v in rates.items()},
        "speedup_parse_batch": round(speedup, 2),
        "speedup_training_input": round(rates["training_input"]
                                        / rates["nifti_training_input"], 2),
        "targets_met": bool(rates["parse_batch"] >= 500 and speedup >= 20),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if FLAGS.out_json:
        with open(FLAGS.out_json, "w") as f:
            f.write(text + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    app.run(main)
