"""Evaluate an exported fine-tuned model on a split: tidy CSVs with run metadata.

Output files in ``out_dir`` (fixed column order, every row starting with the
run metadata columns ``META_COLUMNS``):

- ``per_slice.csv``: Dice (binary) or mIoU and per-class IoU (multi-class) per slice.
- ``per_subject.csv``: per re-assembled volume: slice mean, volume Dice / mIoU,
  volumes, lesion counts.
- ``per_lesion.csv``: every ground-truth lesion of every subject (binary only).
- ``detection.csv``: detection rates per (overlap, volume) cutoff pair, pooled
  over subjects (binary only).
- ``presets.csv``: challenge preset counts / recall / precision / F1 per subject.
- ``summary.csv``: one row for the run.
- ``examples.npz``: a few slices (image, ground truth, prediction) for figures.
- ``evaluation.json``: the configuration; its presence (with the same
  configuration) makes a rerun skip the work.
"""
from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pandas as pd

from tfrecords_tools import schema
from tl_common.io import atomic_path, write_csv_atomic, write_json_atomic
from tl_common.progress import Progress
from tl_common.runinfo import record_run
from tl_keras.evaluation import catalogue, metrics, tables
from tl_keras.evaluation.collect import predict_split
from tl_keras.models.export import (EXPORT_DIR, MODEL_FILE, ExportMeta, load_exported,
                                    read_exported_meta)

OUTPUT_FILES = ("per_slice.csv", "per_subject.csv", "per_lesion.csv", "detection.csv",
                "presets.csv", "summary.csv")
STATE_FILE = "evaluation.json"


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """Evaluation options (the CLI flags of ``tl_keras.evaluate``).

    Attributes:
      split: data split to evaluate.
      batch_size: slices per forward pass.
      empty_policy: empty-slice policy of ``metrics`` (docs/method.md section 7).
      include_background: average the background class in mIoU.
      connectivity: lesion connectivity (4 / 8 per slice, 6 / 18 / 26 in 3D).
      overlap_cutoffs: detection overlap cutoffs (fractions).
      volume_cutoffs_ml: lesion volume cutoffs in mL.
      presets: challenge presets to compute (``catalogue.DETECTION_PRESETS``).
      num_examples: slices saved to ``examples.npz``: for the subjects with the
        largest ground-truth area, their slice with the most ground truth (the
        same slices for every model on the same data).
      overwrite: recompute even when a finished evaluation with the same
        configuration exists.
      verbose: progress lines on stderr.
    """

    split: str = "test"
    batch_size: int = 8
    empty_policy: str = metrics.DEFAULT_EMPTY_POLICY
    include_background: bool = False
    connectivity: int = 8
    overlap_cutoffs: tuple = (0.0, 0.2)
    volume_cutoffs_ml: tuple = (0.0, 1.0, 2.0)
    presets: tuple = tuple(catalogue.DETECTION_PRESETS)
    num_examples: int = 4
    overwrite: bool = False
    verbose: bool = True

    def __post_init__(self):
        if self.empty_policy not in metrics.EMPTY_POLICIES:
            raise ValueError(f"empty_policy must be one of {metrics.EMPTY_POLICIES}")
        for p in self.presets:
            catalogue.get_preset(p)
        from tl_keras.evaluation.detection import structure
        structure(self.connectivity)
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")


class _Examples:
    """Keeps, per subject, the slice with the largest ground-truth area."""

    def __init__(self):
        self.best: dict[str, tuple] = {}

    def __call__(self, subject, index, image, gt, pred):
        area = int(np.count_nonzero(gt))
        old = self.best.get(subject)
        if old is None or (area, -index) > (old[0], -old[1]):
            self.best[subject] = (area, index, image[..., 0].astype(np.float16), gt, pred)

    def save(self, path: str, k: int, run: dict, class_names) -> None:
        chosen = sorted(self.best.items(), key=lambda kv: (-kv[1][0], kv[0]))[:k]
        chosen.sort(key=lambda kv: kv[0])
        if not chosen:
            return
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez_compressed(
                    f, subject_id=np.array([s for s, _ in chosen]),
                    slice_index=np.array([v[1] for _, v in chosen]),
                    image=np.stack([v[2] for _, v in chosen]),
                    gt=np.stack([v[3] for _, v in chosen]),
                    pred=np.stack([v[4] for _, v in chosen]),
                    num_classes=np.array(len(class_names)),
                    class_names=np.array([str(c) for c in class_names]),
                    run=np.array(json.dumps(run, default=str)))


