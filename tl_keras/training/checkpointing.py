"""One ``tf.train.Checkpoint`` (step, models, optimizers, epoch records) per run.

Resuming from the run directory wins over any initialisation: pre-trained
weights are loaded only when no checkpoint exists (``init_fn``). Restoring takes
the newest *readable* ``ckpt-N`` on disk: a truncated checkpoint is moved to
``checkpoints/unreadable/`` with a warning and the previous one is used, and an
unreadable ``checkpoints/checkpoint`` state file is rebuilt from the files
present (see docs/reliability.md).
"""
from __future__ import annotations

import glob
import json
import logging
import os
import re
import shutil
from typing import Callable

import tensorflow as tf

from tl_keras.training.config import ConfigError
from tl_common.io import remove_temp_debris, write_text_atomic

log = logging.getLogger("tl_keras.training")
CHECKPOINT_DIR = "checkpoints"
UNREADABLE_DIR = "unreadable"


class CheckpointError(ConfigError):
    """A run directory's checkpoints cannot be restored or written (message: one line)."""


class EpochRecord(tf.train.experimental.PythonState):
    """The epoch logs of a run, saved inside its checkpoint.

    Written in the same checkpoint as the weights, so a resumed run continues the
    running sums of its open epoch (its epoch means cover every step, not only the
    resumed ones) and knows which epochs were closed (validated, exported).

    Attributes:
      history: logs of each closed epoch, in order.
      sums, counts: running sums and counts of the open epoch's step logs.
    """

    def __init__(self):
        self.history, self.sums, self.counts = [], {}, {}

    def serialize(self) -> str:
        # The training loop keeps the sums on the device; they are read here, at
        # checkpoint time only.
        sums = {k: float(v) for k, v in self.sums.items()}
        return json.dumps({"history": self.history, "sums": sums, "counts": self.counts})

    def deserialize(self, string) -> None:
        state = json.loads(string.numpy() if hasattr(string, "numpy") else string)
        self.history, self.sums, self.counts = state["history"], state["sums"], state["counts"]

    def close(self, epoch: int, logs: dict) -> None:
        """Record ``logs`` as epoch ``epoch`` (replacing it and any later one) and
        start a new open epoch."""
        del self.history[epoch:]
        self.history.append(dict(logs))
        self.sums, self.counts = {}, {}


def _number(prefix: str) -> int:
    return int(prefix.rsplit("-", 1)[1])


def remove_debris(model_dir: str) -> list[str]:
    """Delete what killed saves leave behind: ``ckpt-N_temp/`` folders of
    checkpoint writes and ``.tmp-*`` files of atomic writes (see
    :func:`tl_common.io.atomic_path`). Returns the removed paths.

    Only safe while no other process writes into ``model_dir`` (one run per folder).
    """
    temp_saves = glob.glob(os.path.join(model_dir, CHECKPOINT_DIR, "*_temp"))
    for path in temp_saves:
        shutil.rmtree(path, ignore_errors=True)
    folders = [model_dir] + sorted(p for p in glob.glob(os.path.join(model_dir, "*"))
                                   if os.path.isdir(p))
    removed = sorted(temp_saves + remove_temp_debris(folders))
    if removed:
        print(f"{model_dir}: removed {len(removed)} temporary file(s) of an interrupted run",
              flush=True)
    return removed


