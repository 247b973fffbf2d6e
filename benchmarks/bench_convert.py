"""Conversion cost per scan and storage per slice on the SYNTHETIC phantom cohort.

For a few 1 mm phantom subjects (``tfrecords_tools.phantoms``), runs
``preprocess_subject`` with every label kind (lesion mask, FAST-style tissue,
aseg-style structures, brain mask) and the stroke slice cropping, and reports:

- seconds per scan for the registration and for the rest (loading, label
  resampling, normalisation, slicing, targets) separately, as wall time and as
  CPU time (single-threaded work: the CPU time is what an idle machine shows,
  the wall time on a shared machine includes waiting for a core);
- bytes per 256 x 256 slice: the serialised ``tf.train.Example`` of each kept
  slice from ``tfrecords_tools.schema.make_example`` (image quantised to
  ``schema.DEFAULT_QUANT_MAX`` levels, PNG-coded mask and tissue, presence).

Targets (issue 2, 2 cores): registration <= 30 s, rest <= 2 s per scan,
<= 48 KB per slice. Usage::

    python benchmarks/bench_convert.py --work_dir /tmp/bench_convert --subjects 3
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

flags.DEFINE_string("work_dir", "/tmp/bench_convert", "Scratch folder (the cohort is reused).")
flags.DEFINE_integer("subjects", 3, "Phantom subjects to pre-process.")
flags.DEFINE_enum("lesions", "stroke", ["stroke", "ms"], "Phantom lesion type.")
flags.DEFINE_integer("crop_top", 29, "Axial slices dropped from the top (stroke default).")
flags.DEFINE_integer("threads", 1, "SimpleITK threads for the registration (1: repeatable).")
flags.DEFINE_integer("quant_max", None, "Image quantisation levels "
                     "(default: schema.DEFAULT_QUANT_MAX).")
flags.DEFINE_string("out_json", "", "Also write the figures to this JSON file.")
FLAGS = flags.FLAGS

TARGETS = {"registration_s": 30.0, "rest_s": 2.0, "bytes_per_slice": 48 * 1024}


def slice_bytes(result, config, quant_max=None) -> list[int]:
    """Serialised size of every kept slice of a ``SubjectResult``."""
    from tfrecords_tools import schema
    from tfrecords_tools.scans import labels
    quant_max = quant_max or schema.DEFAULT_QUANT_MAX
    sizes = []
    for n, index in enumerate(result.slice_indices):
        sizes.append(len(schema.make_example(
            subject_id=result.subject_id, slice_index=int(index), image=result.image[n],
            voxel_size=result.voxel_size, mask=result.mask[n],
            num_mask_classes=config.num_mask_classes, tissue=result.tissue[n],
            num_tissue_classes=len(labels.TISSUE_CLASSES), presence=result.presence[n],
            quant_max=quant_max)))
    return sizes


def run(work_dir: str, subjects: int, lesions: str, crop_top: int, threads: int,
        quant_max: int | None = None) -> dict:
    """Pre-process the cohort and return the measured figures."""
    import pandas as pd
    from tfrecords_tools.synthetic import phantoms
    from tfrecords_tools.scans import preprocess
    manifest = phantoms.make_cohort(os.path.join(work_dir, "cohort"), subjects, lesions, seed=0)
    config = preprocess.PreprocessConfig(crop_top=crop_top, reg_threads=threads)
    rows, sizes = [], []
    for n, row in enumerate(pd.read_csv(manifest).itertuples(), start=1):
        labels = {"mask": [row.label], "tissue": [row.tissue], "structures": [row.structures],
                  "brain": [row.brain]}
        result = preprocess.preprocess_subject(row.subject_id, row.image, labels, config,
                                               os.path.join(work_dir, "transforms"))
        t = time.perf_counter()
        sizes += slice_bytes(result, config, quant_max)
        encode = time.perf_counter() - t
        rows.append({**result.timings, "encode_s": encode})
        seconds = result.timings
        print(f"[{n}/{subjects}] {row.subject_id}: registration "
              f"{seconds['registration_s']:.1f} s, rest {seconds['rest_s']:.2f} s, "
              f"encode {encode:.1f} s ({len(result.slice_indices)} slices); CPU: registration "
              f"{seconds['registration_cpu_s']:.1f} s, rest {seconds['rest_cpu_s']:.2f} s",
              flush=True)
    frame = pd.DataFrame(rows)
    from tfrecords_tools import schema
    return {"subjects": subjects, "threads": threads, "slices": len(sizes),
            "quant_max": quant_max or schema.DEFAULT_QUANT_MAX,
            "registration_s": float(frame.registration_s.mean()),
            "registration_s_max": float(frame.registration_s.max()),
            "rest_s": float(frame.rest_s.mean()), "rest_s_max": float(frame.rest_s.max()),
            "registration_cpu_s": float(frame.registration_cpu_s.mean()),
            "rest_cpu_s": float(frame.rest_cpu_s.mean()),
            "encode_s_per_scan": float(frame.encode_s.mean()),
            "bytes_per_slice": float(np.mean(sizes)), "bytes_per_slice_max": int(np.max(sizes))}


def main(argv):
    del argv
    figures = run(FLAGS.work_dir, FLAGS.subjects, FLAGS.lesions, FLAGS.crop_top, FLAGS.threads,
                  FLAGS.quant_max)
    print(json.dumps(figures, indent=2))
    for key, target in TARGETS.items():
        status = "ok" if figures[key] <= target else "ABOVE TARGET"
        print(f"{key}: {figures[key]:.2f} (target <= {target:g}) {status}")
    if FLAGS.out_json:
        from tl_common.io import write_json_atomic
        write_json_atomic(FLAGS.out_json, figures)
    return 0


if __name__ == "__main__":
    sys.exit(app.run(main))
