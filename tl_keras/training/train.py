"""The one training path of every task: :func:`train`.

Pre-training and fine-tuning differ only in their :class:`~tl_keras.training.tasks.TaskSpec`
and in what they record when done; everything a run does from its start to its last
epoch is here, once: run records, class weights, schedule, strategy scope, optimizers,
steps, checkpoint (resume before initialisation), validation and the loop.
"""
from __future__ import annotations

import dataclasses
import inspect
import os
from typing import Callable

from tl_keras.models import TaskModels
from tl_keras.models.presets import build_network_models
from tl_keras.training import steps
from tl_keras.training.checkpointing import RunCheckpoint, remove_debris
from tl_keras.training.loop import DataSpec, LoopSpec, distributed_eval_data, evaluate, fit
from tl_keras.training.runs import cached_json, make_optimizer, schedule, start_run
from tl_keras.training.strategy import is_chief, work_dir
from tl_keras.training.tasks import StepContext, TaskSpec

CLASS_WEIGHTS_FILE = "class_weights.json"


@dataclasses.dataclass
class Trained:
    """What :func:`train` leaves for the run's records.

    Attributes:
      models: the trained networks.
      history: the logs of every epoch (of the whole run, resumed or not).
      total_steps: the run's steps.
      weights: the class-weights record (``class_weights.json``), or None.
      strategy: the ``tf.distribute`` strategy (only its chief writes records).
    """

    models: TaskModels
    history: list
    total_steps: int
    weights: dict | None
    strategy: object

    @property
    def logs(self) -> dict:
        """The last epoch's logs."""
        return dict(self.history[-1]) if self.history else {}

    @property
    def is_chief(self) -> bool:
        return is_chief(self.strategy)


def _check_builder(build_models: Callable) -> None:
    """A clear error for a ``build_models`` hook of the old ``(config, meta)`` form."""
    try:
        inspect.signature(build_models).bind(None, None, network="", num_outputs=None)
    except TypeError:
        raise TypeError(f"build_models={build_models!r} must accept (config, meta, *, network, "
                        "num_outputs), like tl_keras.models.presets.build_tiny_models "
                        "(docs/training.md, Python API)") from None


def _build(config, task: TaskSpec, meta: dict, build_models: Callable, strategy, loss_fn,
           total: int):
    """Networks, optimizers, step selection and checkpoint (call in the strategy scope)."""
    tm = build_models(config, meta, network=task.network, num_outputs=task.num_outputs(meta))
    optimizer = make_optimizer(config, *(task.lr_schedule(config, total)
                                         if task.lr_schedule else ((), ())))
    optimizer.build(tm.model.trainable_variables)
    objects, extra = {"model": tm.model, "optimizer": optimizer}, {}
    for net in task.extra_networks:
        network, extra[net.name] = getattr(tm, net.name), net.make_optimizer(config)
        extra[net.name].build(network.trainable_variables)
        objects.update({net.name: network, net.optimizer_key: extra[net.name]})
    step_for = task.steps(StepContext(config, tm, optimizer, extra, loss_fn, strategy))
    if is_chief(strategy):
        remove_debris(config.model_dir)
    ckpt = RunCheckpoint(work_dir(config.model_dir, strategy), objects, config.keep_checkpoints)
    return tm, step_for, ckpt


def train(config, task: TaskSpec, meta: dict, build_models: Callable | None = None,
          subjects: list | None = None) -> Trained:
    """Train (or resume) ``task`` in ``config.model_dir`` to its last step.

    Records ``flags.json`` and the class weights, resumes from the newest checkpoint
    (``task.initialise`` runs only when there is none), validates and closes every
    epoch (``task.export`` on the chief). Under ``--deterministic`` a resumed run
    follows the trajectory of an uninterrupted one (:mod:`tl_keras.training.loop`).

    Args:
      config: a validated :class:`~tl_keras.training.config.TrainConfig`.
      task: the task spec (:mod:`tl_keras.training.tasks`).
      meta: the data set's ``dataset.json``.
      build_models: ``(config, meta, *, network, num_outputs) -> TaskModels``
        (default: the networks ``config.network`` names; :mod:`tl_keras.models.presets`).
      subjects: train on these training subjects only (None: the whole split).

    Returns:
      A :class:`Trained`.
    """
    build_models = build_models or build_network_models
    _check_builder(build_models)
    strategy = start_run(config)
    compute = task.class_weights(config, meta, subjects) if task.class_weights else None
    weights = (cached_json(os.path.join(config.model_dir, CLASS_WEIGHTS_FILE), compute)
               if compute is not None else None)
    slices = weights["slices"] if weights is not None else int(meta["splits"]["train"]["slices"])
    steps_per_epoch, total = schedule(config, slices)
    loss_fn = task.loss(config, weights)
    with strategy.scope():
        tm, step_for, ckpt = _build(config, task, meta, build_models, strategy, loss_fn, total)
        initialise = (lambda: task.initialise(config, tm)) if task.initialise else None
        start = ckpt.restore_or_initialize(initialise)
    data = DataSpec(config.data_dir, task.data_task, config.batch_size, config.input_channels,
                    config.seed, meta, subjects=subjects)
    validate = None
    if config.validate and "val" in meta["splits"]:
        eval_step = steps.distribute(steps.make_eval_step(tm.model, loss_fn), strategy)
        val_data = distributed_eval_data(strategy, data, "val")
        validate = lambda: evaluate(eval_step, val_data)  # noqa: E731

    def on_epoch_end(epoch, logs, is_best):
        if task.export is not None and is_chief(strategy):
            task.export(config, tm, epoch, logs, is_best)

    loop = LoopSpec(steps_per_epoch, total, step_for, validate, on_epoch_end, config.log_every,
                    config.checkpoint_every)
    fit(strategy, data, loop, ckpt, work_dir(config.model_dir, strategy), start)
    return Trained(tm, list(ckpt.record.history), total, weights, strategy)