def _check_compatible(meta: ExportMeta, data_meta: dict, data_dir: str,
                      model_dir: str) -> None:
    size = list(meta.image_size)
    if list(data_meta["image_size"]) != size:
        raise ValueError(f"{data_dir}: slices are {data_meta['image_size']} but the model in "
                         f"{model_dir} expects {size}")
    if int(data_meta["num_mask_classes"]) != meta.num_classes:
        raise ValueError(f"{data_dir}: {data_meta['num_mask_classes']} mask classes but the "
                         f"model in {model_dir} predicts {meta.num_classes}")


def _state(model_dir: str, data_dir: str, config: EvalConfig) -> dict:
    model_file = os.path.join(model_dir, EXPORT_DIR, MODEL_FILE)
    cfg = dataclasses.asdict(config)
    for k in ("overwrite", "verbose"):
        cfg.pop(k)
    return {"model_dir": os.path.abspath(model_dir), "data_dir": os.path.abspath(data_dir),
            "model_mtime": os.path.getmtime(model_file), "config": json.loads(json.dumps(cfg))}


def _finished(out_dir: str, state: dict) -> bool:
    path = os.path.join(out_dir, STATE_FILE)
    if not os.path.exists(path) or not all(
            os.path.exists(os.path.join(out_dir, f)) for f in OUTPUT_FILES):
        return False
    with open(path) as f:
        return json.load(f) == state


def _read_outputs(out_dir: str) -> dict[str, pd.DataFrame]:
    return {f[:-4]: pd.read_csv(os.path.join(out_dir, f)) for f in OUTPUT_FILES}


def evaluate_model_dir(model_dir: str, data_dir: str, split: str, out_dir: str,
                       config: EvalConfig | None = None) -> dict[str, pd.DataFrame]:
    """Predict every slice of ``split`` and write the tidy result tables.

    Args:
      model_dir: fine-tuning run directory with ``export/`` (``save_exported``).
      data_dir: converted data set (shards + dataset.json).
      split: split to evaluate (overrides ``config.split``).
      out_dir: where the CSVs go (created).
      config: options; defaults follow docs/method.md section 7.

    Returns:
      The tables by name (``per_slice``, ``per_subject``, ``per_lesion``,
      ``detection``, ``presets``, ``summary``).

    Raises:
      FileNotFoundError / ValueError naming the directory and the problem.
    """
    from tl_keras.data.dataset import build_dataset, split_subjects

    config = dataclasses.replace(config or EvalConfig(), split=split)
    meta = read_exported_meta(model_dir)
    data_meta = schema.read_meta(data_dir)
    split_subjects(data_meta, split)  # clear error for an unknown split
    _check_compatible(meta, data_meta, data_dir, model_dir)
    state = _state(model_dir, data_dir, config)
    if not config.overwrite and _finished(out_dir, state):
        if config.verbose:
            print(f"evaluate: {out_dir} already holds this evaluation; skipping "
                  f"(--overwrite to redo)")
        return _read_outputs(out_dir)

    model, meta = load_exported(model_dir)
    run = tables.run_metadata(meta, config, model_dir)
    num_classes = meta.num_classes
    binary = num_classes == 2
    class_names = list(meta.class_names or data_meta.get("mask_classes")
                       or [f"class{i}" for i in range(num_classes)])
    ds = build_dataset(data_dir, split, "raw", config.batch_size, training=False,
                       meta=data_meta)
    examples = _Examples()
    store, slice_rows = predict_split(
        model, ds, input_channels=meta.input_channels, binary=binary,
        slice_metrics=tables.slice_metrics_fn(num_classes, class_names, config),
        total=data_meta["splits"][split].get("slices"), verbose=config.verbose,
        on_slice=examples if config.num_examples else None)

    out = tables.build_tables(store, slice_rows, run, num_classes, class_names, config,
                              Progress(len(store.slices), "evaluate: metrics", "subject",
                                       enabled=config.verbose))
    os.makedirs(out_dir, exist_ok=True)
    for name, frame in out.items():
        write_csv_atomic(os.path.join(out_dir, f"{name}.csv"), frame)
    if config.num_examples:
        examples.save(os.path.join(out_dir, "examples.npz"), config.num_examples, run,
                      class_names)
    record_run(out_dir, state, seed=run["seed"],
               name="evaluate_run.json")  # configuration, seed and package versions
    write_json_atomic(os.path.join(out_dir, STATE_FILE), state)
    return out
