"""What a network's training step costs, counted from its layers: FLOPs and activations.

Used by the benchmarks (``benchmarks/bench_train_step.py``, ``benchmarks/bench_gpu.py``) to
relate measured rates to the hardware's peak and to estimate figures for hardware not at
hand (docs/training.md, "Speed").
"""
from __future__ import annotations

import math

import keras

__all__ = ["activation_elements_per_slice", "training_flops_per_slice"]


def _layers(model):
    return [layer for layer in model._flatten_layers(include_self=False, recursive=True)
            if not isinstance(layer, (keras.Model, keras.layers.InputLayer))]


def training_flops_per_slice(model) -> float:
    """3 x the forward multiply-adds x 2 of the conv, transposed-conv and dense layers
    (forward, input gradient and kernel gradient each cost one forward pass)."""
    total = 0.0
    for layer in _layers(model):
        if isinstance(layer, keras.layers.Conv2DTranspose):
            _, h, w, cin = layer.input.shape
            total += 2.0 * h * w * layer.kernel_size[0] * layer.kernel_size[1] * cin * layer.filters
        elif isinstance(layer, keras.layers.Conv2D):
            _, h, w, cout = layer.output.shape
            cin = layer.input.shape[-1]
            total += 2.0 * h * w * layer.kernel_size[0] * layer.kernel_size[1] * cin * cout
        elif isinstance(layer, keras.layers.Dense):
            total += 2.0 * layer.input.shape[-1] * layer.units
    return 3.0 * total


def activation_elements_per_slice(model) -> int:
    """Output elements of every layer for one slice: about what a training step keeps for
    the backward pass (times the batch and the bytes per element)."""
    total = 0
    for layer in _layers(model):
        outputs = layer.output if isinstance(layer.output, (list, tuple)) else [layer.output]
        total += sum(math.prod(int(d) for d in out.shape[1:]) for out in outputs)
    return total
