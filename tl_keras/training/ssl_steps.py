"""The steps of the self-supervised source tasks: their inputs are made in the step.

Restoration and masked modelling corrupt the batch, then run the supervised step on
(corrupted input, target); SimSiam draws two views and runs
:func:`tl_keras.training.steps.make_simsiam_step`. The corruptions and views
(:mod:`tl_keras.data.corruptions`) are stateless random ops seeded by the run's
``--seed``, the optimizer's step count and the replica, so a resumed run draws the
corruptions of an uninterrupted one and ``--deterministic`` runs repeat exactly.
Validation draws them with a fixed seed: every epoch scores the same corrupted
images, so validation losses compare across epochs.

They run outside the XLA-compiled part of the step (``--jit_compile`` compiles the
network's forward and backward passes only): the corruptions are cheap element-wise
and sorting ops next to the network.
"""
from __future__ import annotations

from typing import Callable

import tensorflow as tf

from tl_keras.training import steps

#: The step counter of validation's corruptions (training counts from 0).
EVAL_COUNTER = -1


def step_seed(seed: int, counter) -> tf.Tensor:
    """The stateless seed of one step: run seed, step counter and replica id."""
    base = tf.stack([tf.cast(seed, tf.int64), tf.cast(counter, tf.int64)])
    replica = tf.distribute.get_replica_context().replica_id_in_sync_group
    return tf.random.experimental.stateless_fold_in(base, tf.cast(replica, tf.int64))


def make_prepared_step(model, optimizer, loss_fn: Callable, prepare: Callable, seed: int,
                       global_batch_size: int, jit_compile: bool = False) -> Callable:
    """The supervised step of ``model`` on ``prepare(x, seed) -> (input, target)``.

    Args:
      model, optimizer, loss_fn, global_batch_size, jit_compile: as
        :func:`tl_keras.training.steps.make_supervised_step`.
      prepare: ``(x, seed) -> (model input, loss target)`` of a batch of images.
      seed: the run's seed.

    Returns:
      ``step(x, y) -> {"loss": scalar}`` (``y`` is unused: the target comes from ``x``).
    """
    inner = steps.make_supervised_step(model, optimizer, loss_fn, global_batch_size,
                                       jit_compile)

    def step(x, y):
        return inner(*prepare(x, step_seed(seed, optimizer.iterations)))
    return step


def make_prepared_eval_step(model, loss_fn: Callable, prepare: Callable, seed: int) -> Callable:
    """The validation step on ``prepare``'s inputs, drawn with a fixed seed."""
    inner = steps.make_eval_step(model, loss_fn)

    def step(x, y):
        return inner(*prepare(x, step_seed(seed, EVAL_COUNTER)))
    return step


def _views(view: Callable, x, seed):
    fold = tf.random.experimental.stateless_fold_in
    return view(x, fold(seed, 1)), view(x, fold(seed, 2))


def make_siamese_step(model, optimizer, view: Callable, seed: int, global_batch_size: int,
                      jit_compile: bool = False) -> Callable:
    """The SimSiam step on two views ``view(x, seed)`` of each image."""
    inner = steps.make_simsiam_step(model, optimizer, global_batch_size, jit_compile)

    def step(x, y):
        return inner(*_views(view, x, step_seed(seed, optimizer.iterations)))
    return step


def make_siamese_eval_step(model, view: Callable, seed: int) -> Callable:
    """The SimSiam validation step on two views drawn with a fixed seed."""
    inner = steps.make_simsiam_eval_step(model)

    def step(x, y):
        return inner(*_views(view, x, step_seed(seed, EVAL_COUNTER)))
    return step
