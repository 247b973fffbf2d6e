"""The record of a run: ``<model_dir>/result.json``, :class:`FinetuneResult` for a
fine-tuning run, :class:`PretrainResult` for a pre-training run.

Training writes it when the run is complete (a fine-tuned model trained and exported);
the caller that evaluates a fine-tuning run (``tl_keras.studies``) adds the evaluation
and writes it again. Fields: docs/evaluation.md, "Run records", and docs/training.md,
"What a run directory holds".
"""
from __future__ import annotations

import dataclasses
import numbers
import os

from tl_common.io import write_json_atomic
from tl_keras.models.export import MODE_CHECKERS, FinetuneRecordFields
from tl_common.records import (RecordError, from_fields, integer, optional, prefixed,
                               read_json_object, scalar, text)

RESULT_FILE = "result.json"


@dataclasses.dataclass(frozen=True)
class FinetuneResult(FinetuneRecordFields):
    """What ``result.json`` records about a fine-tuning run.

    Attributes:
      target: target task name.
      init_from: the ``--init_from`` spec.
      train_subjects: fine-tuning set size (subjects).
      subset_seed: seed of the subject subset.
      seed: the run's seed.
      steps: training steps.
      train_slices: training slices of the subset.
      (and the source and mode fields of :class:`FinetuneRecordFields`)
      final: the last epoch's mean logs (``final_<name>`` in the file: loss, val_loss...).
      eval_dir: the evaluation's output folder; None until the run is evaluated.
      test: the evaluation's summary row (``test_<column>`` in the file: dice...).
      precision: the Keras dtype policy the run trained in (``float32``,
        ``mixed_bfloat16``...; ``--mixed_precision auto`` resolved); None in records
        written before it was recorded.
    """

    target: str
    init_from: str
    train_subjects: int
    subset_seed: int
    seed: int
    steps: int
    train_slices: int
    precision: str | None = None
    final: dict = dataclasses.field(default_factory=dict)
    eval_dir: str | None = None
    test: dict = dataclasses.field(default_factory=dict)

    @property
    def evaluated(self) -> bool:
        return self.eval_dir is not None

    def with_evaluation(self, eval_dir: str, summary: dict) -> "FinetuneResult":
        """This record with an evaluation: its folder and the numbers of its summary row."""
        test = {k: v.item() if hasattr(v, "item") else v for k, v in summary.items()
                if isinstance(v, numbers.Number)}  # numpy scalars included
        return dataclasses.replace(self, eval_dir=eval_dir, test=test)

    def to_dict(self) -> dict:
        """The JSON object of ``result.json`` (``final`` and ``test`` flattened with their
        prefixes; ``eval_dir`` only once evaluated)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
               if f.name not in ("final", "test", "eval_dir")}
        out.update({f"final_{k}": v for k, v in self.final.items()})
        if self.evaluated:
            out["eval_dir"] = self.eval_dir
        out.update({f"test_{k}": v for k, v in self.test.items()})
        return out

    @classmethod
    def from_dict(cls, data: dict, where: str = RESULT_FILE) -> "FinetuneResult":
        """Check and convert ``data``.

        Raises:
          RecordError: naming ``where`` and the missing or bad key.
        """
        final, rest = prefixed(data, "final_", where)
        test, rest = prefixed(rest, "test_", where)
        opt_text = optional(text)
        checkers = {"target": text, "init_from": text, "train_subjects": integer,
                    "subset_seed": integer, "seed": integer, "steps": integer,
                    "train_slices": integer, "source_task": opt_text,
                    "source_domain": opt_text, "source_label": opt_text,
                    "precision": opt_text, "eval_dir": opt_text, **MODE_CHECKERS}
        return from_fields(cls, {**rest, "final": final, "test": test}, where, checkers)


@dataclasses.dataclass(frozen=True)
class PretrainResult:
    """What ``result.json`` records about a pre-training run.

    Attributes:
      task: the source task (``--task``).
      domain: the ``--domain`` recorded with its encoders.
      seed: the run's seed.
      steps: training steps.
      epochs: epochs trained.
      best_epoch: the epoch of ``encoder_best`` (1-based; the first of equal scores).
      best_score: its ``val_loss`` (``loss`` without validation).
      final: the last epoch's mean logs (``final_<name>`` in the file: loss, val_loss...).
      precision: the Keras dtype policy the run trained in; None in records written
        before it was recorded.
    """

    task: str
    domain: str
    seed: int
    steps: int
    epochs: int
    best_epoch: int
    best_score: float
    precision: str | None = None
    final: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def of_history(cls, config, history: list, total_steps: int,
                   precision: str | None) -> "PretrainResult":
        """The record of a finished pre-training from its per-epoch logs."""
        scores = [logs.get("val_loss", logs.get("loss", float("inf"))) for logs in history]
        best = min(range(len(scores)), key=scores.__getitem__)  # first of equal scores
        return cls(task=config.task, domain=config.domain, seed=config.seed,
                   steps=total_steps, epochs=len(history), best_epoch=best + 1,
                   best_score=scores[best], precision=precision, final=dict(history[-1]))

    def to_dict(self) -> dict:
        """The JSON object of ``result.json`` (``final`` flattened as ``final_*``)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
               if f.name != "final"}
        return {**out, **{f"final_{k}": v for k, v in self.final.items()}}

    @classmethod
    def from_dict(cls, data: dict, where: str = RESULT_FILE) -> "PretrainResult":
        """Check and convert ``data``.

        Raises:
          RecordError: naming ``where`` and the missing or bad key.
        """
        final, rest = prefixed(data, "final_", where)
        checkers = {"task": text, "domain": text, "seed": integer, "steps": integer,
                    "epochs": integer, "best_epoch": integer, "best_score": scalar,
                    "precision": optional(text)}
        return from_fields(cls, {**rest, "final": final}, where, checkers)


def result_path(model_dir: str) -> str:
    return os.path.join(model_dir, RESULT_FILE)


def read_finetune_result(model_dir: str) -> FinetuneResult | None:
    """The record of the run in ``model_dir``; None when the run is not complete.

    Raises:
      RecordError: ``result.json`` is damaged or has a missing or bad key.
    """
    path = result_path(model_dir)
    if not os.path.exists(path):
        return None
    return FinetuneResult.from_dict(read_json_object(path), path)


def write_finetune_result(model_dir: str, result: FinetuneResult) -> None:
    """Write ``result.json`` atomically (it marks the run complete)."""
    write_json_atomic(result_path(model_dir), result.to_dict())


__all__ = ["RESULT_FILE", "FinetuneResult", "PretrainResult", "RecordError",
           "read_finetune_result", "write_finetune_result"]
