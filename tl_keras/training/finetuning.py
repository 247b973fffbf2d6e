"""Target-task fine-tuning (docs/method.md section 6): pre-trained encoder, random
decoder, weighted cross-entropy, LR / 10 after half the steps; export, then
evaluate the test split."""
from __future__ import annotations

import os
from typing import Callable

import numpy as np

from tl_keras.data.dataset import select_subjects, split_subjects
from tl_keras.training import tasks
from tl_keras.training.config import FinetuneConfig, validate_finetune
from tl_keras.training.runs import RESULT_FILE, completed_result, finish_run  # noqa: F401
from tl_keras.training.strategy import is_chief
from tl_keras.training.train import train
from tl_keras.utils.io import atomic_path
from tl_keras.weights.spec import InitSpec


def source_of(init_from: str) -> dict:
    """What a run records about its source: ``source_task``, ``source_domain`` and
    ``source_label`` (the report's row name; each Taskonomy task is its own source)."""
    spec = InitSpec.parse(init_from)
    task, domain = spec.source()
    return {"source_task": task, "source_domain": domain, "source_label": spec.label()}


def _export_and_evaluate(config, tm, meta, subjects, source) -> dict:
    from tl_keras.models.export import save_exported
    export_meta = {
        "image_size": list(meta["image_size"]), "input_channels": config.input_channels,
        "num_classes": int(meta["num_mask_classes"]),
        "class_names": list(meta.get("mask_classes") or []), "target": config.target,
        **source, "init": config.init_from,
        "train_subjects": len(subjects), "subset_seed": config.subset_seed,
        "seed": config.seed, "data_dir": os.path.abspath(config.data_dir), "dataset_meta": meta,
    }
    save_exported(tm.model, config.model_dir, export_meta)
    if not config.evaluate:
        return {}
    out_dir = os.path.join(config.model_dir, f"eval_{config.eval_split}")
    try:
        from tl_keras.evaluation import evaluate_model_dir
    except ImportError:
        return {"predictions": write_predictions(tm.model, config, meta, out_dir)}
    tables = evaluate_model_dir(config.model_dir, config.data_dir, config.eval_split, out_dir)
    summary = tables.get("summary") if isinstance(tables, dict) else None
    if summary is None or len(summary) == 0:
        return {"eval_dir": out_dir}
    row = summary.iloc[0].to_dict()
    return {"eval_dir": out_dir, **{f"test_{k}": v for k, v in row.items()
                                    if isinstance(v, (int, float, np.number))}}


def write_predictions(model, config: FinetuneConfig, meta: dict, out_dir: str) -> str:
    """Fallback without the evaluation package: label predictions of the eval split as .npz."""
    from tl_keras.data.dataset import build_dataset, to_model_input
    ds = build_dataset(config.data_dir, config.eval_split, "raw", config.batch_size,
                       training=False, meta=meta)
    ids, idx, preds, gts = [], [], [], []
    for ex in ds:
        logits = model(to_model_input(ex["image"], config.input_channels), training=False)
        preds.append(np.argmax(np.asarray(logits, np.float32), -1).astype(np.uint8))
        gts.append(ex["mask"].numpy().astype(np.uint8))
        ids += [s.decode() for s in ex["subject_id"].numpy()]
        idx += list(ex["slice_index"].numpy())
    path = os.path.join(out_dir, "predictions.npz")
    os.makedirs(out_dir, exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, subject_id=np.array(ids), slice_index=np.array(idx),
                                prediction=np.concatenate(preds), mask=np.concatenate(gts))
    return path


def run_finetune(config: FinetuneConfig, build_models: Callable | None = None) -> dict:
    """Fine-tune (or resume) in ``config.model_dir``; export, evaluate, write result.json.

    Args:
      config: the run configuration.
      build_models: ``(config, meta, *, network, num_outputs) -> TaskModels``
        (default: the Taskonomy networks; :mod:`tl_keras.models.presets`).

    Returns:
      The result record (also in ``model_dir/result.json``).
    """
    meta = validate_finetune(config)
    done = completed_result(config)
    if done is not None:
        return done
    source = source_of(config.init_from)
    subjects = select_subjects(split_subjects(meta, "train"), config.train_subjects or None,
                               config.subset_seed)
    run = train(config, tasks.get("target"), meta, build_models, subjects)
    tm, logs, total, counts, strategy = (run.models, run.logs, run.total_steps, run.weights,
                                         run.strategy)
    result = {"target": config.target, "init_from": config.init_from, **source,
              "train_subjects": len(subjects), "subset_seed": config.subset_seed,
              "seed": config.seed, "steps": total, "train_slices": counts["slices"],
              **{f"final_{k}": v for k, v in logs.items()}}
    if is_chief(strategy):
        result.update(_export_and_evaluate(config, tm, meta, subjects, source))
        finish_run(config, result)
    return result
