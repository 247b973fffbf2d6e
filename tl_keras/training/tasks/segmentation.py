"""Source task: tissue segmentation with class-weighted cross-entropy (docs/method.md
section 4)."""
from __future__ import annotations

import functools

from tfrecords_tools.dataset_meta import DatasetMeta
from tl_keras.training.tasks.spec import TaskSpec, export_encoder


def _num_outputs(meta: DatasetMeta) -> int:
    return meta.num_tissue_classes


def _class_weights(config, meta: DatasetMeta, subjects):
    from tl_keras.training.class_weights import ClassWeights, class_weights_for, ignored_class
    # An ignore class (dataset.json ignore_class) needs weights even with "none": its weight is 0.
    if config.class_weights == "none" and ignored_class(meta, "tissue") is None:
        return None
    return lambda: ClassWeights.of(
        class_weights_for(config.data_dir, "train", "tissue", meta, config.class_weights,
                          foreground_weight=config.foreground_weight),
        config.class_weights, meta.splits["train"].slices)


def _loss(config, weights):
    """``weights``: the run's :class:`~tl_keras.training.class_weights.ClassWeights`, or
    None (unweighted)."""
    from tl_keras.training import losses
    return functools.partial(losses.weighted_cross_entropy,
                             class_weights=None if weights is None else list(weights.weights))


def _check(config, meta: DatasetMeta) -> str | None:
    if meta.num_tissue_classes < 2:
        return f"{config.data_dir}: num_tissue_classes < 2, cannot pre-train segmentation"
    return None


TASK = TaskSpec(name="segmentation", data_task="segmentation", network="segmentation",
                num_outputs=_num_outputs, loss=_loss, class_weights=_class_weights,
                check=_check, export=export_encoder)
