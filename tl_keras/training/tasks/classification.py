"""Source task: multi-label classification of the labels present in a slice
(docs/method.md section 4)."""
from __future__ import annotations

import dataclasses
import functools

from tfrecords_tools.dataset_meta import DatasetMeta
from tl_keras.training.config import option
from tl_keras.training.tasks.spec import TaskSpec, export_encoder


@dataclasses.dataclass(frozen=True)
class ClassificationOptions:
    """The options of ``--task=classification``."""

    classification_softmax: bool = option(False, "classification: softmax cross-entropy "
                                                 "instead of class-wise sigmoid BCE (the "
                                                 "paper's text)")


def _num_outputs(meta: DatasetMeta) -> int:
    return len(meta.presence_labels)


def _loss(config, weights):
    from tl_keras.training import losses
    return functools.partial(losses.multilabel_cross_entropy,
                             softmax=config.task_options.classification_softmax)


def _check(config, meta: DatasetMeta) -> str | None:
    if not meta.presence_labels:
        return f"{config.data_dir}: no presence_labels, cannot pre-train classification"
    return None


TASK = TaskSpec(name="classification", data_task="classification", network="classification",
                num_outputs=_num_outputs, loss=_loss, check=_check, export=export_encoder,
                options=ClassificationOptions)
