"""Source-task pre-training (docs/method.md section 4): segmentation, auto-encoding
(L1 + conditional GAN) or multi-label classification, exporting the encoder.
The tasks are specs in :mod:`tl_keras.training.tasks`; the training is
:func:`tl_keras.training.train.train`."""
from __future__ import annotations

from typing import Callable

from tl_keras.training import tasks
from tl_keras.training.config import PretrainConfig
from tl_keras.training.validation import resolve, validate_pretrain
from tl_keras.training.rundir import claim_run_dir
from tl_keras.training.runs import completed_result, finish_run
from tl_keras.training.tasks import ENCODER_BEST, ENCODER_LAST  # noqa: F401
from tl_keras.training.train import train


def run_pretrain(config: PretrainConfig, build_models: Callable | None = None) -> dict:
    """Pre-train (or resume) in ``config.model_dir``, holding it (lock and flags check,
    :func:`tl_keras.training.rundir.claim_run_dir`); write and return ``result.json``.

    Exports ``encoder_last`` after every epoch and ``encoder_best`` whenever the
    validation loss improves, in the format of :func:`tl_keras.weights.save_encoder`.
    The result (final epoch logs as ``final_*``, best epoch) of a resumed run
    equals that of an uninterrupted one.

    Args:
      config: the run configuration.
      build_models: ``(config, meta, *, network, num_outputs) -> TaskModels``
        (default: the networks ``config.network`` names; :mod:`tl_keras.models.presets`).
    """
    config = resolve(config)  # --network auto, task options None: the defaults
    meta = validate_pretrain(config)
    with claim_run_dir(config):
        done = completed_result(config, extendable=True)
        if done is not None:
            return done
        run = train(config, tasks.get(config.task), meta, build_models)
        result = pretrain_result(config, run.history, run.total_steps)
        if run.is_chief:
            finish_run(config, result)
        return result


def pretrain_result(config: PretrainConfig, history: list, total_steps: int) -> dict:
    """The record of a finished pre-training from its per-epoch logs."""
    scores = [logs.get("val_loss", logs.get("loss", float("inf"))) for logs in history]
    best = min(range(len(scores)), key=scores.__getitem__)  # first of equal scores
    return {"task": config.task, "domain": config.domain, "seed": config.seed,
            "steps": total_steps, "epochs": len(history), "best_epoch": best + 1,
            "best_score": scores[best], **{f"final_{k}": v for k, v in history[-1].items()}}
