"""Set-up shared by pre-training and fine-tuning runs."""
from __future__ import annotations

import os
import shutil
from typing import Callable

import keras

from tl_keras.models import conv, machine
from tl_keras.training import optimizers, precision
from tl_keras.training.checkpointing import CHECKPOINT_DIR
from tl_keras.training.config import ConfigError, TrainConfig
from tl_keras.training.results import RESULT_FILE, result_path
from tl_keras.training.rundir import KERNEL_GRADIENTS_FILE
from tl_keras.training.strategy import (is_chief, loss_scaling, make_strategy,
                                        set_determinism, set_precision)
from tl_common.io import write_json_atomic
from tl_common.runinfo import record_run
from tl_common.records import read_json_object


def open_strategy(config: TrainConfig):
    """The run's ``tf.distribute`` strategy (``--batch_size`` must divide over its replicas).
    Writes nothing."""
    strategy = make_strategy(config.strategy)
    if config.batch_size % strategy.num_replicas_in_sync:
        raise ConfigError(f"--batch_size={config.batch_size} is not divisible by the "
                          f"{strategy.num_replicas_in_sync} replicas")
    return strategy


def start_run(config: TrainConfig, strategy, network: str = "",
              measure: Callable[[tuple], dict] | None = None):
    """Choose the precision (``--mixed_precision auto``: measured, see
    :mod:`tl_keras.training.precision`), seed everything, set the precision policy. Writes
    nothing in ``model_dir``: :func:`record_start` does, once the run's checks have passed.

    Args:
      config: the run configuration.
      strategy: from :func:`open_strategy`.
      network: the network key of the precision choice.
      measure: ``candidates -> {candidate: slices/s}`` of the run's own step (auto only).

    Returns:
      The :class:`~tl_keras.training.precision.PrecisionChoice`.
    """
    choice = precision.choose(config.mixed_precision, network, measure,
                              model_dir=config.model_dir,
                              multi_worker=config.strategy == "multi_worker",
                              float16=not (config.jit_compile or split_optimizers(config)))
    if config.mixed_precision == "auto":
        print(choice.line(), flush=True)
    # After the measurement, which built networks: the run starts from the same state
    # (layer names, random seeds) whether or not it measured.
    keras.backend.clear_session()
    set_determinism(config.seed, config.deterministic)
    set_precision(choice.precision)
    return choice


def split_optimizers(config) -> bool:
    """The encoder has its own optimizer (``--freeze_encoder``, ``--encoder_lr_multiplier``),
    which float16's single loss scale does not support."""
    return (bool(getattr(config, "freeze_encoder", False))
            or getattr(config, "encoder_lr_multiplier", 1.0) != 1.0)


def record_start(config: TrainConfig, strategy, cached: dict, choice=None) -> None:
    """Record ``flags.json`` (with the precision ``choice``) and the JSON files of
    ``cached`` (path -> value, absent ones only) in ``model_dir`` (chief only)."""
    os.makedirs(config.model_dir, exist_ok=True)
    if not is_chief(strategy):
        return
    extra = {"precision": choice.to_dict()} if choice is not None else {}
    record_run(config.model_dir, config, seed=config.seed, **extra)
    for path, value in cached.items():
        if value is not None and not os.path.exists(path):
            write_json_atomic(path, value)


def record_kernel_gradients(config: TrainConfig, strategy) -> None:
    """Write ``kernel_gradients.json`` (chief only): the kernel gradient each stride-1
    convolution shape of the run's training step took (``tl_keras.models.conv``, measured
    per machine; they round differently), with the mode and the compute dtype."""
    if not is_chief(strategy):
        return
    dtype = keras.config.dtype_policy().compute_dtype
    write_json_atomic(os.path.join(config.model_dir, KERNEL_GRADIENTS_FILE), {
        "mode": conv.kernel_gradient_mode(), "cpu": machine.trains_on_cpu(),
        "compute_dtype": dtype, "layers": conv.taken(dtype)})


def schedule(config: TrainConfig, num_slices: int) -> tuple[int, int]:
    """(steps per epoch, total steps). ``max_steps`` > 0 replaces the epoch count."""
    steps_per_epoch = num_slices // config.batch_size
    if steps_per_epoch < 1:
        raise ConfigError(f"{config.data_dir}: {num_slices} training slices are fewer than "
                          f"--batch_size={config.batch_size}")
    epochs = getattr(config, "resolved_epochs", lambda: config.epochs)()
    return steps_per_epoch, config.max_steps or epochs * steps_per_epoch


def make_optimizer(config: TrainConfig, boundaries=(), values=(), *, multiplier: float = 1.0,
                   offset: int = 0):
    """Decoupled AdamW with the run's LR schedule (explicit flags win); with loss scaling
    under the float16 policy.

    ``multiplier`` and ``offset``: the encoder's own optimizer (:mod:`tl_keras.training.
    freezing`): LR ``multiplier * schedule(step + offset)``, its steps counted from
    ``offset``.
    """
    if config.lr_boundaries:
        boundaries, values = config.lr_boundaries, config.lr_values
    lr = optimizers.learning_rate_schedule(config.learning_rate, boundaries, values)
    if multiplier != 1.0 or offset:
        lr = optimizers.ShiftedScaledSchedule(lr, multiplier, offset)
    return optimizers.make_generator_optimizer(
        lr, config.weight_decay, loss_scale=loss_scaling())


def completed_result(config: TrainConfig, record: type, extendable: bool = False):
    """The ``result.json`` record of a complete run, else None.

    Args:
      config: the run configuration.
      record: the record class of the run's ``result.json``
        (:mod:`tl_keras.training.results`: ``FinetuneResult``, ``PretrainResult``).
      extendable: a complete run whose checkpoints are still there is resumed
        (pre-training: a larger ``--max_steps`` continues it); its finishing
        steps (export, records, clean-up) are idempotent and run again.

    Raises:
      RecordError: ``result.json`` is damaged or has a missing or bad key.
    """
    path = result_path(config.model_dir)
    checkpoints = os.path.join(config.model_dir, CHECKPOINT_DIR)
    if not os.path.exists(path) or (extendable and os.path.isdir(checkpoints)):
        return None
    result = record.from_dict(read_json_object(path), path)
    print(f"{config.model_dir}: already complete ({RESULT_FILE}); nothing to do", flush=True)
    if not config.keep_checkpoints_after_done and os.path.isdir(checkpoints):
        shutil.rmtree(checkpoints)  # a clean-up cut short by a kill
    return result


def finish_run(config: TrainConfig, result) -> None:
    """Write the record ``result`` as ``result.json`` (marks the run complete), then drop
    ``checkpoints/`` unless ``--keep_checkpoints_after_done`` (chief only)."""
    write_json_atomic(result_path(config.model_dir), result.to_dict())
    checkpoints = os.path.join(config.model_dir, CHECKPOINT_DIR)
    if not config.keep_checkpoints_after_done and os.path.isdir(checkpoints):
        shutil.rmtree(checkpoints)
