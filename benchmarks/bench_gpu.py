"""The paper-scale training step and the input pipeline on a GPU: a run plan to check later.

Usage::

  python benchmarks/bench_gpu.py                  # 256 px, batch 32, bfloat16, 20 timed steps
  python benchmarks/bench_gpu.py --estimate       # FLOP-count estimates only (any machine)

Where TensorFlow sees a GPU: builds the Taskonomy ResNet-50 encoder + 15-layer decoder
(2 classes) at ``--image_size``, trains it with tl_keras' own step (the one
``tl_keras.finetune`` runs) under ``--precision`` on a fixed batch of ``--batch_size``
slices, and prints slices/s and the GPU's peak memory; then times the training input
pipeline (``tl_keras.data.build_dataset``, task ``target``) over a synthetic shard data set
of ``--slices`` random 256 px slices written to ``--work_dir``, and prints slices/s of
that. Without a GPU it says so in one line and exits 0 (nothing is built).

``--estimate`` prints what to expect instead: the step's FLOPs and activations counted
from the network's layers (``tl_keras.models.flops``) and, for the GPUs in ``PEAKS``, the
slices/s at the assumed share of the dense bfloat16 (float16) peak, and the memory of
weights, gradients, Adam moments and the batch's activations. Estimates, not
measurements: docs/training.md, "A GPU run plan".
"""
from __future__ import annotations

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import bench_common  # noqa: E402
from absl import app, flags  # noqa: E402

from tl_common.io import write_json_atomic  # noqa: E402

flags.DEFINE_integer("image_size", 256, "slice size (multiple of 16)")
flags.DEFINE_integer("batch_size", 32, "batch size")
flags.DEFINE_enum("precision", "bfloat16", ["float32", "bfloat16", "float16"],
                  "training precision")
flags.DEFINE_integer("steps", 20, "timed steps")
flags.DEFINE_integer("warmup", 3, "untimed steps (tracing, autotuning)")
flags.DEFINE_integer("slices", 2048, "slices of the synthetic data set of the input pipeline")
flags.DEFINE_string("work_dir", "/tmp/bench_gpu", "folder of the synthetic data set (reused)")
flags.DEFINE_bool("estimate", False, "print the FLOP-count estimates only")
flags.DEFINE_string("out_json", "", "also write the figures here")
FLAGS = flags.FLAGS

NUM_CLASSES = 2
#: Dense tensor-core peak in TFLOP/s for (bfloat16, float16) per GPU: the vendors' data
#: sheet figures without sparsity; None where the format has no tensor-core support.
PEAKS = {"NVIDIA V100 (SXM2)": (None, 125.0), "NVIDIA T4": (None, 65.0),
         "NVIDIA A100 (SXM)": (312.0, 312.0), "NVIDIA L4": (121.0, 121.0),
         "NVIDIA H100 (SXM)": (989.0, 989.0)}
#: Assumed share of that peak a convolutional training step reaches in TensorFlow without
#: XLA (an assumption to check with this script, not a measured figure).
EFFICIENCY = (0.10, 0.20)


def build_model(precision: str):
    return bench_common.taskonomy_model(FLAGS.image_size, precision, NUM_CLASSES)


def estimate() -> dict:
    """FLOPs and activations from the layers; slices/s and memory per GPU of ``PEAKS``."""
    from tl_keras.models.flops import activation_elements_per_slice, training_flops_per_slice
    model = build_model("float32")
    flops = training_flops_per_slice(model)
    activations = activation_elements_per_slice(model)
    weights = model.count_params()
    element = 4 if FLAGS.precision == "float32" else 2
    # float32 weights, gradients and two Adam moments; the batch's layer outputs.
    memory = 16 * weights + FLAGS.batch_size * activations * element
    column = 1 if FLAGS.precision == "float16" else 0
    gpus = {}
    for gpu, peaks in PEAKS.items():
        peak = peaks[column] if FLAGS.precision != "float32" else None
        if peak is not None:
            gpus[gpu] = [peak * 1e12 * e / flops for e in EFFICIENCY]
    return {"image_size": FLAGS.image_size, "batch_size": FLAGS.batch_size,
            "precision": FLAGS.precision, "gflop_per_slice": flops / 1e9,
            "activation_elements_per_slice": activations, "weights": weights,
            "memory_gb": memory / 1e9, "efficiency": list(EFFICIENCY),
            "slices_per_s": gpus}


