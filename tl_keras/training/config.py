"""Frozen run configurations of pre-training and fine-tuning, with early validation.

The CLIs parse absl flags into these dataclasses once; library code only sees
the dataclass. :func:`validate_pretrain` / :func:`validate_finetune` check flag
combinations and the data before anything is built, raising :class:`ConfigError`
whose message is one line for the CLI to print.
"""
from __future__ import annotations

import dataclasses
import os

from tfrecords_tools import schema
from tl_common.cli import UserError
from tl_keras.training import tasks
from tl_keras.weights.load_report import WeightLoadError
from tl_keras.weights.spec import InitSpec

DOMAINS = ("t1", "natural")
TARGETS = ("stroke", "ms", "anatomy")
TARGET_EPOCHS = {"stroke": 30, "ms": 60, "anatomy": 300}
STRATEGIES = ("default", "mirrored", "multi_worker")
PRECISIONS = ("auto", "none", "bfloat16", "float16")
CLASS_WEIGHTS = ("median_frequency", "inverse", "enet", "foreground", "none")
DECODER_VARIANTS = ("taskonomy", "paper", "unet")
DISCRIMINATOR_VARIANTS = ("taskonomy", "paper")
LOSSES = ("cross_entropy", "cross_entropy_dice")


class ConfigError(UserError, ValueError):
    """An invalid flag combination or missing data (message: one line)."""


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Options shared by pre-training and fine-tuning (see docs/training.md)."""

    data_dir: str = ""
    model_dir: str = ""
    image_size: int = 0            # 0: take it from dataset.json
    input_channels: int = 3
    latent_channels: int = 8
    decoder_variant: str = "taskonomy"
    batch_size: int = 32           # global batch (split over replicas)
    epochs: int = 30
    max_steps: int = 0             # 0: epochs * steps per epoch
    learning_rate: float = 1e-4
    weight_decay: float = 2e-6     # fixed per-step decoupled decay
    lr_boundaries: tuple = ()
    lr_values: tuple = ()
    class_weights: str = "median_frequency"
    foreground_weight: float = 5.0  # class_weights=foreground: weight of every non-background
    seed: int = 0
    deterministic: bool = False
    mixed_precision: str = "auto"           # bfloat16 where native (strategy.py)
    jit_compile: bool = False
    strategy: str = "default"
    log_every: int = 100
    checkpoint_every: int = 1000
    keep_checkpoints: int = 2
    keep_checkpoints_after_done: bool = False  # False: only the export stays
    validate: bool = True
    overwrite: bool = False        # replace a run with other flags in model_dir


@dataclasses.dataclass(frozen=True)
class PretrainConfig(TrainConfig):
    """Source-task pre-training (docs/method.md section 4)."""

    task: str = "segmentation"
    domain: str = "t1"
    disc_start_step: int = 26000
    disc_learning_rate: float = 1e-5
    discriminator_variant: str = "taskonomy"
    classification_softmax: bool = False
    keep_checkpoints_after_done: bool = True  # few, costly runs: keep them extendable


@dataclasses.dataclass(frozen=True)
class FinetuneConfig(TrainConfig):
    """Target-task fine-tuning (docs/method.md section 6); ``epochs`` 0 = by target."""

    target: str = "stroke"
    init_from: str = "scratch"
    train_subjects: int = 0        # 0: every subject of the training split
    subset_seed: int = 0
    epochs: int = 0
    weight_decay: float = 2e-4
    loss: str = "cross_entropy"    # the paper's; cross_entropy_dice adds soft Dice
    eval_split: str = "test"
    evaluate: bool = True

    def resolved_epochs(self) -> int:
        return self.epochs or TARGET_EPOCHS[self.target]


def _choice(name, value, allowed):
    if value not in allowed:
        raise ConfigError(f"--{name}={value!r} is not one of {', '.join(allowed)}")


def _validate_common(c: TrainConfig) -> dict:
    """Checks shared by both kinds of run; returns dataset.json."""
    if not c.data_dir:
        raise ConfigError("--data_dir is required")
    if not c.model_dir:
        raise ConfigError("--model_dir is required")
    _choice("strategy", c.strategy, STRATEGIES)
    _choice("mixed_precision", c.mixed_precision, PRECISIONS)
    _choice("class_weights", c.class_weights, CLASS_WEIGHTS)
    _choice("decoder_variant", c.decoder_variant, DECODER_VARIANTS)
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
    h, w = meta["image_size"]
    if h != w or h % 16:
        raise ConfigError(f"{c.data_dir}: image_size {meta['image_size']} must be square "
                          "and a multiple of 16")
    if c.image_size and c.image_size != h:
        raise ConfigError(f"--image_size={c.image_size} but {c.data_dir} holds {h} px slices")
    if "train" not in meta["splits"]:
        raise ConfigError(f"{c.data_dir}: dataset.json has no 'train' split")
    return meta


def validate_pretrain(c: PretrainConfig) -> dict:
    """Validate a pre-training configuration and its data; return dataset.json."""
    _choice("task", c.task, tasks.source_tasks())
    _choice("domain", c.domain, DOMAINS)
    _choice("discriminator_variant", c.discriminator_variant, DISCRIMINATOR_VARIANTS)
    meta = _validate_common(c)
    if c.epochs < 1 and c.max_steps < 1:
        raise ConfigError("--epochs or --max_steps must be >= 1")
    _check_task(tasks.get(c.task), c, meta)
    if (c.task not in tasks.weighted_tasks()
            and c.class_weights not in ("none", "median_frequency")):
        raise ConfigError(f"--class_weights={c.class_weights} only applies to "
                          f"--task={' | '.join(tasks.weighted_tasks())}")
    return meta


def _check_task(task: tasks.TaskSpec, c: TrainConfig, meta: dict) -> None:
    """The task's own checks (:attr:`tasks.TaskSpec.check`) as a ConfigError."""
    message = task.check(c, meta)
    if message:
        raise ConfigError(message)


def validate_finetune(c: FinetuneConfig) -> dict:
    """Validate a fine-tuning configuration and its data; return dataset.json."""
    _choice("target", c.target, TARGETS)
    _choice("loss", c.loss, LOSSES)
    meta = _validate_common(c)
    _check_task(tasks.get("target"), c, meta)
    n_train = len(meta["splits"]["train"]["subjects"])
    if c.train_subjects < 0 or c.train_subjects > n_train:
        raise ConfigError(f"--train_subjects={c.train_subjects} but the training split has "
                          f"{n_train} subjects")
    try:
        InitSpec.parse(c.init_from).check()
    except WeightLoadError as e:
        raise ConfigError(str(e)) from None
    if c.evaluate and c.eval_split not in meta["splits"]:
        raise ConfigError(f"{c.data_dir}: no '{c.eval_split}' split to evaluate "
                          "(pass --noevaluate or --eval_split)")
    return meta
