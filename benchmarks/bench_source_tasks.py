"""Pre-training cost of the source tasks that learn from the images alone: seconds per
training step of each task's own step (corruptions, masks or views included), measured
in one process on a fixed batch (the input pipeline is not measured).

Usage::

  python benchmarks/bench_source_tasks.py                    # compact, 64 px, batch 8
  python benchmarks/bench_source_tasks.py --preset taskonomy --image_size 256 --steps 5

``autoencoding`` is timed before its discriminator starts (the L1 step: an encoder and
decoder on the plain image), the baseline the self-supervised tasks add their
corruptions, masks or second view to. The precision is float32 unless
``--precision`` says otherwise.
"""
from __future__ import annotations

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

from tl_common.io import write_json_atomic  # noqa: E402

flags.DEFINE_string("preset", "compact", "model preset: taskonomy | compact | tiny")
flags.DEFINE_integer("image_size", 64, "slice size (multiple of 16)")
flags.DEFINE_integer("batch_size", 8, "batch size")
flags.DEFINE_integer("steps", 30, "timed steps per task")
flags.DEFINE_integer("warmup", 3, "untimed steps (tracing, first runs)")
flags.DEFINE_integer("repeats", 3, "timed runs per task (the median is reported)")
flags.DEFINE_list("tasks", ["autoencoding", "restoration", "masked_modeling", "simsiam"],
                  "source tasks to time (ones trained on the image alone)")
flags.DEFINE_string("precision", "none", "none (float32) | bfloat16")
flags.DEFINE_string("out_json", "", "also write the results here")
FLAGS = flags.FLAGS


def _task_step(name: str):
    """(the task's distributed train step, its trainable parameter count)."""
    import keras
    import tensorflow as tf
    from tl_keras.models.presets import build_models
    from tl_keras.training import tasks
    from tl_keras.training.config import PretrainConfig
    from tl_keras.training.runs import make_optimizer
    from tl_keras.training.strategy import set_precision
    from tl_keras.training.validation import with_task_options
    keras.backend.clear_session()
    set_precision(FLAGS.precision)
    keras.utils.set_random_seed(0)
    task = tasks.get(name)
    config = with_task_options(PretrainConfig(task=name, batch_size=FLAGS.batch_size,
                                              decoder_variant="paper"))
    models = build_models(FLAGS.preset, task.network, FLAGS.image_size, 3, None,
                          latent_channels=8, decoder_variant="paper")
    optimizer = make_optimizer(config)
    optimizer.build(models.model.trainable_variables)
    extra = {net.name: net.make_optimizer(config) for net in task.extra_networks}
    for net in task.extra_networks:
        extra[net.name].build(getattr(models, net.name).trainable_variables)
    ctx = tasks.StepContext(config, models, optimizer, extra, task.loss(config, None),
                            tf.distribute.get_strategy())
    params = sum(int(tf.size(v)) for v in models.model.trainable_variables)
    return task.steps(ctx)(0), params


def seconds_per_step(name: str, x) -> tuple[float, float, int]:
    """(wall-clock seconds, CPU seconds of all the process's threads, parameters) per
    step, medians over the repeats. On a machine shared with other jobs the CPU time is
    the steadier figure: the wall clock also counts the time the other jobs held the cores."""
    step, params = _task_step(name)
    for _ in range(FLAGS.warmup):
        float(step(x, x)["loss"])
    wall, cpu = [], []
    for _ in range(FLAGS.repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(FLAGS.steps):
            logs = step(x, x)
        float(logs["loss"])
        wall.append((time.perf_counter() - t0) / FLAGS.steps)
        cpu.append((time.process_time() - c0) / FLAGS.steps)
    return sorted(wall)[len(wall) // 2], sorted(cpu)[len(cpu) // 2], params


def main(argv):
    del argv
    import tensorflow as tf
    s, b = FLAGS.image_size, FLAGS.batch_size
    x = tf.random.stateless_uniform((b, s, s, 3), [0, 1], -1.0, 1.0)
    load = os.getloadavg()[0]
    print(f"{FLAGS.preset} network, {s} px, batch {b}, precision {FLAGS.precision}; "
          f"load average {load:.1f} on {os.cpu_count()} CPUs", flush=True)
    rows = []
    for name in FLAGS.tasks:
        seconds, cpu, params = seconds_per_step(name, x)
        rows.append({"task": name, "preset": FLAGS.preset, "image_size": s, "batch_size": b,
                     "seconds_per_step": seconds, "cpu_seconds_per_step": cpu,
                     "trainable_parameters": params, "load_average": load})
        print(f"{name:16s} {seconds * 1000:8.1f} ms per step ({cpu * 1000:6.1f} ms CPU)  "
              f"{b / seconds:7.1f} slices/s  {params:>10,d} parameters", flush=True)
    if FLAGS.out_json:
        write_json_atomic(FLAGS.out_json, rows)


if __name__ == "__main__":
    app.run(main)
