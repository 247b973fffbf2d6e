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
import functools
import json
import os

import numpy as np
import pandas as pd

from tfrecords_tools import schema
from tl_common import lock, paths
from tl_common.cli import UserError
from tl_common.io import atomic_path, write_csv_atomic, write_json_atomic
from tl_common.progress import Progress
from tl_common.runinfo import record_run
from tl_keras.evaluation import catalogue, metrics, native, tables
from tl_keras.evaluation.collect import predict_split
from tl_keras.models.export import (EXPORT_DIR, MODEL_FILE, ExportMeta, load_exported,
                                    read_exported_meta)
from tl_common.cli import FlagError
from tfrecords_tools.dataset_meta import DatasetMeta
from tfrecords_tools.errors import DataSetError

OUTPUT_FILES = ("per_slice.csv", "per_subject.csv", "per_lesion.csv", "detection.csv",
                "presets.csv", "summary.csv")
STATE_FILE = "evaluation.json"
SPACES = ("template", "native")


class EvaluationError(UserError, ValueError):
    """An evaluation that cannot be written where asked (message: one line)."""


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
      space: the grid of the volume metrics (per-subject volume Dice and volumes,
        lesions, detection, presets): ``template``, the pre-processed grid the
        network sees (MNI, resampled, cropped), or ``native``, each scan's own grid
        and label files, as the challenges score (binary targets; see
        :mod:`tl_keras.evaluation.native`). Per-slice scores are always on the
        template grid.
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
    space: str = "template"
    overwrite: bool = False
    verbose: bool = True

    def __post_init__(self):
        if self.empty_policy not in metrics.EMPTY_POLICIES:
            raise FlagError(f"empty_policy must be one of {metrics.EMPTY_POLICIES}")
        for p in self.presets:
            catalogue.get_preset(p)
        from tl_keras.evaluation.detection import structure
        structure(self.connectivity)
        if self.space not in SPACES:
            raise FlagError(f"space must be one of {SPACES}, got {self.space!r}")
        if self.batch_size < 1:
            raise FlagError(f"batch_size must be >= 1, got {self.batch_size}")


