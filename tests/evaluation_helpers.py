"""Tiny exported models with known behaviour for the evaluation tests."""
from __future__ import annotations

import numpy as np


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


def export_threshold_model(model_dir, num_classes=2, size=32, dataset_meta=None, bias=0.0,
                           **meta):
    """Save :func:`threshold_model` with export metadata; returns the meta."""
    from tl_keras.models.export import save_exported
    full = {"image_size": [size, size], "input_channels": 3, "num_classes": num_classes,
            "class_names": ["background"] + [f"lesion{i}" for i in range(1, num_classes)],
            "target": "stroke", "source_task": "segmentation", "source_domain": "t1",
            "init": "runs/pretrain/encoder.weights.h5", "train_subjects": ["train000"],
            "subset_seed": 3, "seed": 7, "dataset_meta": dataset_meta or {}}
    full.update(meta)
    save_exported(threshold_model(num_classes, size, bias=bias), str(model_dir), full)
    return full
