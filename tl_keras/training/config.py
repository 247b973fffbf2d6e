"""Frozen run configurations of pre-training and fine-tuning: the bottom of ``training/``.

The CLIs parse absl flags into these dataclasses once; library code only sees
the dataclass. Each field made with :func:`option` is a flag and carries its help text
(``metadata["help"]``). This module imports nothing from ``tl_keras.training``: the
checks of flag combinations and data (which read the task registry) are
:mod:`tl_keras.training.validation`, raising :class:`ConfigError` whose message is one
line for the CLI to print. A task's own options are a dataclass of its module
(:attr:`tl_keras.training.tasks.TaskSpec.options`), held in ``PretrainConfig.task_options``.
"""
from __future__ import annotations

import dataclasses

from tl_common.cli import UserError
from tl_keras.models.presets import network_choices
from tl_keras.weights.spec import SPEC_HELP, mode_suffix

DOMAINS = ("t1", "natural")
TARGETS = ("stroke", "ms", "anatomy")
TARGET_EPOCHS = {"stroke": 30, "ms": 60, "anatomy": 300}
STRATEGIES = ("default", "mirrored", "multi_worker")
PRECISIONS = ("auto", "none", "bfloat16", "float16")
CLASS_WEIGHTS = ("median_frequency", "inverse", "enet", "foreground", "none")
DECODER_VARIANTS = ("taskonomy", "paper", "unet")
LOSSES = ("cross_entropy", "cross_entropy_dice")


class ConfigError(UserError, ValueError):
    """An invalid flag combination or missing data (message: one line)."""


def option(default, help_text: str):
    """A config field carrying its flag's help text, the one place it is written (absl's
    ``--help`` shows it through :func:`tl_keras.training.flags.define_config_flags`).
    Task options classes make their fields with it too."""
    return dataclasses.field(default=default, metadata={"help": help_text})


_flag = option


def flag_fields(config_cls) -> tuple:
    """The fields of ``config_cls`` that are flags (all but those marked
    ``metadata["flag"] = False``, such as ``PretrainConfig.task_options``)."""
    return tuple(f for f in dataclasses.fields(config_cls) if f.metadata.get("flag", True))


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Options shared by pre-training and fine-tuning (see docs/training.md)."""

    data_dir: str = _flag("", "converted data set (shards + dataset.json) from "
                              "tfrecords_tools.convert")
    model_dir: str = _flag("", "run directory: checkpoints, flags.json, TensorBoard, "
                               "encoders / export")
    image_size: int = _flag(0, "slice size in px; 0 = take it from dataset.json (must match it)")
    network: str = _flag("auto", "the networks trained: auto (fine-tuning: the network of the "
                                 "--init_from source, else taskonomy) | "
                                 + " | ".join(network_choices()[1:])
                                 + " (tl_keras.models.presets)")
    input_channels: int = _flag(3, "model input channels: 3 (grey repeated, Taskonomy/ImageNet) "
                                   "or 1")
    slice_context: bool = _flag(False, "2.5-D input: the slice and its two axial neighbours "
                                       "[previous, slice, next] as the 3 input channels "
                                       "(needs --input_channels 3 and a data set converted "
                                       "with --context_slices)")
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
                                   "refused; only what runs of ours wrote there is deleted)")


def _new_default(base, name: str, default):
    """Field ``name`` of dataclass ``base`` with another default and the same help."""
    return _flag(default, base.__dataclass_fields__[name].metadata["help"])


@dataclasses.dataclass(frozen=True)
class PretrainConfig(TrainConfig):
    """Source-task pre-training (docs/method.md section 4)."""

    task: str = _flag("segmentation", "source task, a source task of the registry "
                                      "tl_keras.training.tasks")
    domain: str = _flag("t1", "source domain recorded with the encoder: t1 | natural")
    keep_checkpoints_after_done: bool = _flag(
        True, "keep checkpoints/ once the run is complete (pre-training: yes by default; few, "
              "costly runs stay extendable with a larger --max_steps)")
    # Not a flag: an instance of the selected task's options class (TaskSpec.options),
    # built by the CLI from that task's flags; None = the task's defaults.
    task_options: object | None = dataclasses.field(default=None, metadata={"flag": False})


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
    freeze_encoder: bool = _flag(False, "keep the encoder frozen (weights and batch-norm "
                                        "statistics unchanged, BN in inference mode) and "
                                        "train the decoder only; not with --init_from "
                                        "scratch (use random)")
    freeze_epochs: int = _flag(0, "--freeze_encoder: 0 = frozen for the whole run; N > 0 = "
                                  "frozen for the first N epochs, then trained")
    encoder_lr_multiplier: float = _flag(1.0, "the encoder's learning rate is the run's LR "
                                              "(and schedule) times this; weight decay stays "
                                              "--weight_decay per step for every weight")
    init_decoder: bool = _flag(False, "--init_from a fine-tuning run: also copy its decoder "
                                      "layers that match by name and shape (the others, "
                                      "e.g. another class count's output layer, stay "
                                      "random)")

    def resolved_epochs(self) -> int:
        return self.epochs or TARGET_EPOCHS[self.target]

    def freeze_steps(self, steps_per_epoch: int, total_steps: int) -> int:
        """Steps the encoder stays frozen: 0, ``total_steps`` (the whole run) or the
        first ``freeze_epochs`` epochs (at most the whole run)."""
        if not self.freeze_encoder:
            return 0
        if not self.freeze_epochs:
            return total_steps
        return min(self.freeze_epochs * steps_per_epoch, total_steps)

    def mode_suffix(self) -> str:
        """What this run's fine-tuning mode adds to its source label (" (frozen)" ...)."""
        return mode_suffix(self.freeze_encoder, self.freeze_epochs, self.encoder_lr_multiplier,
                           self.init_decoder)

