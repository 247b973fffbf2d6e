"""Pure training and evaluation steps, and their distributed ``tf.function`` wrapper.

A step takes one per-replica batch and returns a dict of scalar logs. Losses
are averaged over the *global* batch (``tf.nn.compute_average_loss``) so that
the gradients summed across replicas equal those of one device with the whole
batch. With ``jit_compile`` the forward and backward passes are compiled by XLA;
on a single replica the optimizer update is compiled too (as ``model.fit`` does), with
several replicas it stays outside XLA so that it can all-reduce the gradients.
"""
from __future__ import annotations

from typing import Callable

import tensorflow as tf

from tl_keras.training import losses


def _average(per_example, global_batch_size):
    return tf.nn.compute_average_loss(per_example, global_batch_size=global_batch_size)


def _regularisation(model):
    """Any layer-level regularisation losses, scaled for the number of replicas."""
    if not model.losses:
        return 0.0
    return tf.nn.scale_regularization_loss(tf.add_n([tf.cast(l, tf.float32)
                                                     for l in model.losses]))


def _compile(step: Callable, inner: Callable, jit_compile: bool) -> tuple[Callable, Callable]:
    """(step, inner) with XLA applied to the whole step on one replica, else to ``inner``."""
    if not jit_compile:
        return step, inner
    if tf.distribute.get_strategy().num_replicas_in_sync == 1:
        return tf.function(step, jit_compile=True), inner
    return step, tf.function(inner, jit_compile=True)


def make_supervised_step(model, optimizer, loss_fn: Callable, global_batch_size: int,
                         jit_compile: bool = False, groups=None) -> Callable:
    """One optimisation step of ``model`` on ``loss_fn(y, model(x))``.

    Args:
      model: keras.Model, images -> logits / reconstructions.
      optimizer: a Keras optimizer (possibly a ``LossScaleOptimizer``); its loss scale
        scales the loss.
      loss_fn: per-example loss, ``(y, output) -> (B,)``.
      global_batch_size: batch size summed over replicas.
      jit_compile: XLA-compile the step (see the module docstring).
      groups: ``((optimizer, variables), ...)``: each optimizer updates its variables
        (:mod:`tl_keras.training.freezing`: the encoder with its own learning rate, or
        not at all while frozen). Default: ``optimizer`` on all trainable variables.

    Call it inside the strategy's scope (the replica count decides what XLA covers).

    Returns:
      ``step(x, y) -> {"loss": scalar}``.
    """
    return _optimisation_step(model, optimizer,
                              lambda x, y: (loss_fn(y, model(x, training=True)), {}),
                              global_batch_size, jit_compile, groups)


def _optimisation_step(model, optimizer, objective: Callable, global_batch_size: int,
                       jit_compile: bool, groups=None) -> Callable:
    """``step(a, b) -> {"loss", ...}``: one update of ``model`` on the per-example losses of
    ``objective(a, b) -> (losses, logs)`` (computed in training mode), averaged over the
    global batch; ``logs`` are per-replica scalars logged beside the loss (already divided
    by the replica count: :func:`distribute` sums them). ``groups`` as
    :func:`make_supervised_step` takes them."""
    groups = (tuple((opt, list(group)) for opt, group in groups) if groups is not None
              else ((optimizer, model.trainable_variables),))
    variables = [v for _, group in groups for v in group]

    def loss_and_grads(a, b):
        with tf.GradientTape() as tape:
            per_example, logs = objective(a, b)
            loss = _average(per_example, global_batch_size) + _regularisation(model)
            scaled = optimizer.scale_loss(loss)
        return {"loss": loss, **logs}, tape.gradient(scaled, variables)

    def step(a, b):
        logs, grads = inner(a, b)
        start = 0
        for opt, group in groups:
            opt.apply(grads[start:start + len(group)], group)
            start += len(group)
        return logs

    compiled, inner = _compile(step, loss_and_grads, jit_compile)
    return compiled


def make_gan_step(generator, discriminator, g_optimizer, d_optimizer, global_batch_size: int,
                  l1_weight: float = losses.L1_WEIGHT, jit_compile: bool = False) -> Callable:
    """One generator and one discriminator step on the same forward pass.

    The discriminator sees ``input ++ candidate``: the target for the real pass,
    the reconstruction for the fake pass (Taskonomy's conditional GAN). Both
    networks are updated from the same forward pass, as Taskonomy ran ``g_train_op``
    and ``d_train_op`` in one ``session.run``.

    Returns:
      ``step(x, y) -> {"loss", "l1", "adversarial", "d_loss", "d_real", "d_fake"}``
      where ``loss`` is the generator total.
    """
    g_vars = generator.trainable_variables
    d_vars = discriminator.trainable_variables

    def losses_and_grads(x, y):
        with tf.GradientTape() as g_tape, tf.GradientTape() as d_tape:
            fake = generator(x, training=True)
            cond = tf.cast(x, tf.float32)
            real_logits = discriminator(tf.concat([cond, tf.cast(y, tf.float32)], -1),
                                        training=True)
            fake_logits = discriminator(tf.concat([cond, tf.cast(fake, tf.float32)], -1),
                                        training=True)
            g = losses.generator_loss(y, fake, fake_logits, l1_weight)
            d = losses.discriminator_loss(real_logits, fake_logits)
            logs = {k: _average(v, global_batch_size) for k, v in
                    (("loss", g["total"]), ("l1", g["l1"]), ("adversarial", g["adversarial"]),
                     ("d_loss", d["total"]), ("d_real", d["real"]), ("d_fake", d["fake"]))}
            g_loss = logs["loss"] + _regularisation(generator)
            d_loss = logs["d_loss"] + _regularisation(discriminator)
            g_scaled, d_scaled = g_optimizer.scale_loss(g_loss), d_optimizer.scale_loss(d_loss)
        return logs, g_tape.gradient(g_scaled, g_vars), d_tape.gradient(d_scaled, d_vars)

    def step(x, y):
        logs, g_grads, d_grads = inner(x, y)
        g_optimizer.apply(g_grads, g_vars)
        d_optimizer.apply(d_grads, d_vars)
        return logs

    compiled, inner = _compile(step, losses_and_grads, jit_compile)
    return compiled


