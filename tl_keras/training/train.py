"""The one training path of every task: :func:`train`.

Pre-training and fine-tuning differ only in their :class:`~tl_keras.training.tasks.TaskSpec`
and in what they record when done; everything a run does from its start to its last
epoch is here, once: run records, class weights, schedule, strategy scope, optimizers,
steps, checkpoint (resume before initialisation), validation and the loop.
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
import os
from typing import Callable

from tfrecords_tools.dataset_meta import DatasetMeta
from tl_keras.models import TaskModels, conv
from tl_keras.models.machine import trains_on_cpu
from tl_keras.models.presets import build_network_models
from tl_keras.training import freezing, precision, steps
from tl_keras.training.checkpointing import RunCheckpoint, remove_debris
from tl_keras.training.loop import DataSpec, LoopSpec, distributed_eval_data, evaluate, fit
from tl_keras.training.precision import PrecisionChoice
from tl_keras.training.class_weights import (CLASS_WEIGHTS_FILE, ClassWeights,
                                             cached_class_weights)
from tl_keras.training.runs import (make_optimizer, open_strategy, record_kernel_gradients,
                                    record_start, schedule, start_run)
from tl_keras.training.strategy import is_chief, set_precision, work_dir
from tl_keras.training.tasks import StepContext, TaskSpec

#: Checkpoint key of the encoder's own optimizer (:mod:`tl_keras.training.freezing`).
ENCODER_OPTIMIZER = "encoder_optimizer"


@dataclasses.dataclass
class Trained:
    """What :func:`train` leaves for the run's records.

    Attributes:
      models: the trained networks.
      history: the logs of every epoch (of the whole run, resumed or not).
      total_steps: the run's steps.
      weights: the :class:`~tl_keras.training.class_weights.ClassWeights` record
        (``class_weights.json``), or None.
      strategy: the ``tf.distribute`` strategy (only its chief writes records).
      precision: the run's :class:`~tl_keras.training.precision.PrecisionChoice`.
    """

    models: TaskModels
    history: list
    total_steps: int
    weights: ClassWeights | None
    strategy: object
    precision: PrecisionChoice

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


def _networks(config, task: TaskSpec, meta: DatasetMeta, build_models: Callable, strategy, loss_fn,
              steps_per_epoch: int, total: int):
    """(step context, checkpointed objects, step selection): networks, optimizers, encoder
    mode and steps."""
    tm = build_models(config, meta, network=task.network, num_outputs=task.num_outputs(meta))
    lr = task.lr_schedule(config, total) if task.lr_schedule else ((), ())
    optimizer = make_optimizer(config, *lr)
    mode = freezing.encoder_mode(
        config, tm, steps_per_epoch, total,
        lambda multiplier, offset: make_optimizer(config, *lr, multiplier=multiplier,
                                                  offset=offset))
    optimizer.build(mode.other_variables if mode else tm.model.trainable_variables)
    objects, extra = {"model": tm.model, "optimizer": optimizer}, {}
    if mode is not None and mode.optimizer is not None:
        objects[ENCODER_OPTIMIZER] = mode.optimizer
    for net in task.extra_networks:
        network, extra[net.name] = getattr(tm, net.name), net.make_optimizer(config)
        extra[net.name].build(network.trainable_variables)
        objects.update({net.name: network, net.optimizer_key: extra[net.name]})
    ctx = StepContext(config, tm, optimizer, extra, loss_fn, strategy, mode)
    return ctx, objects, task.steps(ctx)


def _build(config, task: TaskSpec, meta: DatasetMeta, build_models: Callable, strategy, loss_fn,
           steps_per_epoch: int, total: int):
    """Step context, step selection and checkpoint (call in the strategy scope)."""
    ctx, objects, step_for = _networks(config, task, meta, build_models, strategy, loss_fn,
                                       steps_per_epoch, total)
    if is_chief(strategy):
        remove_debris(config.model_dir)
    ckpt = RunCheckpoint(work_dir(config.model_dir, strategy), objects, config.keep_checkpoints)
    return ctx, step_for, ckpt


#: Config fields that shape a run's training step (the network key of the precision choice);
#: those a config class lacks are left out.
STEP_FIELDS = ("network", "input_channels", "latent_channels", "decoder_variant",
               "task_options", "freeze_encoder", "freeze_epochs", "jit_compile")


def network_key(config, task: TaskSpec, meta: DatasetMeta, build_models: Callable,
                batch: int) -> str:
    """What the step's speed depends on besides the machine, e.g. ``target
    tl_keras.models.presets.build_network_models 256x256 batch 8 outputs=2 ...``."""
    fields = " ".join(f"{f}={getattr(config, f)}" for f in STEP_FIELDS if hasattr(config, f))
    h, w = meta.image_size
    return (f"{task.name} {builder_name(build_models)} {h}x{w} "
            f"batch {batch} outputs={task.num_outputs(meta)} {fields}")


def builder_name(fn) -> str:
    """A ``build_models`` hook's module and name, with the arguments it was made with (a
    ``functools.partial``'s, a closure's plain values: ``hub_models_hook(preset)``)."""
    if isinstance(fn, functools.partial):
        return f"{builder_name(fn.func)}{fn.args}{fn.keywords or ''}"
    name = f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', type(fn).__name__)}"
    values = []
    for cell in getattr(fn, "__closure__", None) or ():
        try:
            value = cell.cell_contents
        except ValueError:  # an empty cell
            continue
        if isinstance(value, (str, int, float, bool)):
            values.append(value)
    return name + (str(tuple(values)) if values else "")


def _measure(config, task: TaskSpec, meta: DatasetMeta, build_models: Callable, loss_fn, batch: int,
             subjects: list | None, steps_per_epoch: int,
             total: int) -> Callable[[tuple], dict]:
    """``candidates -> slices/s`` of the run's first training step on one device and one
    batch of its data, per candidate precision (:func:`precision.time_steps`)."""
    def measure(options: tuple) -> dict:
        import tensorflow as tf
        from tl_keras.data.dataset import build_dataset
        x, y = next(iter(build_dataset(
            config.data_dir, "train", task.data_task, batch, training=True, subjects=subjects,
            input_channels=config.input_channels, seed=config.seed, repeat=True, meta=meta,
            slice_context=config.slice_context)))

        def make_run(candidate: str):
            set_precision(candidate)
            _, _, step_for = _networks(config, task, meta, build_models,
                                          tf.distribute.get_strategy(), loss_fn,
                                          steps_per_epoch, total)
            step = step_for(0)
            return lambda: [float(v) for v in step(x, y).values()]  # waits for the step
        return precision.time_steps(make_run, options, batch, together=trains_on_cpu())
    return measure


def train(config, task: TaskSpec, meta: DatasetMeta, build_models: Callable | None = None,
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
    conv.clear_taken()  # kernel_gradients.json holds this run's choices only
    _check_builder(build_models)
    strategy = open_strategy(config)
    compute = task.class_weights(config, meta, subjects) if task.class_weights else None
    weights_file = os.path.join(config.model_dir, CLASS_WEIGHTS_FILE)
    weights = cached_class_weights(weights_file, compute) if compute is not None else None
    slices = weights.slices if weights is not None else meta.split("train").slices
    steps_per_epoch, total = schedule(config, slices)
    loss_fn = task.loss(config, weights)
    batch = config.batch_size // strategy.num_replicas_in_sync
    choice = start_run(config, strategy, network_key(config, task, meta, build_models, batch),
                       _measure(config, task, meta, build_models, loss_fn, batch, subjects,
                                steps_per_epoch, total))
    record_start(config, strategy, {weights_file: weights and weights.to_dict()},
                 choice)  # nothing written before
    with strategy.scope():
        ctx, step_for, ckpt = _build(config, task, meta, build_models, strategy, loss_fn,
                                     steps_per_epoch, total)
        tm, mode = ctx.models, ctx.encoder_mode
        initialise = (lambda: task.initialise(config, tm)) if task.initialise else None
        start = ckpt.restore_or_initialize(initialise)
    data = DataSpec(config.data_dir, task.data_task, config.batch_size, config.input_channels,
                    config.seed, meta, subjects=subjects, slice_context=config.slice_context)
    validate = None
    if config.validate and meta.split("val") is not None:
        eval_step = steps.distribute_eval(task.eval_step(ctx) if task.eval_step
                                          else steps.make_eval_step(tm.model, loss_fn),
                                          strategy)
        val_data = distributed_eval_data(strategy, data, "val")
        validate = lambda: evaluate(eval_step, val_data)  # noqa: E731

    def on_epoch_end(epoch, logs, is_best):
        if task.export is not None and is_chief(strategy):
            task.export(config, tm, epoch, logs, is_best)

    loop = LoopSpec(steps_per_epoch, total, step_for, validate, on_epoch_end, config.log_every,
                    config.checkpoint_every)
    fit(strategy, data, loop, ckpt, work_dir(config.model_dir, strategy), start)
    record_kernel_gradients(config, strategy)
    if mode is not None:
        mode.set_frozen(False)  # the export keeps the layers' usual (trainable) flags
    return Trained(tm, list(ckpt.record.history), total, weights, strategy, choice)
