"""Frozen run configurations of pre-training and fine-tuning, with early validation.

The CLIs parse absl flags into these dataclasses once; library code only sees
the dataclass. Each field is a flag and carries its help text (``metadata["help"]``).
:func:`validate_pretrain` / :func:`validate_finetune` check flag combinations and
the data before anything is built, raising :class:`ConfigError` whose message is
one line for the CLI to print.
"""
from __future__ import annotations

import dataclasses
import os

from tfrecords_tools import schema
from tl_common.cli import UserError
from tl_keras.training import tasks
from tl_keras.weights.load_report import WeightLoadError
from tl_keras.weights.spec import SPEC_HELP, InitSpec

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


def _flag(default, help_text: str):
    """A config field carrying its flag's help text, the one place it is written (absl's
    ``--help`` shows it through :func:`tl_keras.training.flags.define_config_flags`)."""
    return dataclasses.field(default=default, metadata={"help": help_text})


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Options shared by pre-training and fine-tuning (see docs/training.md)."""

    data_dir: str = _flag("", "converted data set (shards + dataset.json) from "
                              "tfrecords_tools.convert")
    model_dir: str = _flag("", "run directory: checkpoints, flags.json, TensorBoard, "
                               "encoders / export")
    image_size: int = _flag(0, "slice size in px; 0 = take it from dataset.json (must match it)")
    input_channels: int = _flag(3, "model input channels: 3 (grey repeated, Taskonomy/ImageNet) "
                                   "or 1")
    latent_channels: int = _flag(8, "encoder compress1 channels (Taskonomy 8; the paper says 4)")
    decoder_variant: str = _flag("taskonomy", "taskonomy (15 layers), paper (10 layers) or unet "
                                              "(skip-connected, fed by the encoder's stages; not "
                                              "for auto-encoding)")
    batch_size: int = _flag(32, "global batch size (divided over replicas)")
    epochs: int = _flag(30, "training epochs (fine-tuning: 0 = by target, stroke 30 / ms 60 / "
                            "anatomy 300)")
    max_steps: int = _flag(0, "if > 0, train exactly this many steps instead of --epochs")
    learning_rate: float = _flag(1e-4, "Adam learning rate (fine-tuning: divided by 10 after "
                                       "half the steps)")
    weight_decay: float = _flag(2e-6, "decoupled weight decay per step, w <- w - wd * w (not "
                                      "scaled by the LR)")
    lr_boundaries: tuple = _flag((), "comma-separated step boundaries of a piecewise-constant LR")
    lr_values: tuple = _flag((), "comma-separated LRs, one more than --lr_boundaries")
    class_weights: str = _flag("median_frequency",
                               "median_frequency | inverse | enet (from the training set) | "
                               "foreground (background 1, others --foreground_weight) | none")
    foreground_weight: float = _flag(5.0, "--class_weights=foreground: weight of every "
                                          "non-background class")
    seed: int = _flag(0, "seed of weights init, data order and dropout")
    deterministic: bool = _flag(False, "deterministic TF ops (resumed runs reproduce "
                                       "uninterrupted ones)")
    mixed_precision: str = _flag("auto", "auto (the faster of float32 and the CPU's / GPU's "
                                         "native bfloat16 / float16, timed on the run's own "
                                         "step once per machine and network, cached) | none "
                                         "(float32) | bfloat16 | float16 (dynamic loss "
                                         "scaling)")
    jit_compile: bool = _flag(False, "XLA-compile forward and backward passes")
    strategy: str = _flag("default", "default | mirrored (local devices) | multi_worker "
                                     "(TF_CONFIG)")
    log_every: int = _flag(100, "write TensorBoard train scalars every N steps")
    checkpoint_every: int = _flag(1000, "checkpoint every N steps (and at every epoch end)")
    keep_checkpoints: int = _flag(2, "checkpoints to keep")
    keep_checkpoints_after_done: bool = _flag(
        False, "keep checkpoints/ once the run is complete (fine-tuning and sweeps: no by "
               "default, only the export and results stay)")
    validate: bool = _flag(True, "compute the validation loss (split 'val') after each epoch")
    overwrite: bool = _flag(False, "replace a run with other flags in --model_dir (otherwise "
                                   "refused; the folder is emptied first)")


def _new_default(base, name: str, default):
    """Field ``name`` of dataclass ``base`` with another default and the same help."""
    return _flag(default, base.__dataclass_fields__[name].metadata["help"])


@dataclasses.dataclass(frozen=True)
class PretrainConfig(TrainConfig):
    """Source-task pre-training (docs/method.md section 4)."""

    task: str = _flag("segmentation", f"source task: {' | '.join(tasks.source_tasks())}")
    domain: str = _flag("t1", "source domain recorded with the encoder: t1 | natural")
    disc_start_step: int = _flag(26000, "auto-encoding: step at which the GAN discriminator "
                                        "switches on (paper: 26000 on T1, 25000 on natural "
                                        "images)")
    disc_learning_rate: float = _flag(1e-5, "auto-encoding: discriminator SGD learning rate")
    discriminator_variant: str = _flag("taskonomy", "taskonomy (pix2pix) or paper")
    classification_softmax: bool = _flag(False, "classification: softmax cross-entropy instead "
                                                "of class-wise sigmoid BCE (the paper's text)")
    keep_checkpoints_after_done: bool = _flag(
        True, "keep checkpoints/ once the run is complete (pre-training: yes by default; few, "
              "costly runs stay extendable with a larger --max_steps)")


@dataclasses.dataclass(frozen=True)
class FinetuneConfig(TrainConfig):
    """Target-task fine-tuning (docs/method.md section 6); ``epochs`` 0 = by target."""

    target: str = _flag("stroke", "target task: stroke | ms | anatomy (sets the default epochs)")
    init_from: str = _flag("scratch", f"encoder initialisation: {SPEC_HELP}")
    train_subjects: int = _flag(0, "K training subjects drawn from the training split (0 = all)")
    subset_seed: int = _flag(0, "seed of the K-subject draw")
    epochs: int = _new_default(TrainConfig, "epochs", 0)
    weight_decay: float = _new_default(TrainConfig, "weight_decay", 2e-4)
    loss: str = _flag("cross_entropy", "fine-tuning loss: cross_entropy (weighted, the paper's) "
                                       "| cross_entropy_dice (plus soft Dice of the foreground "
                                       "classes)")
    eval_split: str = _flag("test", "split evaluated after training")
    evaluate: bool = _flag(True, "evaluate (or predict) --eval_split after training")

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
