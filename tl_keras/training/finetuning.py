"""Target-task fine-tuning (docs/method.md section 6): pre-trained encoder, random
decoder, weighted cross-entropy, LR / 10 after half the steps; export and
``result.json``. Evaluating the export is the caller's step (``tl_keras.studies``):
training never calls evaluation."""
from __future__ import annotations

import os
from typing import Callable

from tfrecords_tools.dataset_meta import DatasetMeta
from tl_keras.data.dataset import select_subjects, split_subjects
from tl_keras.models.export import ExportMeta, save_exported
from tl_keras.training import tasks
from tl_keras.training.config import FinetuneConfig
from tl_keras.training.validation import resolve, validate_finetune
from tl_keras.training.results import FinetuneResult
from tl_keras.training.rundir import claim_run_dir
from tl_keras.training.runs import completed_result, finish_run
from tl_keras.training.strategy import is_chief
from tl_keras.training.train import train
from tl_keras.weights.spec import InitSpec


def source_of(init_from: str, mode: str = "") -> dict:
    """What a run records about its source: ``source_task``, ``source_domain`` and
    ``source_label`` (the report's row name; each Taskonomy task is its own source, and
    each fine-tuning mode: ``mode`` is :meth:`FinetuneConfig.mode_suffix`)."""
    spec = InitSpec.parse(init_from)
    task, domain = spec.source()
    return {"source_task": task, "source_domain": domain, "source_label": spec.label() + mode}


def mode_of(config: FinetuneConfig) -> dict:
    """The fine-tuning mode fields a run records (result.json, export/model.json)."""
    return {"freeze_encoder": config.freeze_encoder, "freeze_epochs": config.freeze_epochs,
            "encoder_lr_multiplier": config.encoder_lr_multiplier,
            "init_decoder": config.init_decoder}


def _export(config, tm, meta, subjects, source) -> None:
    save_exported(tm.model, config.model_dir, ExportMeta(
        image_size=meta.image_size, input_channels=config.input_channels,
        num_classes=meta.num_mask_classes, class_names=meta.mask_classes,
        target=config.target, **source,
        **mode_of(config), init_from=config.init_from, train_subjects=len(subjects),
        subset_seed=config.subset_seed, seed=config.seed, slice_context=config.slice_context,
        data_dir=os.path.abspath(config.data_dir), dataset_meta=meta))


def run_finetune(config: FinetuneConfig, build_models: Callable | None = None) -> dict:
    """Fine-tune (or resume) in ``config.model_dir``, holding it (lock and flags check,
    :func:`tl_keras.training.rundir.claim_run_dir`); export, write ``result.json``.

    ``config.evaluate`` is not read here: the callers evaluate the export
    (:func:`tl_keras.studies.finetune_and_evaluate`).

    Args:
      config: the run configuration.
      build_models: ``(config, meta, *, network, num_outputs) -> TaskModels``
        (default: the networks ``config.network`` names; :mod:`tl_keras.models.presets`).

    Returns:
      The :class:`FinetuneResult` as a dict (as in ``model_dir/result.json``).
    """
    config = resolve(config)  # --network auto: the source's network
    meta = validate_finetune(config)
    with claim_run_dir(config):
        return _finetune(config, meta, build_models)


def _finetune(config: FinetuneConfig, meta: DatasetMeta, build_models) -> dict:
    """:func:`run_finetune` in its claimed run directory."""
    done = completed_result(config, FinetuneResult)
    if done is not None:
        return done.to_dict()
    source = source_of(config.init_from, config.mode_suffix())
    subjects = select_subjects(split_subjects(meta, "train"), config.train_subjects or None,
                               config.subset_seed)
    run = train(config, tasks.get("target"), meta, build_models, subjects)
    tm, logs, total, counts, strategy = (run.models, run.logs, run.total_steps, run.weights,
                                         run.strategy)
    result = FinetuneResult(target=config.target, init_from=config.init_from, **source,
                            **mode_of(config),
                            train_subjects=len(subjects), subset_seed=config.subset_seed,
                            seed=config.seed, steps=total, train_slices=counts.slices,
                            precision=run.precision.policy, final=dict(logs))
    if is_chief(strategy):
        _export(config, tm, meta, subjects, source)
        finish_run(config, result)
    return result.to_dict()
