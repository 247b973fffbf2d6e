"""The epoch/step loop shared by pre-training and fine-tuning.

Data order is a pure function of (seed, epoch): each epoch gets a freshly seeded
dataset, and a resumed run skips the batches of its epoch already consumed, so
under ``--deterministic`` a killed and restarted run follows exactly the
trajectory of an uninterrupted one.
"""
from __future__ import annotations

import dataclasses
import math
import os
import time
from typing import Callable

import tensorflow as tf

from tfrecords_tools.dataset_meta import DatasetMeta
from tl_keras.data.dataset import build_dataset
from tl_keras.training.checkpointing import RunCheckpoint
from tl_common.progress import Progress, format_duration


@dataclasses.dataclass
class DataSpec:
    """What the training and validation datasets are built from."""

    data_dir: str
    task: str
    global_batch_size: int
    input_channels: int
    seed: int
    meta: DatasetMeta
    subjects: list | None = None
    val_split: str | None = "val"
    slice_context: bool = False


def distributed_train_data(strategy, spec: DataSpec, epoch: int, skip: int):
    """Distributed, endlessly repeating training data of ``epoch`` minus ``skip`` steps."""
    def dataset_fn(ctx: tf.distribute.InputContext):
        per_replica = ctx.get_per_replica_batch_size(spec.global_batch_size)
        ds = build_dataset(spec.data_dir, "train", spec.task, per_replica, training=True,
                           subjects=spec.subjects, input_channels=spec.input_channels,
                           seed=spec.seed * 100003 + epoch, input_context=ctx, repeat=True,
                           meta=spec.meta, slice_context=spec.slice_context)
        # Each global step takes one batch per local replica from this pipeline.
        per_step = ctx.num_replicas_in_sync // ctx.num_input_pipelines
        return ds.skip(skip * per_step)
    return strategy.distribute_datasets_from_function(dataset_fn)


def distributed_eval_data(strategy, spec: DataSpec, split: str):
    def dataset_fn(ctx: tf.distribute.InputContext):
        per_replica = ctx.get_per_replica_batch_size(spec.global_batch_size)
        return build_dataset(spec.data_dir, split, spec.task, per_replica, training=False,
                             input_channels=spec.input_channels, input_context=ctx,
                             meta=spec.meta, slice_context=spec.slice_context)
    return strategy.distribute_datasets_from_function(dataset_fn)


def evaluate(eval_step: Callable, dataset) -> float:
    """Mean per-example loss of a distributed eval step over a dataset: the summed losses
    over the summed example counts, so partial and empty batches weigh exactly."""
    total, count = 0.0, 0.0
    for x, y in dataset:  # summed on the device, read once at the end
        logs = eval_step(x, y)
        total += logs["loss_sum"]
        count += logs["count"]
    return float(total) / max(float(count), 1.0)


def _scalar_metadata():
    """SummaryMetadata of a TensorBoard scalar (what ``tf.summary.scalar`` writes).

    Built by hand because ``tf.summary.scalar`` needs the tensorboard package, which
    is not a dependency; the event files are the same.
    """
    from tensorflow.core.framework import summary_pb2
    return summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"),
        data_class=summary_pb2.DATA_CLASS_SCALAR)


def write_scalars(writer, logs: dict, step: int, prefix: str) -> None:
    """Write ``logs`` as TensorBoard scalars ``prefix/name`` at ``step``."""
    metadata = _scalar_metadata()
    with writer.as_default():
        for k, v in logs.items():
            tf.summary.write(f"{prefix}/{k}", tf.cast(v, tf.float32), step=step,
                             metadata=metadata)


@dataclasses.dataclass
class LoopSpec:
    """Everything :func:`fit` needs besides the data.

    Attributes:
      step_for: maps the (0-based) step about to run to the distributed train step
        (lets the GAN switch on its discriminator at ``disc_start_step``).
      validate: returns the validation loss, or None to rank epochs by train loss.
      on_epoch_end: ``(epoch, logs, is_best)``, e.g. to export encoders.
    """

    steps_per_epoch: int
    total_steps: int
    step_for: Callable[[int], Callable]
    validate: Callable[[], float] | None
    on_epoch_end: Callable[[int, dict, bool], None]
    log_every: int = 100
    checkpoint_every: int = 1000


def fit(strategy, data: DataSpec, loop: LoopSpec, ckpt: RunCheckpoint, model_dir: str,
        start_step: int) -> dict:
    """Run from ``start_step`` to ``loop.total_steps``; return the last epoch's logs.

    An epoch is closed (validated, ``on_epoch_end``, checkpointed with its logs in
    ``ckpt.record``) once; a run killed after its last step but before that
    checkpoint closes the epoch on resume, so its records equal an uninterrupted run's.
    """
    writer = tf.summary.create_file_writer(os.path.join(model_dir, "tensorboard"))
    step, spe, total = start_step, loop.steps_per_epoch, loop.total_steps
    epochs = math.ceil(total / spe)
    record = ckpt.record
    run_start, run_steps = time.time(), 0
    while step < total or len(record.history) < epochs:
        # The epoch ending at ``step`` stays open until closed (resume after a kill).
        epoch = min(step // spe, len(record.history))
        end = min((epoch + 1) * spe, total)
        sums, counts, n, t0 = record.sums, record.counts, 0, time.time()
        if step < end:
            iterator = iter(distributed_train_data(strategy, data, epoch, step - epoch * spe))
        progress = Progress(end - epoch * spe, f"epoch {epoch + 1}/{epochs}", "step",
                            initial=step - epoch * spe)
        while step < end:
            x, y = next(iterator)
            logs = loop.step_for(step)(x, y)
            step += 1
            n += 1
            ckpt.step.assign(step)
            # Summed as device tensors: reading a value (float) would wait for the step,
            # so values are read only where they are shown or written.
            for k, v in logs.items():
                sums[k] = sums.get(k, 0.0) + tf.cast(v, tf.float64)
                counts[k] = counts.get(k, 0) + 1
            progress.update(1, lambda: _status(logs))
            if step % loop.log_every == 0:
                write_scalars(writer, logs, step, "train")
            if step % loop.checkpoint_every == 0 and step < end:  # the epoch end saves
                ckpt.save()
        progress.close()
        elapsed = time.time() - t0
        run_steps += n
        rate = run_steps / max(time.time() - run_start, 1e-9)
        last = {k: float(v) / counts[k] for k, v in sums.items()}
        if loop.validate is not None:
            last["val_loss"] = loop.validate()
        score = last.get("val_loss", last.get("loss", float("inf")))
        is_best = score < float(ckpt.best_val.numpy())
        if is_best:
            ckpt.best_val.assign(score)
        write_scalars(writer, last, step, "epoch")
        writer.flush()
        loop.on_epoch_end(epoch, last, is_best)
        record.close(epoch, last)
        ckpt.save()
        parts = " ".join(f"{k} {v:.4f}" for k, v in last.items())
        print(f"epoch {epoch + 1}/{epochs} step {step}/{total} {parts} | "
              f"{n * data.global_batch_size / max(elapsed, 1e-9):.1f} slices/s | "
              f"ETA {format_duration((total - step) / max(rate, 1e-9))}", flush=True)
    writer.close()
    return dict(record.history[-1]) if record.history else {}


def _status(logs: dict) -> str:
    """The current step's logs for the progress display (reads them from the device)."""
    return " ".join(f"{k} {float(v):.4f}" for k, v in logs.items())
