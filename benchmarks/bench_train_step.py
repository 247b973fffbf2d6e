"""Training throughput: the custom train step against ``model.fit``, and GFLOP/s
against a large matmul of the same precision, all measured in one process.

Usage::

  python benchmarks/bench_train_step.py                     # 256 px, batch 8 (the issue's set-up)
  python benchmarks/bench_train_step.py --image_size 64 --steps 5 --precisions float32,bfloat16

Model: the full Taskonomy encoder + decoder (target segmentation, 2 classes) on a
fixed random batch (so the input pipeline is not measured). FLOPs per training
slice are counted from the conv / transposed-conv / dense layers
(``tl_keras.models.flops``: forward x 3 for forward + backward).
"""
from __future__ import annotations

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import bench_common  # noqa: E402
from absl import app, flags  # noqa: E402

from tl_common.io import write_json_atomic  # noqa: E402

flags.DEFINE_integer("image_size", 256, "slice size (multiple of 16)")
flags.DEFINE_integer("batch_size", 8, "batch size")
flags.DEFINE_integer("steps", 5, "timed steps per configuration")
flags.DEFINE_integer("warmup", 2, "untimed steps (tracing, first runs)")
flags.DEFINE_list("precisions", ["float32", "bfloat16"], "float32 and/or bfloat16")
flags.DEFINE_list("jit", ["false", "true"], "jit_compile settings to measure")
flags.DEFINE_integer("matmul_size", 2048, "n of the n x n reference matmul")
flags.DEFINE_string("out_json", "", "also write the results here")
FLAGS = flags.FLAGS


def matmul_gflops(n: int, dtype: str, repeats: int = 10) -> float:
    import tensorflow as tf
    a = tf.random.uniform((n, n), dtype=tf.float32)
    a = tf.cast(a, dtype)

    @tf.function
    def run(a):
        out = a
        for _ in range(repeats):
            out = tf.linalg.matmul(a, out) * tf.cast(1e-3, dtype)
        return tf.reduce_sum(tf.cast(out, tf.float32))
    run(a).numpy()
    t0 = time.perf_counter()
    run(a).numpy()
    return 2.0 * n ** 3 * repeats / (time.perf_counter() - t0) / 1e9


def _build(precision: str):
    return bench_common.taskonomy_model(FLAGS.image_size, precision)


def bench_custom(precision: str, jit: bool, x, y) -> float:
    step = bench_common.custom_step(_build(precision), FLAGS.batch_size, jit)
    for _ in range(FLAGS.warmup):
        float(step(x, y)["loss"])
    t0 = time.perf_counter()
    for _ in range(FLAGS.steps):
        logs = step(x, y)
    float(logs["loss"])
    return FLAGS.steps * FLAGS.batch_size / (time.perf_counter() - t0)


def bench_fit(precision: str, jit: bool, x, y) -> float:
    import keras
    import tensorflow as tf
    from tl_keras.training.optimizers import make_generator_optimizer
    model = _build(precision)
    model.compile(optimizer=make_generator_optimizer(bench_common.LEARNING_RATE,
                                                     bench_common.WEIGHT_DECAY),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=jit)
    data = tf.data.Dataset.from_tensors((x, y)).repeat()
    model.fit(data, steps_per_epoch=FLAGS.warmup, epochs=1, verbose=0)
    t0 = time.perf_counter()
    model.fit(data, steps_per_epoch=FLAGS.steps, epochs=1, verbose=0)
    return FLAGS.steps * FLAGS.batch_size / (time.perf_counter() - t0)


def main(argv):
    del argv
    import tensorflow as tf
    from tl_keras.models.flops import training_flops_per_slice
    s, b = FLAGS.image_size, FLAGS.batch_size
    x = tf.random.uniform((b, s, s, 3), -1.0, 1.0)
    y = tf.random.uniform((b, s, s), 0, 2, dtype=tf.int32)
    flops = training_flops_per_slice(_build("float32"))
    print(f"image {s} px, batch {b}: {flops / 1e9:.2f} GFLOP per training slice", flush=True)
    rows = []
    for precision in FLAGS.precisions:
        peak = matmul_gflops(FLAGS.matmul_size, precision)
        print(f"{precision}: matmul {peak:.1f} GFLOP/s", flush=True)
        for jit in (j.lower() in ("1", "true", "yes") for j in FLAGS.jit):
            custom = bench_custom(precision, jit, x, y)
            fit = bench_fit(precision, jit, x, y)
            row = {"precision": precision, "jit_compile": jit, "image_size": s, "batch_size": b,
                   "custom_slices_per_s": custom, "fit_slices_per_s": fit,
                   "ratio": custom / fit, "gflop_per_slice": flops / 1e9,
                   "custom_gflops": custom * flops / 1e9, "matmul_gflops": peak,
                   "fraction_of_matmul": custom * flops / 1e9 / peak}
            rows.append(row)
            print(f"{precision:8s} jit={str(jit):5s} custom {custom:6.2f} slices/s | fit "
                  f"{fit:6.2f} slices/s | ratio {custom / fit:4.2f} | "
                  f"{row['custom_gflops']:6.1f} GFLOP/s = {row['fraction_of_matmul']:.0%} "
                  f"of matmul", flush=True)
    if FLAGS.out_json:
        write_json_atomic(FLAGS.out_json, rows)


if __name__ == "__main__":
    app.run(main)