class _Examples:
    """Keeps, per subject, the slice with the largest ground-truth area."""

    def __init__(self):
        self.best: dict[str, tuple] = {}

    def __call__(self, subject, index, image, gt, pred):
        area = int(np.count_nonzero(gt))
        old = self.best.get(subject)
        if old is None or (area, -index) > (old[0], -old[1]):
            # The middle channel: the slice itself of a 2.5-D [previous, slice, next] stack.
            grey = image[..., image.shape[-1] // 2]
            self.best[subject] = (area, index, grey.astype(np.float16), gt, pred)

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


def _check_compatible(meta: ExportMeta, data_meta: DatasetMeta, data_dir: str,
                      model_dir: str) -> None:
    if data_meta.image_size != meta.image_size:
        raise DataSetError(f"{data_dir}: slices are {list(data_meta.image_size)} but the model "
                           f"in {model_dir} expects {list(meta.image_size)}")
    if data_meta.num_mask_classes != meta.num_classes:
        raise DataSetError(f"{data_dir}: {data_meta.num_mask_classes} mask classes but the "
                           f"model in {model_dir} predicts {meta.num_classes}")


def _state(model_dir: str, data_dir: str, config: EvalConfig) -> dict:
    model_file = os.path.join(model_dir, EXPORT_DIR, MODEL_FILE)
    cfg = dataclasses.asdict(config)
    for k in ("overwrite", "verbose"):
        cfg.pop(k)
    return {"model_dir": os.path.abspath(model_dir), "data_dir": os.path.abspath(data_dir),
            "model_mtime": os.path.getmtime(model_file), "config": json.loads(json.dumps(cfg))}


def _recorded(out_dir: str) -> dict | None:
    try:
        with open(os.path.join(out_dir, STATE_FILE)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _finished(out_dir: str, state: dict) -> bool:
    if not all(os.path.exists(os.path.join(out_dir, f)) for f in OUTPUT_FILES):
        return False
    return _recorded(out_dir) == state


def _refuse_another(out_dir: str, state: dict) -> None:
    """An ``out_dir`` holding the evaluation of another model, data set, split or
    configuration is not silently replaced (a retrained model may be re-evaluated)."""
    old = _recorded(out_dir)
    if not isinstance(old, dict):
        return
    diff = [k for k in ("model_dir", "data_dir") if old.get(k) != state[k]]
    old_cfg, new_cfg = old.get("config") or {}, state["config"]
    diff += [f"--{k}" for k in sorted(set(old_cfg) | set(new_cfg))
             if old_cfg.get(k) != new_cfg.get(k)]
    if diff:
        raise EvaluationError(f"{out_dir} holds another evaluation (different "
                              f"{', '.join(d if d.startswith('--') else '--' + d for d in diff)}"
                              "); use another --out_dir, or --overwrite to replace it")


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
      EvaluationError: ``out_dir`` is a file, a dangling link, overlaps the data or
        the export, or holds another evaluation (without ``config.overwrite``).
      tl_common.lock.LockError: another evaluation is writing into ``out_dir``.
    """
    from tl_keras.data.dataset import split_subjects

    config = dataclasses.replace(config or EvalConfig(), split=split)
    meta = read_exported_meta(model_dir)
    data_meta = schema.read_meta(data_dir)
    split_subjects(data_meta, split)  # clear error for an unknown split
    _check_compatible(meta, data_meta, data_dir, model_dir)
    if config.space == "native":
        if meta.num_classes != 2:
            raise native.NativeSpaceError(
                f"{model_dir}: --space native scores binary (lesion) targets; this model "
                f"predicts {meta.num_classes} classes")
        native.subject_records(data_dir)  # a clear error before any work
    state = _state(model_dir, data_dir, config)
    paths.check_output_folder(out_dir, "--out_dir", EvaluationError)
    paths.refuse_overlap("--out_dir", out_dir, [
        ("--data_dir", data_dir), ("the model's export", os.path.join(model_dir, EXPORT_DIR))],
        EvaluationError)
    created = not os.path.exists(out_dir)
    with lock.acquire(out_dir, what=out_dir):  # a second evaluation into it is refused
        try:
            return _evaluate_locked(model_dir, data_dir, out_dir, config, state, data_meta)
        finally:
            if created and os.listdir(out_dir) == [lock.LOCK_NAME]:
                os.remove(os.path.join(out_dir, lock.LOCK_NAME))
                os.rmdir(out_dir)


def _evaluate_locked(model_dir, data_dir, out_dir, config, state, data_meta):
    """:func:`evaluate_model_dir` holding the lock of ``out_dir``."""
    from tl_keras.data.dataset import build_dataset
    if not config.overwrite and _finished(out_dir, state):
        if config.verbose:
            print(f"evaluate: {out_dir} already holds this evaluation; skipping "
                  f"(--overwrite to redo)")
        return _read_outputs(out_dir)
    if not config.overwrite:
        _refuse_another(out_dir, state)
    model, meta = load_exported(model_dir)
    run = tables.run_metadata(meta, config, model_dir)
    num_classes = meta.num_classes
    binary = num_classes == 2
    class_names = list(meta.class_names or data_meta.mask_classes
                       or [f"class{i}" for i in range(num_classes)])
    split = config.split
    ds = build_dataset(data_dir, split, "raw", config.batch_size, training=False,
                       meta=data_meta, slice_context=meta.slice_context)
    examples = _Examples()
    store, slice_rows = predict_split(
        model, ds, input_channels=meta.input_channels, binary=binary,
        slice_metrics=tables.slice_metrics_fn(num_classes, class_names, config),
        total=data_meta.split(split).slices, verbose=config.verbose,
        on_slice=examples if config.num_examples else None)

    volume_of = None
    if config.space == "native":
        volume_of = functools.partial(native.to_native, native.subject_records(data_dir),
                                      data_dir)
    out = tables.build_tables(store, slice_rows, run, num_classes, class_names, config,
                              Progress(len(store.slices), "evaluate: metrics", "subject",
                                       enabled=config.verbose), volume_of=volume_of)
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
