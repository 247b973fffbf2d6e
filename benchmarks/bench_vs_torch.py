"""Training throughput of tl_keras against the same network in PyTorch, on one machine.

Usage (needs the optional extra: ``pip install -e .[bench]``; the toolkit never imports
torch)::

  python benchmarks/bench_vs_torch.py                      # 256 px, batch 8, 7 rounds
  python benchmarks/bench_vs_torch.py --image_size 64 --rounds 1 --steps 2

Network: the Taskonomy encoder + 15-layer decoder with 2 output classes, built by
``tl_keras.models`` and re-written here in PyTorch (channels-last, TF's padding
rules), with one PyTorch module per Keras layer under the Keras layer's name. Before
timing, the script asserts equal parameter counts and loads the Keras weights into
the PyTorch network by name, then compares the two networks' outputs in inference
mode. Both train with pixel-wise softmax cross-entropy and AdamW (PyTorch's fused
implementation where available) on a fixed random batch, so the input pipeline is
not measured. ``bfloat16`` is Keras' ``mixed_bfloat16`` policy against
``torch.autocast(bfloat16)``.

Timing: per precision, ``--rounds`` rounds alternate the two frameworks (``--steps``
timed steps each, after ``--warmup`` untimed ones), so both see the same machine
load; the medians and their ratio (tl_keras / PyTorch slices per second) are printed.
Last, best against best: each framework at its faster precision on this machine (what
a user who picks the faster one gets; ``--mixed_precision auto`` does so for tl_keras)
and the ratio of the two, with the machine's CPU model and relevant flags.
"""
from __future__ import annotations

import json
import statistics
import time

import bench_common
from absl import app, flags

flags.DEFINE_integer("image_size", 256, "slice size (multiple of 16)")
flags.DEFINE_integer("batch_size", 8, "batch size")
flags.DEFINE_integer("steps", 2, "timed steps per round and framework")
flags.DEFINE_integer("warmup", 2, "untimed steps (tracing, first runs)")
flags.DEFINE_integer("rounds", 7, "alternating rounds per precision (the median is reported)")
flags.DEFINE_list("precisions", ["float32", "bfloat16"], "float32 and/or bfloat16")
flags.DEFINE_string("out_json", "", "also write the results here")
FLAGS = flags.FLAGS

NUM_CLASSES = 2
LEARNING_RATE, WEIGHT_DECAY = bench_common.LEARNING_RATE, bench_common.WEIGHT_DECAY
# PyTorch's AdamW multiplies its weight_decay by the learning rate, hence
# WEIGHT_DECAY / LEARNING_RATE there.


def build_keras(precision: str):
    """The Taskonomy encoder + decoder (target segmentation) under ``precision``."""
    return bench_common.taskonomy_model(FLAGS.image_size, precision, NUM_CLASSES)


def keras_step(model, batch_size: int):
    """tl_keras' own training step (the one ``tl_keras.finetune`` runs)."""
    return bench_common.custom_step(model, batch_size)


def keras_layers(model):
    """Every layer with weights, by name (nested models flattened)."""
    return {layer.name: layer for layer in model._flatten_layers(include_self=False)
            if layer.weights and not hasattr(layer, "layers")}


