"""One ``tf.train.Checkpoint`` (step, models, optimizers) per run, under a manager.

Resuming from the run directory wins over any initialisation: pre-trained
weights are loaded only when no checkpoint exists (``init_fn``).
"""
from __future__ import annotations

import logging
import os
from typing import Callable

import tensorflow as tf

log = logging.getLogger("tl_keras.training")
CHECKPOINT_DIR = "checkpoints"


class RunCheckpoint:
    """Training state of a run directory.

    Attributes:
      step: int64 variable, optimisation steps (iterations) done.
      best_val: float32 variable, best validation loss so far (inf at start).
      manager: the ``tf.train.CheckpointManager`` in ``model_dir/checkpoints``.
    """

    def __init__(self, model_dir: str, objects: dict, max_to_keep: int = 2):
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.best_val = tf.Variable(float("inf"), dtype=tf.float32, trainable=False,
                                    name="best_val")
        self.checkpoint = tf.train.Checkpoint(step=self.step, best_val=self.best_val,
                                              **objects)
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, os.path.join(model_dir, CHECKPOINT_DIR), max_to_keep=max_to_keep)

    def restore_or_initialize(self, init_fn: Callable[[], None] | None = None) -> int:
        """Restore the latest checkpoint, or call ``init_fn`` when there is none.

        Returns:
          The step to continue from.
        """
        latest = self.manager.latest_checkpoint
        if latest:
            self.checkpoint.restore(latest).assert_existing_objects_matched()
            step = int(self.step.numpy())
            log.info("Resumed from step %d (%s)", step, latest)
            print(f"Resumed from step {step}", flush=True)
            return step
        if init_fn is not None:
            init_fn()
        return 0

    def save(self) -> str:
        """Write a checkpoint numbered by the current step (no-op if it exists)."""
        step = int(self.step.numpy())
        latest = self.manager.latest_checkpoint
        if latest and latest.endswith(f"-{step}"):
            return latest
        return self.manager.save(checkpoint_number=step)
