"""absl flag definitions for the training CLIs, generated from the config dataclasses.

Every dataclass field becomes a flag of the same name, default and type, with
the help text below; :func:`config_from_flags` turns parsed flags back into the
frozen dataclass. Only the CLI modules call these.
"""
from __future__ import annotations

import dataclasses

from absl import flags

from tl_keras.training.config import ConfigError
from tl_keras.training import tasks
from tl_keras.weights.spec import SPEC_HELP

HELP = {
    "data_dir": "converted data set (shards + dataset.json) from tfrecords_tools.convert",
    "model_dir": "run directory: checkpoints, flags.json, TensorBoard, encoders / export",
    "image_size": "slice size in px; 0 = take it from dataset.json (must match it)",
    "input_channels": "model input channels: 3 (grey repeated, Taskonomy/ImageNet) or 1",
    "latent_channels": "encoder compress1 channels (Taskonomy 8; the paper says 4)",
    "decoder_variant": "taskonomy (15 layers), paper (10 layers) or unet (skip-connected, "
                       "fed by the encoder's stages; not for auto-encoding)",
    "batch_size": "global batch size (divided over replicas)",
    "epochs": "training epochs (fine-tuning: 0 = by target, stroke 30 / ms 60 / anatomy 300)",
    "max_steps": "if > 0, train exactly this many steps instead of --epochs",
    "learning_rate": "Adam learning rate (fine-tuning: divided by 10 after half the steps)",
    "weight_decay": "decoupled weight decay per step, w <- w - wd * w (not scaled by the LR)",
    "lr_boundaries": "comma-separated step boundaries of a piecewise-constant LR",
    "lr_values": "comma-separated LRs, one more than --lr_boundaries",
    "class_weights": "median_frequency | inverse | enet (from the training set) | "
                     "foreground (background 1, others --foreground_weight) | none",
    "foreground_weight": "--class_weights=foreground: weight of every non-background class",
    "loss": "fine-tuning loss: cross_entropy (weighted, the paper's) | cross_entropy_dice "
            "(plus soft Dice of the foreground classes)",
    "seed": "seed of weights init, data order and dropout",
    "deterministic": "deterministic TF ops (resumed runs reproduce uninterrupted ones)",
    "mixed_precision": "auto (bfloat16 where the CPU / GPU computes it natively, else none) "
                       "| none (float32) | bfloat16 | float16 (dynamic loss scaling)",
    "jit_compile": "XLA-compile forward and backward passes",
    "strategy": "default | mirrored (local devices) | multi_worker (TF_CONFIG)",
    "log_every": "write TensorBoard train scalars every N steps",
    "checkpoint_every": "checkpoint every N steps (and at every epoch end)",
    "keep_checkpoints": "checkpoints to keep",
    "keep_checkpoints_after_done": "keep checkpoints/ once the run is complete (default: "
                                   "pretrain yes, to train longer later; finetune and sweep "
                                   "no, only the export and results stay)",
    "validate": "compute the validation loss (split 'val') after each epoch",
    "overwrite": "replace a run with other flags in --model_dir (otherwise refused; "
                 "the folder is emptied first)",
    "task": f"source task: {' | '.join(tasks.source_tasks())}",
    "domain": "source domain recorded with the encoder: t1 | natural",
    "disc_start_step": "auto-encoding: step at which the GAN discriminator switches on "
                       "(paper: 26000 on T1, 25000 on natural images)",
    "disc_learning_rate": "auto-encoding: discriminator SGD learning rate",
    "discriminator_variant": "taskonomy (pix2pix) or paper",
    "classification_softmax": "classification: softmax cross-entropy instead of class-wise "
                              "sigmoid BCE (the paper's text)",
    "target": "target task: stroke | ms | anatomy (sets the default epochs)",
    "init_from": f"encoder initialisation: {SPEC_HELP}",
    "train_subjects": "K training subjects drawn from the training split (0 = all)",
    "subset_seed": "seed of the K-subject draw",
    "eval_split": "split evaluated after training",
    "evaluate": "evaluate --eval_split after training (tl_keras.finetune, tl_keras.sweep)",
}


def define_config_flags(config_cls, overrides: dict | None = None, skip=(),
                        flag_values=flags.FLAGS) -> None:
    """Define one flag per field of ``config_cls`` (defaults from the dataclass).

    ``flag_values`` lets tests use a fresh ``absl.flags.FlagValues``.
    """
    overrides = overrides or {}
    fv = dict(flag_values=flag_values)
    for field in dataclasses.fields(config_cls):
        if field.name in skip or field.name in flag_values:
            continue
        default = overrides.get(field.name, field.default)
        help_ = HELP.get(field.name, field.name)
        if field.type in ("bool", bool):
            flags.DEFINE_bool(field.name, default, help_, **fv)
        elif field.type in ("int", int):
            flags.DEFINE_integer(field.name, default, help_, **fv)
        elif field.type in ("float", float):
            flags.DEFINE_float(field.name, default, help_, **fv)
        elif field.type in ("tuple", tuple):
            flags.DEFINE_list(field.name, list(default), help_, **fv)
        else:
            flags.DEFINE_string(field.name, default, help_, **fv)


def config_from_flags(config_cls, flag_values=flags.FLAGS, **extra):
    """The frozen ``config_cls`` from the parsed flags (lists -> tuples of numbers)."""
    values = {}
    for field in dataclasses.fields(config_cls):
        if field.name in extra or field.name not in flag_values:
            continue
        value = flag_values[field.name].value
        if field.type in ("tuple", tuple):
            cast = int if field.name == "lr_boundaries" else float
            try:
                value = tuple(cast(v) for v in value)
            except ValueError:
                raise ConfigError(f"--{field.name}={','.join(value)}: not a list of numbers")
        values[field.name] = value
    return config_cls(**values, **extra)
