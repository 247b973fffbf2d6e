"""The exported fine-tuned segmentation model: the contract between training,
evaluation and prediction.

Layout of ``<model_dir>/export/``:
  - ``segmentation.keras``: full Keras model, images in [-1, 1] (N, H, W, C) -> logits (N, H, W, K).
  - ``model.json``: metadata (image_size, input_channels, num_classes, class_names,
    target, source_task, source_domain, init, train_subjects, subset_seed, seed,
    data_dir, dataset_meta = the training data's dataset.json, with its
    ``preprocessing`` parameters).
"""
from __future__ import annotations

import json
import os

from tl_common.io import atomic_path, write_json_atomic

EXPORT_DIR = "export"
MODEL_FILE = "segmentation.keras"
META_FILE = "model.json"
REQUIRED_META = ("image_size", "input_channels", "num_classes")


def save_exported(model, model_dir: str, meta: dict) -> str:
    """Save ``model`` and ``meta`` under ``model_dir/export`` (atomically)."""
    missing = [k for k in REQUIRED_META if k not in meta]
    if missing:
        raise ValueError(f"export metadata is missing {missing}")
    out = os.path.join(model_dir, EXPORT_DIR)
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, MODEL_FILE)
    with atomic_path(path) as tmp:
        os.remove(tmp)
        tmp_keras = tmp + ".keras"  # Keras insists on the suffix
        model.save(tmp_keras)
        os.replace(tmp_keras, tmp)
    write_json_atomic(os.path.join(out, META_FILE), meta)
    return out


def read_exported_meta(model_dir: str) -> dict:
    path = os.path.join(model_dir, EXPORT_DIR, META_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"{path}: no exported model; is {model_dir} a finished tl_keras.finetune run?")
    with open(path) as f:
        return json.load(f)


def load_exported(model_dir: str):
    """Return ``(keras.Model, meta)`` of a fine-tuned run directory."""
    import keras
    import tl_keras.models.batchnorm  # noqa: F401  registers FusedBatchNorm for load_model
    meta = read_exported_meta(model_dir)
    path = os.path.join(model_dir, EXPORT_DIR, MODEL_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: exported model file missing")
    return keras.models.load_model(path, compile=False), meta
