"""Early validation of run configurations: flag combinations, the task's options and
the data set, checked before anything is built or written.

:func:`validate_pretrain` / :func:`validate_finetune` raise
:class:`~tl_keras.training.config.ConfigError` (one line for the CLI to print) and
return the data set's ``dataset.json`` record. This module sits above
:mod:`tl_keras.training.config` and the task registry it reads.
"""
from __future__ import annotations

import dataclasses
import os

from tfrecords_tools.dataset_meta import DatasetMeta
from tfrecords_tools import schema
from tl_keras.models.presets import AUTO, DEFAULT_NETWORK, check_network
from tl_keras.training import tasks
from tl_keras.training.config import (CLASS_WEIGHTS, DECODER_VARIANTS, DOMAINS, LOSSES,
                                      PRECISIONS, STRATEGIES, TARGETS, ConfigError,
                                      FinetuneConfig, PretrainConfig, TrainConfig)
from tl_keras.weights.load_report import WeightLoadError
from tl_keras.weights.spec import InitSpec

LABEL_FLAGS = ("class_weights", "foreground_weight")  # refused by tasks without labels


def _choice(name, value, allowed):
    if value not in allowed:
        raise ConfigError(f"--{name}={value!r} is not one of {', '.join(allowed)}")


def _validate_common(c: TrainConfig) -> DatasetMeta:
    """Checks shared by both kinds of run; returns dataset.json."""
    if not c.data_dir:
        raise ConfigError("--data_dir is required")
    if not c.model_dir:
        raise ConfigError("--model_dir is required")
    _choice("strategy", c.strategy, STRATEGIES)
    _choice("mixed_precision", c.mixed_precision, PRECISIONS)
    _choice("class_weights", c.class_weights, CLASS_WEIGHTS)
    _choice("decoder_variant", c.decoder_variant, DECODER_VARIANTS)
    message = check_network(c.network, c.decoder_variant)
    if message:
        raise ConfigError(message)
    if c.input_channels not in (1, 3):
        raise ConfigError(f"--input_channels must be 1 or 3, got {c.input_channels}")
    for name in ("batch_size", "latent_channels", "log_every", "checkpoint_every",
                 "keep_checkpoints"):
        if getattr(c, name) < 1:
            raise ConfigError(f"--{name} must be >= 1, got {getattr(c, name)}")
    if c.max_steps < 0 or c.epochs < 0:
        raise ConfigError("--max_steps and --epochs must be >= 0")
    if c.foreground_weight <= 0:
        raise ConfigError(f"--foreground_weight must be > 0, got {c.foreground_weight}")
    if c.learning_rate <= 0 or c.weight_decay < 0:
        raise ConfigError("--learning_rate must be > 0 and --weight_decay >= 0")
    if len(c.lr_values) != (len(c.lr_boundaries) + 1 if c.lr_boundaries else 0):
        raise ConfigError(f"--lr_values needs len(--lr_boundaries) + 1 = "
                          f"{len(c.lr_boundaries) + 1} values, got {len(c.lr_values)}")
    if list(c.lr_boundaries) != sorted(set(c.lr_boundaries)):
        raise ConfigError("--lr_boundaries must be strictly increasing")
    if c.jit_compile and c.mixed_precision == "float16":
        raise ConfigError("--jit_compile with --mixed_precision=float16 is not supported; "
                          "use bfloat16")
    if c.strategy == "multi_worker" and not os.environ.get("TF_CONFIG"):
        raise ConfigError("--strategy=multi_worker needs the TF_CONFIG environment variable")
    try:
        meta = schema.read_meta(c.data_dir)
    except (FileNotFoundError, ValueError) as e:
        raise ConfigError(str(e)) from None
    h, w = meta.image_size
    if h != w or h % 16:
        raise ConfigError(f"{c.data_dir}: image_size {list(meta.image_size)} must be square "
                          "and a multiple of 16")
    if c.slice_context and c.input_channels != 3:
        raise ConfigError(f"--slice_context stacks 3 slices as channels; it needs "
                          f"--input_channels 3, got {c.input_channels}")
    if c.slice_context and not schema.context_slices(meta):
        raise ConfigError(f"--slice_context: {c.data_dir} was converted without "
                          "--context_slices (no neighbouring slices stored)")
    if c.image_size and c.image_size != h:
        raise ConfigError(f"--image_size={c.image_size} but {c.data_dir} holds {h} px slices")
    if meta.split("train") is None:
        raise ConfigError(f"{c.data_dir}: dataset.json has no 'train' split")
    return meta


