"""absl flag definitions for the training CLIs, generated from the config dataclasses.

Every dataclass field becomes a flag of the same name, default and type, with
the help text below; :func:`config_from_flags` turns parsed flags back into the
frozen dataclass. Only the CLI modules call these.
"""
from __future__ import annotations

import dataclasses
import os
import sys

from absl import flags

from tl_keras.training import tasks
from tl_keras.utils import console
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
    "evaluate": "evaluate (or predict) --eval_split after training",
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
                from tl_keras.training.config import ConfigError
                raise ConfigError(f"--{field.name}={','.join(value)}: not a list of numbers")
        values[field.name] = value
    return config_cls(**values, **extra)


class FlagfileError(ValueError):
    """A ``--flagfile`` that cannot be read (message: one line)."""


def _is_flagfile(arg: str) -> bool:
    return arg.startswith(("--flagfile=", "-flagfile="))


def _flagfile_lines(path: str, stack: tuple) -> list[str]:
    """The flag lines of ``path`` with its includes expanded in place (absl's syntax)."""
    if os.path.abspath(path) in stack:
        raise FlagfileError(f"{path}: includes itself (via {' -> '.join(stack)})")
    try:
        with open(path) as f:
            lines = f.readlines()
    except OSError as e:
        where = f" (included from {stack[-1]})" if stack else ""
        raise FlagfileError(f"--flagfile={path}{where}: {e.strerror}") from None
    out = []
    for line in lines:
        if line.isspace() or line.startswith(("#", "//")):
            continue
        if _is_flagfile(line):
            include = os.path.expanduser(line.split("=", 1)[1].strip())
            beside = os.path.join(os.path.dirname(path), include)
            # Relative to the including file, so experiments run from any folder; a path
            # that only exists relative to the working folder (absl's rule) still works.
            if not os.path.isabs(include) and (os.path.exists(beside)
                                               or not os.path.exists(include)):
                include = beside
            out += _flagfile_lines(include, stack + (os.path.abspath(path),))
        else:
            out.append(line.strip())
    return out


def expand_flagfiles(argv: list[str]) -> list[str]:
    """Replace each ``--flagfile`` of ``argv`` by the flags it holds, includes resolved
    relative to the including file (absl resolves them relative to the working folder).

    Raises:
      FlagfileError: a flagfile is missing or includes itself.
    """
    out, rest = list(argv[:1]), list(argv[1:])
    while rest:
        arg = rest.pop(0)
        if arg == "--":
            return out + [arg] + rest
        if arg in ("--flagfile", "-flagfile") and rest:
            arg = "--flagfile=" + rest.pop(0)
        if _is_flagfile(arg):
            out += _flagfile_lines(os.path.expanduser(arg.split("=", 1)[1]), ())
        else:
            out.append(arg)
    return out


def run_app(main) -> None:
    """``absl.app.run(main)`` with the flagfiles expanded first (see :func:`expand_flagfiles`)."""
    from absl import app
    try:
        argv = expand_flagfiles(sys.argv)
    except FlagfileError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    app.run(main, argv=argv)


def run_cli(fn, prog: str) -> None:
    """Run ``fn``; expected errors (bad flags or data, OS and TensorFlow errors) become
    one line ``prog: error: ...`` naming the file and the problem, exit status 1
    (see :func:`tfrecords_tools.errors.run_cli`)."""
    from tfrecords_tools.errors import run_cli as run_one_line
    run_one_line(prog, fn)


def config_main(config_cls, validate, runner: str):
    """``main(argv)`` of a CLI that runs one frozen config (pretrain, finetune).

    Args:
      config_cls: the config dataclass whose flags the CLI defined.
      validate: ``config -> meta``, run before TensorFlow loads (one-line failures).
      runner: name in ``tl_keras.training`` of ``config -> result`` (imported late,
        because importing it loads TensorFlow).
    """
    from absl import app

    def main(argv):
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments: {argv[1:]}")
        verbosity = console.set_verbosity(tensorflow=False)

        def run():
            config = config_from_flags(config_cls)
            validate(config)
            console.load_tensorflow(verbosity)
            import tl_keras.training
            print(f"done: {getattr(tl_keras.training, runner)(config)}")
        run_cli(run, "tl_keras." + runner.removeprefix("run_"))
    return main
