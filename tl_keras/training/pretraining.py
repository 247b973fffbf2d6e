"""Source-task pre-training (docs/method.md section 4): segmentation, auto-encoding
(L1 + conditional GAN) or multi-label classification, exporting the encoder.
The tasks are specs in :mod:`tl_keras.training.tasks`; the training is
:func:`tl_keras.training.train.train`."""
from __future__ import annotations

import os
from typing import Callable

from tfrecords_tools.dataset_meta import DatasetMeta
from tl_keras.training import tasks
from tl_keras.training.config import ConfigError, PretrainConfig
from tl_keras.training.results import PretrainResult
from tl_keras.training.rundir import claim_run_dir
from tl_keras.training.validation import resolve, validate_pretrain
from tl_keras.training.runs import completed_result, finish_run
from tl_keras.training.tasks import ENCODER_BEST, ENCODER_LAST  # noqa: F401
from tl_keras.training.train import train
from tl_keras.weights.encoder_io import is_encoder_dir


def run_pretrain(config: PretrainConfig, build_models: Callable | None = None) -> dict:
    """Pre-train (or resume) in ``config.model_dir``, holding it (lock and flags check,
    :func:`tl_keras.training.rundir.claim_run_dir`); write ``result.json`` and return it
    (the :class:`~tl_keras.training.results.PretrainResult` as a dict).

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
        return _pretrain(config, meta, build_models)


def _pretrain(config: PretrainConfig, meta: DatasetMeta, build_models) -> dict:
    """:func:`run_pretrain` in its claimed run directory."""
    task = tasks.get(config.task)
    done = completed_result(config, PretrainResult, extendable=True)
    if done is not None:
        if task.export is not None:
            _refuse_missing(config, _missing_encoders(config), "its checkpoints were not "
                            "kept (--keep_checkpoints_after_done)")
        return done.to_dict()
    run = train(config, task, meta, build_models)
    result = PretrainResult.of_history(config, run.history, run.total_steps,
                                       run.precision.policy)
    if run.is_chief:
        unrestorable = _restore_encoders(config, task, run, result)
        finish_run(config, result)
        _refuse_missing(config, unrestorable, f"the checkpoints hold epoch {result.epochs}, "
                        f"the best was epoch {result.best_epoch}")
    return result.to_dict()


def _missing_encoders(config: PretrainConfig) -> list[str]:
    return [name for name in (ENCODER_LAST, ENCODER_BEST)
            if not is_encoder_dir(os.path.join(config.model_dir, name))]


def _restore_encoders(config, task, run, result: PretrainResult) -> list[str]:
    """Export again the encoders a finished run lost (deleted by hand); the last
    checkpoint holds the last epoch's networks. Returns those it cannot restore."""
    missing = _missing_encoders(config) if task.export is not None and run.history else []
    if not missing:
        return []
    last_is_best = result.best_epoch == result.epochs
    restorable = [n for n in missing if n == ENCODER_LAST or last_is_best]
    task.export(config, run.models, len(run.history) - 1, run.history[-1],
                ENCODER_BEST in restorable)
    print(f"{config.model_dir}: restored {', '.join(n + '/' for n in restorable)} from the "
          f"last checkpoint", flush=True)
    return [n for n in missing if n not in restorable]


def _refuse_missing(config: PretrainConfig, missing: list[str], why: str) -> None:
    if missing:
        raise ConfigError(f"{config.model_dir}: the finished run's {', '.join(missing)}/ "
                          f"{'is' if len(missing) == 1 else 'are'} missing and cannot be "
                          f"restored ({why}); rerun with --overwrite to train again"
                          + (f", or use {ENCODER_LAST}/" if ENCODER_LAST not in missing
                             else ""))

