"""The task spec: what one training task adds to the shared training path.

:func:`tl_keras.training.train.train` runs every task the same way (run records,
class weights, schedule, strategy scope, optimizers, checkpoint, validation, the
loop); a :class:`TaskSpec` says only what differs. How to add one: docs/extending.md.

Task modules are read when the CLIs validate their flags, before TensorFlow loads,
so the hooks import the training modules (which load TensorFlow) when called.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable

from tfrecords_tools.dataset_meta import DatasetMeta
from tl_keras.training import freezing
from tl_keras.weights.encoder_io import save_encoder

ENCODER_BEST, ENCODER_LAST = "encoder_best", "encoder_last"


@dataclasses.dataclass(frozen=True)
class ExtraNetwork:
    """A network trained beside ``model`` with its own optimizer (the GAN discriminator).

    Attributes:
      name: the :class:`tl_keras.models.TaskModels` field holding it; also its key in
        the checkpoint.
      optimizer_key: the checkpoint key of its optimizer.
      make_optimizer: ``config -> optimizer`` (called in the strategy scope).
    """

    name: str
    optimizer_key: str
    make_optimizer: Callable[[Any], Any]


@dataclasses.dataclass(frozen=True)
class StepContext:
    """What a task's step selection builds its train steps from (in the strategy scope).

    Attributes:
      config: the run configuration.
      models: the :class:`tl_keras.models.TaskModels` being trained.
      optimizer: the optimizer of ``models.model``.
      optimizers: extra network name -> its optimizer (:class:`ExtraNetwork`).
      loss_fn: the task's per-example loss, ``(y, output) -> (B,)``.
      strategy: the ``tf.distribute`` strategy.
      encoder_mode: the :class:`tl_keras.training.freezing.EncoderMode` of a run with a
        frozen encoder or an encoder LR multiplier, else None.
    """

    config: Any
    models: Any
    optimizer: Any
    optimizers: dict
    loss_fn: Callable
    strategy: Any
    encoder_mode: Any = None

    def supervised_step(self, groups=None) -> Callable:
        """The distributed step of ``models.model`` on ``loss_fn``; ``groups`` as
        :func:`tl_keras.training.steps.make_supervised_step` takes them (an optimizer
        given as None is :attr:`optimizer`)."""
        from tl_keras.training import steps
        if groups is not None:
            groups = tuple((self.optimizer if opt is None else opt, v) for opt, v in groups)
        return steps.distribute(steps.make_supervised_step(
            self.models.model, self.optimizer, self.loss_fn, self.config.batch_size,
            self.config.jit_compile, groups), self.strategy)


def supervised(ctx: StepContext) -> Callable[[int], Callable]:
    """Step selection of most tasks: one supervised step throughout (with an encoder
    mode, the frozen then the two-group step: :mod:`tl_keras.training.freezing`)."""
    if ctx.encoder_mode is not None:
        return freezing.step_selection(ctx.encoder_mode, ctx.supervised_step)
    train = ctx.supervised_step()
    return lambda step: train


def no_check(config, meta: DatasetMeta) -> None:
    """A task without checks of its own."""
    return None


def plain_loss(name: str) -> Callable:
    """A ``loss`` hook returning the unweighted ``tl_keras.training.losses.<name>``
    (imported when called: it loads TensorFlow)."""
    def loss(config, weights):
        from tl_keras.training import losses
        return getattr(losses, name)
    return loss


def refuse_unet(config, meta: DatasetMeta) -> str | None:
    """The check of a task that reconstructs its input: the skip-connected decoder would
    learn the identity (``--decoder_variant unet`` refused)."""
    if config.decoder_variant == "unet":
        from tl_keras.models.factory import UNET_REFUSED
        return UNET_REFUSED.format(task=config.task)
    return None


def export_encoder(config, models, epoch: int, logs: dict, is_best: bool) -> None:
    """Export ``encoder_last`` after every epoch and ``encoder_best`` when the score
    improved, in the format of :func:`tl_keras.weights.save_encoder` (source tasks)."""
    provenance = {"epoch": epoch + 1, "logs": logs, "data_dir": config.data_dir}
    names = [ENCODER_LAST] + ([ENCODER_BEST] if is_best else [])
    for name in names:
        save_encoder(models.encoder, os.path.join(config.model_dir, name),
                     source_task=config.task, domain=config.domain, provenance=provenance,
                     network=models.network)


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """One training task.

    Attributes:
      name: the ``--task`` value of a source task, or ``target`` (fine-tuning).
      data_task: the labels :func:`tl_keras.data.dataset.build_dataset` pairs with each
        image (one of its ``TASKS``).
      network: the network kind the model presets build (``tl_keras.models.TASKS``).
      num_outputs: ``dataset.json -> `` output classes (None: as many as the input).
      loss: ``(config, ClassWeights record or None) -> per-example loss``.
      source: a source task (``pretrain --task``; exports encoders) or the target task.
      class_weights: ``(config, meta, subjects) -> compute`` or None, where ``compute()``
        returns the :class:`~tl_keras.training.class_weights.ClassWeights` record cached in
        ``class_weights.json`` (``method``, ``weights``, ``slices``: the training slices,
        which set the schedule). None (or a None result): the loss is unweighted and the
        schedule counts the split's slices.
      check: ``(config, meta) -> message or None``: the task's own flag and data checks
        (run by config validation before anything is built).
      extra_networks: networks trained beside the model (:class:`ExtraNetwork`).
      steps: ``StepContext -> (step -> distributed train step)``: which step runs at
        each step (the GAN switches its discriminator on at ``--disc_start_step``).
      lr_schedule: ``(config, total_steps) -> (boundaries, values)`` of the default
        piecewise-constant learning rate (``--lr_boundaries`` wins), or None: constant.
      initialise: ``(config, models)``, called when no checkpoint exists to resume
        (fine-tuning loads ``--init_from``), or None.
      export: ``(config, models, epoch, logs, is_best)`` after every epoch on the chief
        (source tasks export their encoder), or None.
      eval_step: ``StepContext -> step(x, y) -> {"loss_sum", "count"}``, the per-replica
        validation step (the summed per-example losses and the example count; never
        called on an empty batch: :func:`tl_keras.training.steps.distribute_eval`), or
        None: ``loss_fn`` on ``models.model(x)`` (tasks whose inputs are made in the
        step, like the self-supervised ones, validate on them too).
      options: the task's own options, a frozen dataclass whose fields are made with
        :func:`tl_keras.training.config.option` (each a ``pretrain`` flag; names unique
        across tasks), read as ``config.task_options.<field>``; it may define
        ``check(self, config, meta) -> message or None``. None: no options.
      labels: the task trains on labels; a task without (auto-encoding, self-supervised
        tasks) refuses an explicit ``--class_weights`` / ``--foreground_weight``.
    """

    name: str
    data_task: str
    network: str
    num_outputs: Callable[[dict], int | None]
    loss: Callable[[Any, Any], Callable]
    source: bool = True
    class_weights: Callable[[Any, Any, list | None], Callable[[], Any] | None] | None = None
    check: Callable[[Any, dict], str | None] = no_check
    extra_networks: tuple[ExtraNetwork, ...] = ()
    steps: Callable[[StepContext], Callable[[int], Callable]] = supervised
    lr_schedule: Callable[[Any, int], tuple] | None = None
    initialise: Callable[[Any, Any], None] | None = None
    export: Callable[[Any, Any, int, dict, bool], None] | None = None
    eval_step: Callable[[StepContext], Callable] | None = None
    options: type | None = None
    labels: bool = True