def make_torch_network(keras_model):
    """The same network in PyTorch, one module per Keras layer named like it.

    Walks the Keras graph's layer types to build the same sequence of operations; TF
    'SAME' padding is reproduced exactly (asymmetric where TF pads asymmetrically).
    """
    import keras
    import torch
    import torch.nn.functional as F
    from torch import nn

    layers = keras_layers(keras_model)

    class Network(nn.Module):
        def __init__(self):
            super().__init__()
            self.mods = nn.ModuleDict()
            for name, layer in layers.items():
                self.mods[name] = self._module(layer)

        @staticmethod
        def _module(layer):
            if isinstance(layer, keras.layers.Conv2DTranspose):
                cin, k = layer.input.shape[-1], layer.kernel_size[0]
                # TF 'SAME' keeps the first 2n rows of the full (2n + 1) output.
                return nn.ConvTranspose2d(cin, layer.filters, k, layer.strides[0], 0,
                                          bias=layer.use_bias)
            if isinstance(layer, keras.layers.Conv2D):
                # 'valid' strided convs follow an explicit ZeroPadding2D (see forward).
                k = layer.kernel_size[0]
                return nn.Conv2d(layer.input.shape[-1], layer.filters, k, layer.strides[0],
                                 (k - 1) // 2 if layer.padding == "same" else 0,
                                 bias=layer.use_bias)
            if isinstance(layer, keras.layers.BatchNormalization):
                return nn.BatchNorm2d(layer.gamma.shape[0], eps=layer.epsilon,
                                      momentum=1.0 - layer.momentum)
            raise TypeError(f"no PyTorch twin for {type(layer).__name__} {layer.name}")

        def forward(self, x):
            from tl_keras.models.decoder import TASKONOMY_LAYERS
            from tl_keras.models.encoder import RESNET50_BLOCKS
            m = self.mods

            def cbn(x, scope, act=F.relu):
                x = m[scope.replace("/", "__")](x)
                x = m[scope.replace("/", "__") + "__BatchNorm"](x)
                return act(x) if act is not None else x

            x = F.pad(x, (3, 3, 3, 3))
            x = cbn(x, "encoder/conv1")
            x = F.max_pool2d(F.pad(x, (0, 1, 0, 1)), 3, 2)  # TF 'SAME': pad after only
            for block, units, depth, bdepth, last_stride in RESNET50_BLOCKS:
                for i in range(1, units + 1):
                    scope = f"encoder/{block}/unit_{i}/bottleneck_v1"
                    stride = last_stride if i == units else 1
                    if x.shape[1] == depth:
                        shortcut = x[:, :, ::stride, ::stride] if stride > 1 else x
                    else:
                        shortcut = cbn(x, scope + "/shortcut", None)
                    r = cbn(x, scope + "/conv1")
                    r = cbn(F.pad(r, (1, 1, 1, 1)) if stride > 1 else r, scope + "/conv2")
                    r = cbn(r, scope + "/conv3", None)
                    x = F.relu(shortcut + r)
            x = cbn(x, "compress1")
            lrelu = lambda t: F.leaky_relu(t, 0.2)  # noqa: E731
            for scope, kind, _ in TASKONOMY_LAYERS:
                name = f"decoder/{scope}"
                if kind == "deconv":
                    h, w = x.shape[2:]
                    x = m[name.replace("/", "__")](x)[:, :, :2 * h, :2 * w]
                    x = lrelu(m[name.replace("/", "__") + "__BatchNorm"](x))
                else:
                    x = cbn(x, name, lrelu)
            return m["decoder__decoder_output"](x)

    net = Network()
    return net.to(memory_format=torch.channels_last)


def load_keras_weights(net, keras_model) -> int:
    """Copy every Keras weight into the PyTorch module of the same name; return the count."""
    import keras
    import numpy as np
    import torch
    copied = 0
    with torch.no_grad():
        for name, layer in keras_layers(keras_model).items():
            mod = net.mods[name]
            if isinstance(layer, keras.layers.BatchNormalization):
                pairs = [(mod.weight, layer.gamma), (mod.bias, layer.beta),
                         (mod.running_mean, layer.moving_mean),
                         (mod.running_var, layer.moving_variance)]
            else:
                # Conv2D (kh, kw, in, out) -> (out, in, kh, kw); Conv2DTranspose
                # (kh, kw, out, in) -> (in, out, kh, kw): the same permutation.
                kernel = np.transpose(np.asarray(layer.kernel), (3, 2, 0, 1))
                pairs = [(mod.weight, kernel)] + ([(mod.bias, layer.bias)] if layer.use_bias
                                                  else [])
            for target, value in pairs:
                value = np.asarray(value, np.float32)
                if tuple(target.shape) != value.shape:
                    raise ValueError(f"{name}: shape {value.shape} vs {tuple(target.shape)}")
                target.copy_(torch.from_numpy(value))
                copied += value.size
    return copied


def check_same_function(keras_model, net) -> float:
    """Randomise the BN statistics, load by name, compare inference outputs (max |diff|)."""
    import numpy as np
    import torch
    rng = np.random.default_rng(0)
    for layer in keras_layers(keras_model).values():
        if hasattr(layer, "moving_variance"):
            layer.moving_mean.assign(rng.normal(0, 0.1, layer.moving_mean.shape))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, layer.moving_variance.shape))
    load_keras_weights(net, keras_model)
    x = rng.uniform(-1, 1, (2, FLAGS.image_size, FLAGS.image_size, 3)).astype(np.float32)
    ours = np.asarray(keras_model(x, training=False))
    net.eval()
    with torch.no_grad():
        theirs = net(torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(
            memory_format=torch.channels_last)).permute(0, 2, 3, 1).numpy()
    net.train()
    return float(np.max(np.abs(ours - theirs)) / max(np.max(np.abs(ours)), 1e-12))


def torch_step(net, precision: str):
    import torch
    import torch.nn.functional as F
    try:
        opt = torch.optim.AdamW(net.parameters(), lr=LEARNING_RATE,
                                weight_decay=WEIGHT_DECAY / LEARNING_RATE, fused=True)
    except (RuntimeError, TypeError):
        opt = torch.optim.AdamW(net.parameters(), lr=LEARNING_RATE,
                                weight_decay=WEIGHT_DECAY / LEARNING_RATE)

    def step(x, y):
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bfloat16"):
            logits = net(x)
        loss = F.cross_entropy(logits.float(), y)
        loss.backward()
        opt.step()
        return loss.detach()
    return step


