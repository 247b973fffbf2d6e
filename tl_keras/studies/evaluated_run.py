"""A fine-tuning run followed by the evaluation of its export (``tl_keras.finetune``
with ``--evaluate``, and every sweep cell).

Training ends with the export and ``result.json``; the evaluation of
``--eval_split`` then adds its folder and summary numbers to ``result.json``. So a
rerun of an evaluated run does nothing, and a run killed between training and
evaluation is evaluated by its rerun (docs/reliability.md).
"""
from __future__ import annotations

import os
from typing import Callable

from tl_keras.evaluation import evaluate_model_dir
from tl_keras.training import finetuning
from tl_keras.training.config import FinetuneConfig
from tl_keras.training.results import (FinetuneResult, read_finetune_result,
                                       write_finetune_result)
from tl_keras.training.rundir import claim_run_dir, is_chief_from_env


def evaluate_run(config: FinetuneConfig, result: FinetuneResult) -> FinetuneResult:
    """Evaluate the export in ``config.model_dir`` on ``config.eval_split`` into
    ``eval_<split>/`` and write ``result.json`` with the evaluation.

    Returns:
      ``result`` with ``eval_dir`` and the summary numbers as ``test``.
    """
    out_dir = os.path.join(config.model_dir, f"eval_{config.eval_split}")
    print(f"{config.model_dir}: evaluating the '{config.eval_split}' split", flush=True)
    tables = evaluate_model_dir(config.model_dir, config.data_dir, config.eval_split, out_dir)
    summary = tables["summary"]
    evaluated = result.with_evaluation(out_dir, summary.iloc[0].to_dict() if len(summary)
                                       else {})
    write_finetune_result(config.model_dir, evaluated)
    return evaluated


def finetune_and_evaluate(config: FinetuneConfig, build_models: Callable | None = None) -> dict:
    """Fine-tune (or resume) in ``config.model_dir``, then, with ``config.evaluate``,
    evaluate the export once (holding the run directory throughout).

    Args:
      config: the run configuration.
      build_models: ``(config, meta, *, network, num_outputs) -> TaskModels`` (default:
        the networks ``config.network`` names).

    Returns:
      The :class:`FinetuneResult` as a dict (as in ``model_dir/result.json``).
    """
    with claim_run_dir(config):
        trained = finetuning.run_finetune(config, build_models)
        if not (config.evaluate and is_chief_from_env()):
            return trained  # other workers of a cluster leave the evaluation to the chief
        result = read_finetune_result(config.model_dir)
        if result is None or result.evaluated:
            return trained
        return evaluate_run(config, result).to_dict()


def is_complete(config: FinetuneConfig) -> bool:
    """The run has its ``result.json`` and, with ``config.evaluate``, its evaluation.

    Raises:
      RecordError: ``result.json`` is damaged.
    """
    result = read_finetune_result(config.model_dir)
    return result is not None and (result.evaluated or not config.evaluate)