class RunCheckpoint:
    """Training state of a run directory.

    Attributes:
      step: int64 variable, optimisation steps (iterations) done.
      best_val: float32 variable, best validation loss so far (inf at start).
      record: the :class:`EpochRecord` of the run.
      manager: the ``tf.train.CheckpointManager`` in ``model_dir/checkpoints``.
    """

    def __init__(self, model_dir: str, objects: dict, max_to_keep: int = 2):
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.best_val = tf.Variable(float("inf"), dtype=tf.float32, trainable=False,
                                    name="best_val")
        self.record = EpochRecord()
        self.checkpoint = tf.train.Checkpoint(step=self.step, best_val=self.best_val,
                                              epochs=self.record, **objects)
        self.directory = os.path.join(model_dir, CHECKPOINT_DIR)
        self.max_to_keep = max_to_keep
        self.manager = tf.train.CheckpointManager(self.checkpoint, self.directory,
                                                  max_to_keep=max_to_keep)

    def _on_disk(self) -> list[str]:
        """Prefixes of the ``ckpt-N`` checkpoints in the directory, newest first."""
        prefixes = [p[:-len(".index")]
                    for p in glob.glob(os.path.join(self.directory, "ckpt-*.index"))
                    if re.fullmatch(r"ckpt-\d+", os.path.basename(p)[:-len(".index")])]
        return sorted(prefixes, key=_number, reverse=True)

    def _set_aside(self, prefix: str, error: Exception) -> None:
        aside = os.path.join(self.directory, UNREADABLE_DIR)
        os.makedirs(aside, exist_ok=True)
        for path in glob.glob(glob.escape(prefix) + ".*"):
            os.replace(path, os.path.join(aside, os.path.basename(path)))
        message = " ".join(str(error).split()) or type(error).__name__
        print(f"warning: checkpoint {prefix} is unreadable ({message}); moved to "
              f"{aside}, resuming from an older one", flush=True)

    def _rebuild_state(self, kept: list[str]) -> None:
        """Rewrite ``checkpoints/checkpoint`` to list ``kept`` (oldest first) and
        reopen the manager, so it rotates them as if it had written them."""
        # The state file's text format, written directly: tf.compat.v1's
        # update_checkpoint_state prints deprecation warnings. The timestamps (the
        # .index files' times, all after last_preserved_timestamp) let the manager
        # delete the old ones (without them it keeps them forever).
        names = [os.path.basename(p) for p in kept]
        times = [os.path.getmtime(p + ".index") for p in kept]
        write_text_atomic(os.path.join(self.directory, "checkpoint"), "".join(
            [f'model_checkpoint_path: "{names[-1]}"\n']
            + [f'all_model_checkpoint_paths: "{n}"\n' for n in names]
            + [f"all_model_checkpoint_timestamps: {t!r}\n" for t in times]
            + [f"last_preserved_timestamp: {min(times) - 1.0!r}\n"]))
        self.manager = tf.train.CheckpointManager(self.checkpoint, self.directory,
                                                  max_to_keep=self.max_to_keep)

    def restore_or_initialize(self, init_fn: Callable[[], None] | None = None) -> int:
        """Restore the newest readable checkpoint, or call ``init_fn`` when there is none.

        Returns:
          The step to continue from.

        Raises:
          CheckpointError: checkpoints exist but none is readable, or they do not
            match the networks being built (e.g. flags changed).
        """
        candidates = self._on_disk()
        if not candidates:
            # Data files or a state file without any .index: the run had checkpoints
            # that can no longer be read; never a silent restart from step 0.
            orphans = sorted(glob.glob(os.path.join(self.directory, "ckpt-*.data-*")) +
                             glob.glob(os.path.join(self.directory, "checkpoint")))
            if orphans:
                raise CheckpointError(
                    f"{self.directory}: no ckpt-N.index file, but {len(orphans)} other "
                    f"checkpoint file(s) ({', '.join(os.path.basename(p) for p in orphans[:3])})"
                    ", so the run's checkpoints cannot be read; restore the .index files, or "
                    "move the folder away to restart from scratch")
            if init_fn is not None:
                init_fn()
            return 0
        listed = self.manager.latest_checkpoint
        if listed is None:
            print(f"warning: {os.path.join(self.directory, 'checkpoint')} is missing or "
                  f"unreadable; recovering from the checkpoint files present", flush=True)
        unreadable = []
        for i, prefix in enumerate(candidates):
            try:
                self.checkpoint.restore(prefix).assert_existing_objects_matched()
            except (tf.errors.OpError, IndexError) as e:  # truncated or damaged files
                unreadable.append((prefix, e))
                continue
            except (AssertionError, ValueError) as e:
                message = " ".join(str(e).split())[:300]
                raise CheckpointError(
                    f"{prefix} does not match the networks of this run (flags changed?): "
                    f"{message}; use a new --model_dir") from None
            for bad, error in unreadable:  # only now: with no good one, keep the evidence
                self._set_aside(bad, error)
            if i or listed is None or os.path.basename(listed) != os.path.basename(prefix):
                self._rebuild_state(sorted(candidates[i:], key=_number))
            step = int(self.step.numpy())
            log.info("Resumed from step %d (%s)", step, prefix)
            print(f"Resumed from step {step}", flush=True)
            return step
        prefix, error = unreadable[0]
        raise CheckpointError(f"{self.directory}: none of the {len(candidates)} checkpoint(s) "
                              f"is readable (newest {os.path.basename(prefix)}: "
                              f"{' '.join(str(error).split())}); move the folder away to "
                              "restart from scratch")

    def save(self) -> str:
        """Write a checkpoint numbered by the current step (no-op if it exists).

        Raises:
          CheckpointError: the write failed (disk full, read-only, ...); names the
            checkpoint and the problem, not TensorFlow's temporary file.
        """
        step = int(self.step.numpy())
        latest = self.manager.latest_checkpoint
        if latest and latest.endswith(f"-{step}"):
            return latest
        try:
            return self.manager.save(checkpoint_number=step)
        except tf.errors.OpError as e:
            prefix = os.path.join(self.directory, f"ckpt-{step}")
            shutil.rmtree(prefix + "_temp", ignore_errors=True)
            raise CheckpointError(f"{prefix}: cannot write the checkpoint: "
                                  f"{_problem(e.message)}") from None


def _problem(message: str) -> str:
    """The OS problem of a TensorFlow I/O error message, e.g. ``No space left on
    device`` from ``{{function_node ...}} /run/ckpt-4_temp/part...tempstate1; No
    space left on device [Op:SaveV2]`` (the temporary path would only mislead)."""
    message = re.sub(r"\{\{function_node [^}]*\}\}|\[Op:\w+\]", "", message).strip()
    return message.rsplit(";", 1)[-1].strip() if ";" in message else message