def with_task_options(c: PretrainConfig) -> PretrainConfig:
    """``c`` with ``task_options`` set: the selected task's defaults when None.

    Raises:
      ConfigError: ``--task`` is not a source task, or ``task_options`` is not an
        instance of the task's options class.
    """
    _choice("task", c.task, tasks.source_tasks())
    options_cls = tasks.get(c.task).options
    if options_cls is None:
        if c.task_options is not None:
            raise ConfigError(f"--task={c.task} has no options, got {c.task_options!r}")
        return c
    if c.task_options is None:
        return dataclasses.replace(c, task_options=options_cls())
    if not isinstance(c.task_options, options_cls):
        raise ConfigError(f"--task={c.task} takes {options_cls.__name__} options, got "
                          f"{type(c.task_options).__name__}")
    return c


def resolve_network(c: TrainConfig) -> str:
    """The network ``c`` trains: ``--network``, or for ``auto`` the one its ``--init_from``
    source implies (:meth:`InitSpec.network`), else ``taskonomy``.

    Raises:
      ConfigError: an explicit ``--network`` other than the one the source holds, or an
        unusable source.
    """
    init_from = getattr(c, "init_from", "scratch")
    try:
        implied = InitSpec.parse(init_from).network()
    except WeightLoadError as e:
        raise ConfigError(str(e)) from None
    if c.network == AUTO:
        return implied or DEFAULT_NETWORK
    if implied and implied != c.network:
        raise ConfigError(f"--network={c.network} but --init_from {init_from} holds a "
                          f"{implied} encoder (leave --network=auto, or pass "
                          f"--network={implied})")
    return c.network


def resolve(c: TrainConfig) -> TrainConfig:
    """``c`` as it runs and is recorded in ``flags.json``: ``--network auto`` resolved
    (:func:`resolve_network`) and, for pre-training, the task's options set
    (:func:`with_task_options`). Idempotent."""
    if isinstance(c, PretrainConfig):
        c = with_task_options(c)
    return dataclasses.replace(c, network=resolve_network(c))


def _explicit_label_flags(c: TrainConfig) -> list[str]:
    """The label-only flags whose value differs from their default."""
    defaults = {f.name: f.default for f in dataclasses.fields(c)}
    return [name for name in LABEL_FLAGS if getattr(c, name) != defaults[name]]


def validate_pretrain(c: PretrainConfig) -> DatasetMeta:
    """Validate a pre-training configuration, its task's options and its data; return
    dataset.json. ``task_options`` None stands for the task's defaults."""
    c = with_task_options(c)
    _choice("domain", c.domain, DOMAINS)
    meta = _validate_common(c)
    if c.epochs < 1 and c.max_steps < 1:
        raise ConfigError("--epochs or --max_steps must be >= 1")
    task = tasks.get(c.task)
    if not task.labels and _explicit_label_flags(c):
        raise ConfigError(f"--{_explicit_label_flags(c)[0]} does not apply to --task={c.task}, "
                          "which trains without labels")
    if task.class_weights is None and c.class_weights not in ("none", "median_frequency"):
        raise ConfigError(f"--class_weights={c.class_weights} only applies to "
                          f"--task={' | '.join(tasks.weighted_tasks())}")
    _check_task(task, c, meta)
    _check_implied_network(c, resolve_network(c))
    return meta


def _check_implied_network(c: TrainConfig, network: str) -> None:
    """``--network auto``: the registry's check of the network the source implies (an
    explicit ``--network`` was checked with the common flags), e.g. that a keras-hub
    backbone can feed ``--decoder_variant unet``, before anything is written."""
    if c.network != AUTO:
        return
    message = check_network(network, c.decoder_variant)
    if message:
        raise ConfigError(message)