def bench_step(model, x, y) -> float:
    step = bench_common.custom_step(model, FLAGS.batch_size)
    for _ in range(FLAGS.warmup):
        float(step(x, y)["loss"])
    t0 = time.perf_counter()
    for _ in range(FLAGS.steps):
        logs = step(x, y)
    float(logs["loss"])  # waits for the last step
    return FLAGS.steps * FLAGS.batch_size / (time.perf_counter() - t0)


def synthetic_data(folder: str) -> str:
    """A shard data set of random slices with a random 2-class mask (written once)."""
    import numpy as np
    from tfrecords_tools import schema
    from tfrecords_tools.shards import writer
    if os.path.exists(os.path.join(folder, "dataset.json")):
        return folder
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    s, shards, per_subject = FLAGS.image_size, 8, 64
    subjects = [f"sub{i:03d}" for i in range(max(1, FLAGS.slices // per_subject))]
    examples = (schema.make_example(subject_id=subject, slice_index=k,
                                    image=rng.random((s, s), np.float32),
                                    mask=(rng.random((s, s)) > 0.9).astype(np.int64))
                for subject in subjects for k in range(per_subject))
    records = list(examples)
    for i in range(shards):
        writer.write_shard(os.path.join(folder, schema.shard_name("train", i, shards)),
                           records[i::shards])
    writer.write_dataset_json(folder, {
        "image_size": [s, s], "channels": 1, "num_mask_classes": NUM_CLASSES,
        "num_tissue_classes": 1, "presence_labels": [], "mask_classes": ["background", "lesion"],
        "synthetic": True, "splits": {"train": {"subjects": subjects, "slices": len(records),
                                                "shards": shards}}})
    return folder


def bench_input(folder: str) -> float:
    """Slices/s of the training input (one warm-up epoch, then one timed epoch)."""
    from tl_keras.data.dataset import build_dataset
    ds = build_dataset(folder, "train", "target", FLAGS.batch_size, training=True)
    for _ in ds:
        pass
    n, t0 = 0, time.perf_counter()
    for x, _ in ds:
        n += int(x.shape[0])
    return n / (time.perf_counter() - t0)


def main(argv):
    del argv
    from tl_common import console
    console.set_verbosity()
    if FLAGS.estimate:
        figures = estimate()
        print(f"{FLAGS.image_size} px, batch {FLAGS.batch_size}, {FLAGS.precision}: "
              f"{figures['gflop_per_slice']:.1f} GFLOP per training slice, "
              f"{figures['weights']:,} weights, ~{figures['memory_gb']:.1f} GB (estimate)")
        for gpu, (low, high) in figures["slices_per_s"].items():
            print(f"  {gpu}: {low:.0f}-{high:.0f} slices/s at {EFFICIENCY[0]:.0%}-"
                  f"{EFFICIENCY[1]:.0%} of peak (estimate)")
    else:
        import numpy as np
        import tensorflow as tf
        gpus = tf.config.list_physical_devices("GPU")
        if not gpus:
            print("bench_gpu: no GPU visible to TensorFlow; nothing to measure here "
                  "(--estimate prints the expected figures)")
            return 0
        name = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")
        s, b = FLAGS.image_size, FLAGS.batch_size
        rng = np.random.default_rng(1)
        x = tf.constant(rng.uniform(-1, 1, (b, s, s, 3)).astype(np.float32))
        y = tf.constant(rng.integers(0, NUM_CLASSES, (b, s, s)).astype(np.int32))
        step_rate = bench_step(build_model(FLAGS.precision), x, y)
        peak_gb = tf.config.experimental.get_memory_info("GPU:0")["peak"] / 1e9
        input_rate = bench_input(synthetic_data(os.path.join(FLAGS.work_dir, "data")))
        figures = {"gpu": name, "gpus": len(gpus), "image_size": s, "batch_size": b,
                   "precision": FLAGS.precision, "step_slices_per_s": step_rate,
                   "gpu_peak_memory_gb": peak_gb, "input_slices_per_s": input_rate}
        bound = "input-bound" if input_rate < step_rate else "the step is the bottleneck"
        print(f"{name}: training step {step_rate:.1f} slices/s ({s} px, batch {b}, "
              f"{FLAGS.precision}), GPU peak memory {peak_gb:.2f} GB; input pipeline "
              f"{input_rate:.0f} slices/s ({bound})", flush=True)
    if FLAGS.out_json:
        write_json_atomic(FLAGS.out_json, figures)
    return 0


if __name__ == "__main__":
    app.run(main)