def timed(run, steps: int) -> float:
    """Seconds for ``steps`` calls of ``run`` (which returns after the step is done)."""
    t0 = time.perf_counter()
    for _ in range(steps):
        run()
    return time.perf_counter() - t0


def count_params(keras_model, net) -> tuple[int, int]:
    """(Keras, PyTorch) weight counts, BN moving statistics included on both sides."""
    ours = sum(int(w.numpy().size) for w in keras_model.weights)
    buffers = sum(b.numel() for n, b in net.named_buffers() if "num_batches" not in n)
    return ours, sum(p.numel() for p in net.parameters()) + buffers


def bench_precision(precision: str, x_np, y_np) -> dict:
    import tensorflow as tf
    import torch
    model = build_keras(precision)
    net = make_torch_network(model)
    ours, theirs = count_params(model, net)
    assert ours == theirs, f"parameter counts differ: tl_keras {ours}, PyTorch {theirs}"
    diff = check_same_function(model, net) if precision == "float32" else float("nan")
    step = keras_step(model, FLAGS.batch_size)
    x, y = tf.constant(x_np), tf.constant(y_np)
    t_step = torch_step(net, precision)
    tx = torch.from_numpy(x_np).permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)
    ty = torch.from_numpy(y_np.astype("int64"))
    run_tf = lambda: float(step(x, y)["loss"])  # noqa: E731  (float waits for the step)
    run_torch = lambda: float(t_step(tx, ty))  # noqa: E731
    timed(run_tf, FLAGS.warmup)
    timed(run_torch, FLAGS.warmup)
    rates = {"tl_keras": [], "pytorch": []}
    for _ in range(FLAGS.rounds):
        rates["tl_keras"].append(FLAGS.steps * FLAGS.batch_size / timed(run_tf, FLAGS.steps))
        rates["pytorch"].append(FLAGS.steps * FLAGS.batch_size / timed(run_torch, FLAGS.steps))
    med = {k: statistics.median(v) for k, v in rates.items()}
    return {"precision": precision, "image_size": FLAGS.image_size,
            "batch_size": FLAGS.batch_size, "parameters": ours,
            "max_rel_output_diff": diff, "rounds": rates,
            "tl_keras_slices_per_s": med["tl_keras"], "pytorch_slices_per_s": med["pytorch"],
            "ratio": med["tl_keras"] / med["pytorch"]}


def best_against_best(rows: list) -> dict:
    """Each framework at its fastest precision among ``rows``, and the ratio."""
    out = {}
    for side in ("tl_keras", "pytorch"):
        best = max(rows, key=lambda r: r[f"{side}_slices_per_s"])
        out[side] = {"precision": best["precision"],
                     "slices_per_s": best[f"{side}_slices_per_s"]}
    out["ratio"] = out["tl_keras"]["slices_per_s"] / out["pytorch"]["slices_per_s"]
    return out


def machine_line() -> str:
    """The CPU model and the flags that decide oneDNN's kernels (the speed cache's key)."""
    from tl_keras.models import machine
    return machine.machine_key()


def main(argv):
    del argv
    from tl_common import console
    console.set_verbosity()
    import numpy as np
    import torch
    import tensorflow as tf
    s, b = FLAGS.image_size, FLAGS.batch_size
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, (b, s, s, 3)).astype(np.float32)
    y = rng.integers(0, NUM_CLASSES, (b, s, s)).astype(np.int32)
    print(f"tensorflow {tf.__version__}, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads); {s} px, batch {b}, "
          f"{FLAGS.rounds} alternating rounds of {FLAGS.steps} steps", flush=True)
    rows = []
    for precision in FLAGS.precisions:
        row = bench_precision(precision, x, y)
        rows.append(row)
        check = ("" if precision != "float32"
                 else f" | outputs equal within {row['max_rel_output_diff']:.1e} (relative)")
        print(f"{precision:8s} {row['parameters']:,} parameters{check} | tl_keras "
              f"{row['tl_keras_slices_per_s']:5.2f} slices/s | PyTorch "
              f"{row['pytorch_slices_per_s']:5.2f} slices/s | ratio {row['ratio']:.2f}x",
              flush=True)
        for side in ("tl_keras", "pytorch"):
            print(f"{'':8s} {side} per round: "
                  + " ".join(f"{v:.2f}" for v in row["rounds"][side]), flush=True)
    best = best_against_best(rows)
    print(f"best against best: tl_keras {best['tl_keras']['slices_per_s']:.2f} slices/s "
          f"({best['tl_keras']['precision']}) | PyTorch {best['pytorch']['slices_per_s']:.2f} "
          f"slices/s ({best['pytorch']['precision']}) | ratio {best['ratio']:.2f}x", flush=True)
    print(f"machine: {machine_line()}", flush=True)
    if FLAGS.out_json:
        with open(FLAGS.out_json, "w") as f:
            json.dump({"machine": machine_line(), "precisions": rows,
                       "best_against_best": best}, f, indent=2)


if __name__ == "__main__":
    app.run(main)