def _check_task(task: tasks.TaskSpec, c: TrainConfig, meta: DatasetMeta) -> None:
    """The task's own checks (:attr:`tasks.TaskSpec.check`, then its options' ``check``)
    as a ConfigError."""
    message = task.check(c, meta)
    options = getattr(c, "task_options", None)
    if not message and hasattr(options, "check"):
        message = options.check(c, meta)
    if message:
        raise ConfigError(message)


def check_finetune_mode(c: FinetuneConfig, spec: InitSpec) -> None:
    """The fine-tuning mode flags (docs/training.md, "Freezing the encoder")."""
    if c.freeze_encoder and spec.kind == "scratch":
        raise ConfigError("--freeze_encoder with --init_from scratch keeps an encoder nobody "
                          "chose; the frozen random-encoder control is --init_from random")
    if c.freeze_epochs < 0:
        raise ConfigError(f"--freeze_epochs must be >= 0, got {c.freeze_epochs}")
    if c.freeze_epochs and not c.freeze_encoder:
        raise ConfigError(f"--freeze_epochs={c.freeze_epochs} applies only with "
                          "--freeze_encoder")
    if c.freeze_epochs and not c.max_steps and c.freeze_epochs >= c.resolved_epochs():
        raise ConfigError(f"--freeze_epochs={c.freeze_epochs} is not fewer than the run's "
                          f"{c.resolved_epochs()} epochs; --freeze_epochs 0 freezes the whole "
                          "run")
    if not c.encoder_lr_multiplier > 0:
        raise ConfigError(f"--encoder_lr_multiplier must be > 0, got {c.encoder_lr_multiplier}"
                          " (--freeze_encoder keeps the encoder unchanged)")
    if c.freeze_encoder and not c.freeze_epochs and c.encoder_lr_multiplier != 1:
        raise ConfigError(f"--encoder_lr_multiplier={c.encoder_lr_multiplier:g} has no effect "
                          "on an encoder frozen for the whole run; give --freeze_epochs N to "
                          "train it afterwards at that rate")
    split = c.freeze_encoder or c.encoder_lr_multiplier != 1
    if split and c.mixed_precision == "float16":
        raise ConfigError("--freeze_encoder / --encoder_lr_multiplier with "
                          "--mixed_precision=float16 is not supported (one loss scale per "
                          "optimizer); use bfloat16")
    if c.init_decoder and not spec.is_export:
        raise ConfigError(f"--init_decoder needs --init_from pointing at a fine-tuning run "
                          f"(its export/model.json); {c.init_from} has no decoder")


def validate_finetune(c: FinetuneConfig) -> DatasetMeta:
    """Validate a fine-tuning configuration and its data; return dataset.json."""
    _choice("target", c.target, TARGETS)
    _choice("loss", c.loss, LOSSES)
    meta = _validate_common(c)
    _check_task(tasks.get("target"), c, meta)
    n_train = len(meta.split("train").subjects)
    if c.train_subjects < 0 or c.train_subjects > n_train:
        raise ConfigError(f"--train_subjects={c.train_subjects} but the training split has "
                          f"{n_train} subjects")
    try:
        spec = InitSpec.parse(c.init_from)
        spec.check()
        channels = spec.input_channels()
    except WeightLoadError as e:
        raise ConfigError(str(e)) from None
    if channels == 1 and c.input_channels == 3:
        raise ConfigError(f"--init_from {c.init_from}: its first convolution takes 1 input "
                          "channel and only 3 -> 1 is adapted (RGB kernels summed); pass "
                          "--input_channels 1")
    check_finetune_mode(c, spec)
    _check_implied_network(c, resolve_network(c))  # resolving refuses a contradiction
    if c.evaluate and meta.split(c.eval_split) is None:
        raise ConfigError(f"{c.data_dir}: no '{c.eval_split}' split to evaluate "
                          "(pass --noevaluate or --eval_split)")
    return meta
