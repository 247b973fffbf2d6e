"""The target task of fine-tuning: lesion / anatomy segmentation from a (pre-trained)
encoder, weighted cross-entropy, LR / 10 after half the steps (docs/method.md section 6)."""
from __future__ import annotations

import functools

from tfrecords_tools.dataset_meta import DatasetMeta
from tl_keras.training.tasks.spec import TaskSpec
from tl_keras.weights.spec import InitSpec


def _num_outputs(meta: DatasetMeta) -> int:
    return meta.num_mask_classes


def _class_weights(config, meta: DatasetMeta, subjects):
    """Always counted: the selected subjects' slice count sets the schedule."""
    def compute():
        from tl_keras.training.class_weights import (ClassWeights, compute_class_weights,
                                                     read_slice_counts)
        counts = read_slice_counts(config.data_dir, "train", "mask", meta, subjects)
        weights = (compute_class_weights(counts, config.class_weights, config.foreground_weight)
                   if len(counts) else [])
        return ClassWeights.of(weights, config.class_weights, len(counts))
    return compute


def _loss(config, weights):
    """``weights``: the run's :class:`~tl_keras.training.class_weights.ClassWeights`."""
    from tl_keras.training import losses
    return functools.partial(losses.segmentation_loss,
                             class_weights=None if config.class_weights == "none"
                             else list(weights.weights), dice=config.loss == "cross_entropy_dice")


def _check(config, meta: DatasetMeta) -> str | None:
    if meta.num_mask_classes < 2:
        return f"{config.data_dir}: num_mask_classes must be >= 2"
    return None


def _lr_schedule(config, total_steps: int) -> tuple:
    return [max(total_steps // 2, 1)], [config.learning_rate, config.learning_rate / 10]


def _initialise(config, models) -> None:
    """Load ``--init_from`` into the encoder, with ``--init_decoder`` the matching decoder
    layers too (only when there is no checkpoint to resume)."""
    if config.init_from == "scratch":
        return
    spec = InitSpec.parse(config.init_from)
    if spec.kind == "random":
        print(f"init_from random: the seeded random encoder (--seed {config.seed}), the "
              "random-encoder control", flush=True)
        return
    report = spec.load(models.encoder, model=models.model, decoder=config.init_decoder)
    print(f"init_from {config.init_from}: {report.summary()}", flush=True)
    if spec.is_export or report.adapted or report.reinitialised:
        print(report.table(), flush=True)


TASK = TaskSpec(name="target", data_task="target", network="target", source=False,
                num_outputs=_num_outputs, loss=_loss, class_weights=_class_weights,
                check=_check, lr_schedule=_lr_schedule, initialise=_initialise)