def _both_views(model, v1, v2, training: bool):
    """``((z1, z2), (p1, p2))`` from one pass of the two views as one batch (as SimCLR's
    TF2 code passes its views): batch norm normalises both views together, and with
    several replicas its synchronising all-reduces run in one order on every replica (two
    independent passes let replicas start them in different orders, which TensorFlow's
    collectives refuse)."""
    z, p = model(tf.concat([v1, v2], axis=0), training=training)
    return tf.split(z, 2), tf.split(p, 2)


def make_simsiam_step(model, optimizer, global_batch_size: int,
                      jit_compile: bool = False) -> Callable:
    """One SimSiam step on two views of the same images (Chen & He 2021).

    ``model`` maps images to ``[z, p]`` (projection, prediction); the loss is the
    symmetric negative cosine of each view's prediction to the other view's projection,
    whose gradient is stopped (:func:`tl_keras.training.losses.simsiam_loss`).

    Returns:
      ``step(view1, view2) -> {"loss", "z_std"}``: the loss (-1 when the predictions
      match) and SimSiam's collapse monitor, the spread of the normalised projections
      (:func:`tl_keras.training.losses.projection_std`: 0 when collapsed).
    """
    def objective(v1, v2):
        (z1, z2), (p1, p2) = _both_views(model, v1, v2, training=True)
        replicas = tf.distribute.get_replica_context().num_replicas_in_sync
        spread = 0.5 * (losses.projection_std(z1) + losses.projection_std(z2)) / replicas
        return losses.simsiam_loss(p1, p2, z1, z2), {"z_std": spread}
    return _optimisation_step(model, optimizer, objective, global_batch_size, jit_compile)


def make_simsiam_eval_step(model) -> Callable:
    """``step(view1, view2) -> {"loss_sum", "count"}`` of the SimSiam loss (inference mode)."""
    def step(v1, v2):
        (z1, z2), (p1, p2) = _both_views(model, v1, v2, training=False)
        per_example = losses.simsiam_loss(p1, p2, z1, z2)
        return {"loss_sum": tf.reduce_sum(per_example),
                "count": tf.cast(tf.shape(per_example)[0], tf.float32)}
    return step


def make_eval_step(model, loss_fn: Callable) -> Callable:
    """``step(x, y) -> {"loss_sum", "count"}`` over one batch (inference mode)."""
    def step(x, y):
        per_example = loss_fn(y, model(x, training=False))
        return {"loss_sum": tf.reduce_sum(per_example),
                "count": tf.cast(tf.shape(per_example)[0], tf.float32)}
    return step


def _real_batches_only(step: Callable) -> Callable:
    """``step(x, y) -> {"loss_sum", "count"}`` that returns zeros for an empty batch.

    Where the validation data runs out before every replica has a batch, the last
    step hands the others an empty one. The network must not run on it: TensorFlow's
    CPU (oneDNN) convolution returns an output shaped like its input for an empty
    batch, which the next layer refuses (docs/training.md, "Distribution"). Partial
    batches run as they are: the sums and counts of the real examples make
    :func:`tl_keras.training.loop.evaluate` their exact mean.
    """
    def guarded(x, y):
        size = tf.shape(tf.nest.flatten(x)[0])[0]
        return tf.cond(size > 0, lambda: step(x, y),
                       lambda: {"loss_sum": tf.zeros([]), "count": tf.zeros([])})
    return guarded


def distribute_eval(step: Callable, strategy: tf.distribute.Strategy) -> Callable:
    """:func:`distribute` of a per-replica eval step (``{"loss_sum", "count"}``), which is
    never run on an empty batch (:func:`_real_batches_only`)."""
    return distribute(_real_batches_only(step), strategy)


def distribute(step: Callable, strategy: tf.distribute.Strategy) -> Callable:
    """Wrap a per-replica step once in ``tf.function``: run it on every replica and
    sum the logs (the per-replica losses are already divided by the global batch)."""
    @tf.function
    def run(x, y):
        logs = strategy.run(step, args=(x, y))
        return {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
                for k, v in logs.items()}
    return run
