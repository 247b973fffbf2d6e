"""Source-task pre-training (docs/method.md section 4): segmentation, auto-encoding
(L1 + conditional GAN) or multi-label classification, exporting the encoder."""
from __future__ import annotations

import functools
import os
from typing import Callable

from tl_keras.training import losses, steps
from tl_keras.training.checkpointing import RunCheckpoint, remove_debris
from tl_keras.training.class_weights import class_weights_for, ignored_class
from tl_keras.training.config import PretrainConfig, validate_pretrain
from tl_keras.training.loop import DataSpec, LoopSpec, distributed_eval_data, evaluate, fit
from tl_keras.training.optimizers import make_discriminator_optimizer
from tl_keras.training.runs import (cached_json, completed_result, finish_run, make_optimizer,
                                    schedule, start_run, weights_record)
from tl_keras.training.strategy import is_chief, work_dir
from tl_keras.weights import save_encoder

ENCODER_BEST, ENCODER_LAST = "encoder_best", "encoder_last"


def _loss_fn(config: PretrainConfig, class_weights):
    if config.task == "segmentation":
        return functools.partial(losses.weighted_cross_entropy, class_weights=class_weights)
    if config.task == "classification":
        return functools.partial(losses.multilabel_cross_entropy,
                                 softmax=config.classification_softmax)
    return losses.l1_loss


def _num_outputs(config: PretrainConfig, meta: dict):
    if config.task == "segmentation":
        return int(meta["num_tissue_classes"])
    if config.task == "classification":
        return len(meta["presence_labels"])
    return None


def build_pretrain_models(config: PretrainConfig, meta: dict):
    """Encoder and task models for ``config`` (call inside the strategy scope)."""
    from tl_keras.models import build_encoder, build_task_models
    encoder = build_encoder(image_size=int(meta["image_size"][0]),
                            input_channels=config.input_channels,
                            latent_channels=config.latent_channels)
    return build_task_models(config.task, encoder, num_classes=_num_outputs(config, meta),
                             decoder_variant=config.decoder_variant,
                             discriminator_variant=config.discriminator_variant)


def run_pretrain(config: PretrainConfig, build_models: Callable | None = None) -> dict:
    """Pre-train (or resume) in ``config.model_dir``; write and return ``result.json``.

    Exports ``encoder_last`` after every epoch and ``encoder_best`` whenever the
    validation loss improves, in the format of :func:`tl_keras.weights.save_encoder`.
    The result (final epoch logs as ``final_*``, best epoch) of a resumed run
    equals that of an uninterrupted one.

    Args:
      config: the run configuration.
      build_models: ``(config, meta) -> TaskModels`` (default: the Taskonomy networks).
    """
    meta = validate_pretrain(config)
    done = completed_result(config, extendable=True)
    if done is not None:
        return done
    strategy = start_run(config)
    steps_per_epoch, total = schedule(config, int(meta["splits"]["train"]["slices"]))
    class_weights = None
    # An ignore class (dataset.json ignore_class) needs weights even with "none": its weight is 0.
    if config.task == "segmentation" and (config.class_weights != "none"
                                          or ignored_class(meta, "tissue") is not None):
        record = cached_json(
            os.path.join(config.model_dir, "class_weights.json"),
            lambda: weights_record(class_weights_for(config.data_dir, "train", "tissue", meta,
                                                     config.class_weights,
                                                     foreground_weight=config.foreground_weight),
                                   config.class_weights, meta["splits"]["train"]["slices"]))
        class_weights = record["weights"]
    loss_fn = _loss_fn(config, class_weights)
    gb = config.batch_size
    with strategy.scope():
        tm = (build_models or build_pretrain_models)(config, meta)
        optimizer = make_optimizer(config)
        optimizer.build(tm.model.trainable_variables)
        objects = {"model": tm.model, "optimizer": optimizer}
        train = steps.distribute(steps.make_supervised_step(
            tm.model, optimizer, loss_fn, gb, config.jit_compile), strategy)
        step_for = lambda step: train  # noqa: E731
        if config.task == "autoencoding":
            d_opt = make_discriminator_optimizer(config.disc_learning_rate,
                                                 loss_scale=config.mixed_precision == "float16")
            d_opt.build(tm.discriminator.trainable_variables)
            objects.update(discriminator=tm.discriminator, d_optimizer=d_opt)
            gan = steps.distribute(steps.make_gan_step(
                tm.model, tm.discriminator, optimizer, d_opt, gb,
                jit_compile=config.jit_compile), strategy)
            step_for = lambda step: gan if step >= config.disc_start_step else train  # noqa
        if is_chief(strategy):
            remove_debris(config.model_dir)
        ckpt = RunCheckpoint(work_dir(config.model_dir, strategy), objects,
                             config.keep_checkpoints)
        start = ckpt.restore_or_initialize()
    data = DataSpec(config.data_dir, config.task, gb, config.input_channels, config.seed, meta)
    validate = None
    if config.validate and "val" in meta["splits"]:
        eval_step = steps.distribute(steps.make_eval_step(tm.model, loss_fn), strategy)
        val_data = distributed_eval_data(strategy, data, "val")
        validate = lambda: evaluate(eval_step, val_data)  # noqa: E731

    def export(epoch, logs, is_best):
        if not is_chief(strategy):
            return
        provenance = {"epoch": epoch + 1, "logs": logs, "data_dir": config.data_dir}
        names = [ENCODER_LAST] + ([ENCODER_BEST] if is_best else [])
        for name in names:
            save_encoder(tm.encoder, os.path.join(config.model_dir, name),
                         source_task=config.task, domain=config.domain, provenance=provenance)

    loop = LoopSpec(steps_per_epoch, total, step_for, validate, export, config.log_every,
                    config.checkpoint_every)
    fit(strategy, data, loop, ckpt, work_dir(config.model_dir, strategy), start)
    result = pretrain_result(config, ckpt.record.history, total)
    if is_chief(strategy):
        finish_run(config, result)
    return result


def pretrain_result(config: PretrainConfig, history: list, total_steps: int) -> dict:
    """The record of a finished pre-training from its per-epoch logs."""
    scores = [logs.get("val_loss", logs.get("loss", float("inf"))) for logs in history]
    best = min(range(len(scores)), key=scores.__getitem__)  # first of equal scores
    return {"task": config.task, "domain": config.domain, "seed": config.seed,
            "steps": total_steps, "epochs": len(history), "best_epoch": best + 1,
            "best_score": scores[best], **{f"final_{k}": v for k, v in history[-1].items()}}
