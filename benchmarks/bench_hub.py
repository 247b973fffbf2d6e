"""Fine-tuning step time of keras-hub backbones against the compact network, in one process.

Usage::

  python benchmarks/bench_hub.py                       # 64 px, batch 8, 1 channel, float32
  python benchmarks/bench_hub.py --preset_dirs resnet_50=DIR,efficientnet_b0=DIR

Without ``--preset_dirs`` the backbones are the architectures of keras-hub's
``resnet_50_imagenet`` (bottleneck ResNet-50 v1) and ``efficientnet_b0_ra_imagenet``
(B0, v1 blocks) built from their published hyper-parameters with random weights and saved
as local presets under ``--work_dir`` (a step costs the same whatever the weights, and this
needs no network). Each network runs the fine-tuning step of ``tl_keras.finetune``
(``steps.make_supervised_step``, weighted cross-entropy, AdamW) on a fixed random batch, with
``--decoder_variants`` (``unet`` and ``paper``); the figures are seconds per step (median of
``--rounds`` rounds of ``--steps`` steps), written as JSON with ``--out_json``.
"""
from __future__ import annotations

import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

from tl_common.io import write_json_atomic  # noqa: E402

flags.DEFINE_list("decoder_variants", ["unet", "paper"], "decoders to measure")
flags.DEFINE_integer("image_size", 64, "slice size (a multiple of 32)")
flags.DEFINE_integer("batch_size", 8, "batch size")
flags.DEFINE_integer("input_channels", 1, "1 or 3")
flags.DEFINE_list("preset_dirs", [], "NAME=DIR keras-hub presets to measure instead of the "
                  "built-in architectures")
flags.DEFINE_integer("steps", 3, "timed steps per round")
flags.DEFINE_integer("rounds", 3, "timed rounds per network (the median is reported)")
flags.DEFINE_integer("warmup", 2, "untimed steps (tracing, first runs)")
flags.DEFINE_string("work_dir", "/tmp/bench_hub", "where the architecture presets are saved")
flags.DEFINE_string("out_json", "", "also write the results here")
FLAGS = flags.FLAGS

#: keras-hub's resnet_50_imagenet architecture (ResNet-50 v1, bottleneck blocks).
RESNET_50 = dict(input_conv_filters=[64], input_conv_kernel_sizes=[7],
                 stackwise_num_filters=[64, 128, 256, 512], stackwise_num_blocks=[3, 4, 6, 3],
                 stackwise_num_strides=[1, 2, 2, 2], block_type="bottleneck_block")
#: EfficientNet-B0 (v1 blocks, width and depth 1.0), as keras-hub's B0 presets.
EFFICIENTNET_B0 = dict(
    stackwise_width_coefficients=[1.0] * 7, stackwise_depth_coefficients=[1.0] * 7,
    stackwise_kernel_sizes=[3, 3, 5, 3, 5, 5, 3], stackwise_num_repeats=[1, 2, 2, 3, 3, 4, 1],
    stackwise_input_filters=[32, 16, 24, 40, 80, 112, 192],
    stackwise_output_filters=[16, 24, 40, 80, 112, 192, 320],
    stackwise_expansion_ratios=[1, 6, 6, 6, 6, 6, 6], stackwise_strides=[1, 2, 2, 2, 1, 2, 1],
    stackwise_squeeze_and_excite_ratios=[0.25] * 7, stackwise_block_types=["v1"] * 7,
    min_depth=None, use_depth_divisor_as_min_depth=True, cap_round_filter_decrease=True,
    dropout=0.0)


def architecture_presets(work_dir: str) -> dict:
    """Save the two architectures (random weights) as presets; ``{name: dir}``."""
    import keras_hub
    out = {}
    for name, cls, kwargs in (("resnet_50", keras_hub.models.ResNetBackbone, RESNET_50),
                              ("efficientnet_b0", keras_hub.models.EfficientNetBackbone,
                               EFFICIENTNET_B0)):
        out[name] = os.path.join(work_dir, name)
        if not os.path.isfile(os.path.join(out[name], "config.json")):
            cls(**kwargs).save_to_preset(out[name])
    return out


def _models(network: str, decoder: str):
    import keras
    from tl_keras.models.hub import build_hub_models
    from tl_keras.models.presets import build_models
    from tl_keras.training.strategy import set_precision
    keras.backend.clear_session()
    set_precision("none")
    keras.utils.set_random_seed(0)
    size, channels = FLAGS.image_size, FLAGS.input_channels
    if network == "compact":
        return build_models("compact", "target", size, channels, 2, decoder_variant=decoder)
    return build_hub_models(network, "target", size, channels, 2, decoder_variant=decoder)


def seconds_per_step(network: str, decoder: str, x, y) -> dict:
    import tensorflow as tf
    from tl_keras.training import losses, steps
    from tl_keras.training.optimizers import make_generator_optimizer
    tm = _models(network, decoder)
    opt = make_generator_optimizer(1e-4, 2e-6)
    opt.build(tm.model.trainable_variables)
    step = steps.distribute(steps.make_supervised_step(
        tm.model, opt, losses.weighted_cross_entropy, FLAGS.batch_size, False),
        tf.distribute.get_strategy())
    for _ in range(FLAGS.warmup):
        float(step(x, y)["loss"])
    times = []
    for _ in range(FLAGS.rounds):
        t0 = time.perf_counter()
        for _ in range(FLAGS.steps):
            logs = step(x, y)
        float(logs["loss"])
        times.append((time.perf_counter() - t0) / FLAGS.steps)
    return {"s_per_step": statistics.median(times), "rounds": times,
            "encoder_params": tm.encoder.count_params(), "params": tm.model.count_params()}


def main(argv):
    del argv
    import numpy as np
    presets = (dict(p.split("=", 1) for p in FLAGS.preset_dirs) if FLAGS.preset_dirs
               else architecture_presets(FLAGS.work_dir))
    rng = np.random.default_rng(0)
    shape = (FLAGS.batch_size, FLAGS.image_size, FLAGS.image_size)
    x = rng.uniform(-1, 1, shape + (FLAGS.input_channels,)).astype(np.float32)
    y = (rng.random(shape) < 0.1).astype(np.int32)
    results = {}
    for decoder in FLAGS.decoder_variants:
        for name, network in [("compact", "compact")] + sorted(presets.items()):
            key = f"{name}/{decoder}"
            results[key] = seconds_per_step(network, decoder, x, y)
            r = results[key]
            print(f"{key:28s} {r['s_per_step']:.3f} s/step  (rounds "
                  f"{', '.join(f'{t:.3f}' for t in r['rounds'])}; encoder "
                  f"{r['encoder_params'] / 1e6:.2f} M, model {r['params'] / 1e6:.2f} M params)",
                  flush=True)
    summary = {"image_size": FLAGS.image_size, "batch_size": FLAGS.batch_size,
               "input_channels": FLAGS.input_channels, "load": os.getloadavg(),
               "results": results}
    if FLAGS.out_json:
        write_json_atomic(FLAGS.out_json, summary)


if __name__ == "__main__":
    app.run(main)
