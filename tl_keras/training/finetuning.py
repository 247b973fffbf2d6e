"""Target-task fine-tuning (docs/method.md section 6): pre-trained encoder, random
decoder, weighted cross-entropy, LR / 10 after half the steps; export and
``result.json``. Evaluating the export is the caller's step (``tl_keras.studies``):
training never calls evaluation."""
from __future__ import annotations

import functools
import os
from typing import Callable

import numpy as np

from tl_common.io import atomic_path
from tl_keras.data.dataset import select_subjects, split_subjects
from tl_keras.models.export import save_exported
from tl_keras.training import losses, steps
from tl_keras.training.checkpointing import RunCheckpoint, remove_debris
from tl_keras.training.class_weights import compute_class_weights, read_slice_counts
from tl_keras.training.config import FinetuneConfig, validate_finetune
from tl_keras.training.loop import DataSpec, LoopSpec, distributed_eval_data, evaluate, fit
from tl_keras.training.strategy import is_chief, work_dir
from tl_keras.models.export import ExportMeta, save_exported
from tl_keras.training.results import FinetuneResult, result_path
from tl_keras.training.runs import (cached_json, completed_result, finish_run, make_optimizer,
                                    schedule, start_run, weights_record)
from tl_keras.weights.spec import InitSpec


def build_finetune_models(config: FinetuneConfig, meta: dict):
    """Encoder + random decoder with ``num_mask_classes`` logits (in the strategy scope)."""
    from tl_keras.models import build_encoder, build_task_models
    encoder = build_encoder(image_size=int(meta["image_size"][0]),
                            input_channels=config.input_channels,
                            latent_channels=config.latent_channels)
    return build_task_models("target", encoder, num_classes=int(meta["num_mask_classes"]),
                             decoder_variant=config.decoder_variant)


def source_of(init_from: str) -> dict:
    """What a run records about its source: ``source_task``, ``source_domain`` and
    ``source_label`` (the report's row name; each Taskonomy task is its own source)."""
    spec = InitSpec.parse(init_from)
    task, domain = spec.source()
    return {"source_task": task, "source_domain": domain, "source_label": spec.label()}


def _train_counts(config: FinetuneConfig, meta: dict, subjects) -> dict:
    counts = read_slice_counts(config.data_dir, "train", "mask", meta, subjects)
    weights = (compute_class_weights(counts, config.class_weights, config.foreground_weight)
               if len(counts) else [])
    return weights_record(np.asarray(weights), config.class_weights, len(counts))


def _export(config, tm, meta, subjects, source) -> None:
    save_exported(tm.model, config.model_dir, ExportMeta(
        image_size=tuple(meta["image_size"]), input_channels=config.input_channels,
        num_classes=int(meta["num_mask_classes"]),
        class_names=tuple(meta.get("mask_classes") or ()), target=config.target, **source,
        init_from=config.init_from, train_subjects=len(subjects),
        subset_seed=config.subset_seed, seed=config.seed,
        data_dir=os.path.abspath(config.data_dir), dataset_meta=meta))


def run_finetune(config: FinetuneConfig, build_models: Callable | None = None) -> dict:
    """Fine-tune (or resume) in ``config.model_dir``; export, write ``result.json``.

    ``config.evaluate`` is not read here: the callers evaluate the export
    (:func:`tl_keras.studies.finetune_and_evaluate`).

    Args:
      config: the run configuration.
      build_models: ``(config, meta) -> TaskModels`` (default: the Taskonomy networks).

    Returns:
      The :class:`FinetuneResult` as a dict (as in ``model_dir/result.json``).
    """
    meta = validate_finetune(config)
    done = completed_result(config)
    if done is not None:
        return FinetuneResult.from_dict(done, result_path(config.model_dir)).to_dict()
    source = source_of(config.init_from)
    strategy = start_run(config)
    subjects = select_subjects(split_subjects(meta, "train"), config.train_subjects or None,
                               config.subset_seed)
    counts = cached_json(os.path.join(config.model_dir, "class_weights.json"),
                         lambda: _train_counts(config, meta, subjects))
    steps_per_epoch, total = schedule(config, counts["slices"])
    loss_fn = functools.partial(losses.segmentation_loss,
                                class_weights=None if config.class_weights == "none"
                                else counts["weights"], dice=config.loss == "cross_entropy_dice")
    with strategy.scope():
        tm = (build_models or build_finetune_models)(config, meta)
        optimizer = make_optimizer(config, [max(total // 2, 1)],
                                   [config.learning_rate, config.learning_rate / 10])
        optimizer.build(tm.model.trainable_variables)
        train = steps.distribute(steps.make_supervised_step(
            tm.model, optimizer, loss_fn, config.batch_size, config.jit_compile), strategy)
        if is_chief(strategy):
            remove_debris(config.model_dir)
        ckpt = RunCheckpoint(work_dir(config.model_dir, strategy),
                             {"model": tm.model, "optimizer": optimizer}, config.keep_checkpoints)

        def initialise():  # only when there is no checkpoint to resume from
            report = InitSpec.parse(config.init_from).load(tm.encoder)
            print(f"init_from {config.init_from}: {report.summary()}", flush=True)

        start = ckpt.restore_or_initialize(
            None if config.init_from == "scratch" else initialise)
    data = DataSpec(config.data_dir, "target", config.batch_size, config.input_channels,
                    config.seed, meta, subjects=subjects)
    validate = None
    if config.validate and "val" in meta["splits"]:
        eval_step = steps.distribute(steps.make_eval_step(tm.model, loss_fn), strategy)
        val_data = distributed_eval_data(strategy, data, "val")
        validate = lambda: evaluate(eval_step, val_data)  # noqa: E731
    loop = LoopSpec(steps_per_epoch, total, lambda step: train, validate,
                    lambda *args: None, config.log_every, config.checkpoint_every)
    logs = fit(strategy, data, loop, ckpt, work_dir(config.model_dir, strategy), start)
    result = FinetuneResult(target=config.target, init_from=config.init_from, **source,
                            train_subjects=len(subjects), subset_seed=config.subset_seed,
                            seed=config.seed, steps=total, train_slices=counts["slices"],
                            final=dict(logs)).to_dict()
    if is_chief(strategy):
        _export(config, tm, meta, subjects, source)
        finish_run(config, result)
    return result
