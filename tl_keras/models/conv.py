"""2-D convolution whose kernel gradient is computed by matrix products where that pays.

oneDNN's weight-gradient kernel (``Conv2DBackpropFilter``) is the slowest part of a
training step on a CPU: in the bfloat16 step of the Taskonomy network it took more time
than the forward and input-gradient convolutions together, and for a 1x1 convolution it
runs at a third of the rate of the matrix product that computes the same numbers
(docs/training.md, "Speed"). For a stride-1 convolution the kernel gradient is exactly

    dK[i, j, c, o] = sum over (n, y, x) of X_pad[n, y + i, x + j, c] * dY[n, y, x, o],

i.e. one matrix product per kernel tap (i, j) of the shifted input with ``dY`` (for 1x1
kernels, ``X^T @ dY``). :class:`Conv2D` can compute it that way and leaves the forward
pass and the input gradient to TensorFlow's convolution kernels, so outputs are
unchanged and gradients differ only in float rounding (both accumulate in float32).

Which kernel gradient a layer takes (:func:`gradient_method`):

- only when TensorFlow trains on the CPU (:func:`tl_keras.models.machine.trains_on_cpu`):
  the products were measured on CPUs; with a GPU, TensorFlow's (cuDNN's) kernel runs;
- on the CPU, by measurement: the first time a shape (input, kernel, dtype) is traced on a
  machine, the kernel gradients are timed on random tensors of that shape (alternating,
  median of 3 calls after one warm-up call each) and the fastest is kept in the speed cache
  (:mod:`tl_keras.models.machine`), so later runs do not time it again. For a k x k kernel
  (k > 1) there are two product forms besides TensorFlow's (:data:`METHODS`): one product
  per kernel tap (``taps``) and one product of a channel-major patch matrix (``patches``);
  a cached entry measured before the second form existed is measured again;
- where the shape is not known when traced (a batch dimension of None), or with several
  replicas, or with ``TL_KERAS_KERNEL_GRADIENT=rule``: the rule measured on the development
  machine (:func:`matmul_gradient_pays`, mixed bfloat16 only; its products in the per-tap
  form);
  ``TL_KERAS_KERNEL_GRADIENT=tensorflow`` always takes TensorFlow's.

Like ``models.batchnorm``, the layer keeps Keras' class name on purpose (``.weights.h5``
files address variables by the snake-cased class name, ``layers/conv2d/vars``); it is
registered as ``tl_keras>Conv2D``. Strided, dilated, grouped, 'valid' k > 1 and
channels-first convolutions run Keras' code unchanged.
"""
from __future__ import annotations

import os
import statistics
import threading
import time

import keras
import tensorflow as tf
from tensorflow.python.eager import record

from tl_common.cli import FlagError
from tl_keras.models import machine

__all__ = ["Conv2D", "gradient_method", "kernel_gradient", "matmul_gradient_pays",
           "use_matmul_gradient"]

#: Channels (input and output) from which a k x k (k > 1) kernel gradient is computed by
#: matrix products under the fixed rule. Below it each product has a small (C, O) result
#: summed over N*H*W rows, and oneDNN's weight-gradient kernel is faster: measured per
#: layer of the Taskonomy network at 256 px, batch 8, mixed bfloat16 (docs/training.md,
#: "Which kernel gradient, per layer").
MATMUL_MIN_CHANNELS = 256
#: The environment variable choosing how: ``auto`` (measured, the default), ``rule``,
#: ``tensorflow``.
KERNEL_GRADIENT_ENV = "TL_KERAS_KERNEL_GRADIENT"
KERNEL_GRADIENT_MODES = ("auto", "rule", "tensorflow")
#: Speed cache section of the per-shape measurements.
CACHE_SECTION = "kernel_gradient"
#: Timed calls per kernel gradient and shape (after one warm-up call each), alternating.
TIMED_CALLS = 3
#: The kernel gradients a layer can take: TensorFlow's (oneDNN's) kernel, one product per
#: kernel tap (:func:`kernel_gradient`), one product of a patch matrix (k x k kernels only).
METHODS = ("tensorflow", "taps", "patches")

_choices: dict[str, str] = {}   # this process's measured decisions, by shape key
_taken: dict[str, str] = {}     # every decision of this process (what a run records)
_lock = threading.Lock()


@keras.saving.register_keras_serializable(package="tl_keras")
class Conv2D(keras.layers.Conv2D):
    """``keras.layers.Conv2D`` with a matrix-product kernel gradient (module docstring)."""

    def convolution_op(self, inputs, kernel):
        # Without a gradient tape recording (inference, Keras' symbolic build) no kernel
        # gradient is computed: nothing to choose, nothing to measure.
        method = "tensorflow"
        if record.could_possibly_record() and self._matmul_gradient_applies():
            method = gradient_method(inputs.shape, kernel.shape, self.compute_dtype)
        if method == "tensorflow":
            return super().convolution_op(inputs, kernel)
        return _conv_same(method)(tf.cast(inputs, self.compute_dtype),
                                  tf.cast(kernel, self.compute_dtype))

    def _matmul_gradient_applies(self) -> bool:
        """Whether the products compute this layer's kernel gradient exactly."""
        one_by_one = tuple(self.kernel_size) == (1, 1)
        return (tuple(self.strides) == (1, 1)
                and tuple(self.dilation_rate) == (1, 1) and self.groups == 1
                and self.data_format == "channels_last"
                and (self.padding == "same" or one_by_one))


def matmul_gradient_pays(kernel_shape, dtype: str = "bfloat16") -> bool:
    """The fixed rule: whether the matrix-product kernel gradient was the faster one.

    Measured on the development machine (docs/training.md): under mixed bfloat16, always
    for 1x1 kernels (2-3x faster than oneDNN's weight-gradient kernel at every 1x1 shape
    of the Taskonomy network); for larger kernels only when both the input and the output
    channels are at least :data:`MATMUL_MIN_CHANNELS` (with few channels the products are
    long and narrow: for the decoder's 16-channel 3x3 convolution at 256 x 256 px they took
    39 ms against oneDNN's 4 ms). In float32 never (the quickstart's 64 px network trained
    24 % slower with it).
    """
    if str(dtype) != "bfloat16":
        return False
    kh, kw, cin, cout = (int(d) for d in kernel_shape)
    return (kh, kw) == (1, 1) or min(cin, cout) >= MATMUL_MIN_CHANNELS


def kernel_gradient_mode() -> str:
    """``$TL_KERAS_KERNEL_GRADIENT`` (``auto`` when unset); a FlagError names a bad value."""
    mode = os.environ.get(KERNEL_GRADIENT_ENV, "") or "auto"
    if mode not in KERNEL_GRADIENT_MODES:
        raise FlagError(f"{KERNEL_GRADIENT_ENV}={mode!r} is not one of "
                        f"{', '.join(KERNEL_GRADIENT_MODES)}")
    return mode


def shape_key(input_shape, kernel_shape, dtype: str) -> str:
    """The speed cache key of one kernel gradient, e.g. ``bfloat16 8x16x16x256 3x3 -> 256``."""
    kh, kw, _, cout = (int(d) for d in kernel_shape)
    dims = "x".join("?" if d is None else str(int(d)) for d in input_shape)
    return f"{dtype} {dims} {kh}x{kw} -> {cout}"


def use_matmul_gradient(input_shape, kernel_shape, dtype: str) -> bool:
    """Whether a stride-1 convolution of these shapes takes a matrix-product kernel
    gradient (either form; :func:`gradient_method`)."""
    return gradient_method(input_shape, kernel_shape, dtype) != "tensorflow"


def gradient_method(input_shape, kernel_shape, dtype: str) -> str:
    """The kernel gradient (a :data:`METHODS` entry) a stride-1 convolution of these shapes
    takes (module docstring: CPU only; measured per shape and cached; else the rule);
    remembered for :func:`taken`."""
    method = _choose(input_shape, kernel_shape, dtype)
    with _lock:
        _taken[shape_key(input_shape, kernel_shape, str(dtype))] = method
    return method


def taken(dtype: str | None = None) -> dict[str, str]:
    """The kernel gradient each stride-1 convolution shape took in this process (shape
    key -> :data:`METHODS` entry), sorted; only the shapes of compute ``dtype`` when given
    (what a run records: its shapes in other precisions were traced by ``auto``'s
    measurement)."""
    with _lock:
        return {k: v for k, v in sorted(_taken.items())
                if dtype is None or k.split(" ", 1)[0] == str(dtype)}


def clear_taken() -> None:
    """Forget what :func:`taken` holds: a run starts its own record (several runs can
    share a process, e.g. ``quickstart --train_workers 1``)."""
    with _lock:
        _taken.clear()


def _choose(input_shape, kernel_shape, dtype: str) -> str:
    """:func:`gradient_method`'s choice."""
    if not machine.trains_on_cpu():
        return "tensorflow"
    mode = kernel_gradient_mode()
    if mode == "tensorflow":
        return "tensorflow"
    known = all(d is not None for d in input_shape)
    ctx = tf.distribute.get_replica_context()
    replicas = 1 if ctx is None else ctx.num_replicas_in_sync
    if mode == "rule" or not known or replicas > 1:
        return "taps" if matmul_gradient_pays(kernel_shape, dtype) else "tensorflow"
    key = shape_key(input_shape, kernel_shape, str(dtype))
    with _lock:
        if key not in _choices:
            entry = machine.cached(CACHE_SECTION, key)
            if not _entry_complete(entry, kernel_shape):
                entry = measure_kernel_gradients(input_shape, kernel_shape, str(dtype))
                machine.store(CACHE_SECTION, key, entry)
            _choices[key] = _fastest(entry)
        return _choices[key]


def _entry_complete(entry, kernel_shape) -> bool:
    """Whether a speed cache entry holds every method this kernel size can take."""
    return isinstance(entry, dict) and all(
        f"{m}_ms" in entry for m in _methods(kernel_shape))


def _fastest(entry: dict) -> str:
    """The method of a speed cache entry with the smallest time (``taps`` is stored as
    ``matmul_ms``, the name it had when it was the only product form)."""
    times = {m: entry[f"{_cache_name(m)}_ms"] for m in METHODS if f"{_cache_name(m)}_ms" in entry}
    return min(times, key=times.get)


def _methods(kernel_shape) -> tuple[str, ...]:
    """The cache names of the methods a kernel size can take (a 1x1 kernel has one product
    form)."""
    one_by_one = tuple(int(d) for d in kernel_shape[:2]) == (1, 1)
    return tuple(_cache_name(m) for m in (METHODS[:2] if one_by_one else METHODS))


def _cache_name(method: str) -> str:
    return "matmul" if method == "taps" else method


def measure_kernel_gradients(input_shape, kernel_shape, dtype: str) -> dict:
    """Time TensorFlow's kernel gradient and :func:`kernel_gradient`'s forms on random
    tensors of these shapes (eagerly, outside any graph being traced); return the speed
    cache entry ``{"matmul": bool, "tensorflow_ms": m, "matmul_ms": m[, "patches_ms": m]}``
    (medians; ``matmul`` whether a product form is the faster, ``matmul_ms`` the per-tap
    form's time, ``patches_ms`` the patch matrix's for k x k kernels)."""
    with tf.init_scope():
        kernel_shape = tuple(int(d) for d in kernel_shape)
        x = tf.cast(tf.random.uniform([int(d) for d in input_shape], -1, 1), dtype)
        dy = tf.cast(tf.random.uniform([*x.shape[:3], kernel_shape[3]], -1, 1), dtype)
        runs = {"tensorflow": tf.function(lambda a, b: tf.raw_ops.Conv2DBackpropFilter(
            input=a, filter_sizes=kernel_shape, out_backprop=b, strides=[1, 1, 1, 1],
            padding="SAME"))}
        for method in METHODS[1:]:
            if _cache_name(method) in _methods(kernel_shape):
                runs[_cache_name(method)] = tf.function(
                    lambda a, b, m=method: kernel_gradient(a, b, kernel_shape, m))
        times = _alternate({name: (lambda f=f: f(x, dy)) for name, f in runs.items()},
                           TIMED_CALLS)
    entry = {f"{name}_ms": round(1e3 * statistics.median(t), 3) for name, t in times.items()}
    return {"matmul": _fastest(entry) != "tensorflow", **entry}


def _alternate(runs: dict, rounds: int) -> dict[str, list[float]]:
    """Seconds of each of ``runs`` (callables returning a tensor), one warm-up call each,
    then ``rounds`` rounds, the order reversed every other round (a shared machine's load
    then weighs on both alike)."""
    for run in runs.values():
        run().numpy()
    times = {name: [] for name in runs}
    names = list(runs)
    for r in range(rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            t0 = time.perf_counter()
            runs[name]().numpy()
            times[name].append(time.perf_counter() - t0)
    return times


def _conv_same(method: str):
    """TF 'SAME' stride-1 convolution ``(x, kernel) -> y`` whose kernel gradient is
    :func:`kernel_gradient` in form ``method``."""
    @tf.custom_gradient
    def conv(x, kernel):
        y = tf.nn.convolution(x, kernel, padding="SAME")

        def grad(dy):
            dx = tf.raw_ops.Conv2DBackpropInput(
                input_sizes=tf.shape(x), filter=kernel, out_backprop=dy, strides=[1, 1, 1, 1],
                padding="SAME")
            return dx, kernel_gradient(x, dy, kernel.shape, method)
        return y, grad
    return conv


def kernel_gradient(x, dy, kernel_shape, method: str = "taps"):
    """Gradient of a stride-1 TF 'SAME' NHWC convolution with respect to its kernel.

    For a 1x1 kernel, ``x^T @ dy`` over all pixels. For a k x k kernel, ``method``
    ``patches`` is :func:`_patch_kernel_gradient`; ``taps`` (the default) one product per
    kernel tap (i, j) of the input shifted by that tap with ``dy``, without copying the
    shifted inputs: the padded input is laid out pixel-major, ``((H + kh) * Wp, N, C)`` with
    ``Wp = W + kw - 1``, so the shift by (i, j) is the contiguous row range starting at
    ``i * Wp + j`` (a slice along the first axis, which TensorFlow takes without a copy);
    ``dy`` gets ``kw - 1`` zero columns, which cancel the products of the positions where a
    row range runs into the next image row. Against one matrix of the k*k shifted copies
    side by side (the previous implementation) it copies the input and ``dy`` twice each
    instead of the input 2 k*k times (docs/training.md, "Which kernel gradient, per layer").

    Args:
      x: (N, H, W, C) input of the convolution.
      dy: (N, H, W, O) gradient of its output.
      kernel_shape: (kh, kw, C, O).
      method: ``taps`` or ``patches`` (:data:`METHODS`; the same for 1x1 kernels).

    Returns:
      (kh, kw, C, O), in ``x``'s dtype.
    """
    kh, kw, cin, cout = (int(d) for d in kernel_shape)
    if (kh, kw) == (1, 1):
        grad = tf.matmul(tf.reshape(x, [-1, cin]), tf.reshape(dy, [-1, cout]), transpose_a=True)
        return tf.reshape(grad, [kh, kw, cin, cout])
    if method == "patches":
        return _patch_kernel_gradient(x, dy, (kh, kw, cin, cout))
    # TF 'SAME' at stride 1 pads (k - 1) // 2 before and the rest after; one more row at the
    # bottom keeps the last tap's row range inside the tensor.
    ph, pw = kh - 1, kw - 1
    shape = tf.shape(x)
    n, h, w = shape[0], shape[1], shape[2]
    wp = w + pw
    padded = tf.pad(x, [[0, 0], [ph // 2, ph - ph // 2 + 1], [pw // 2, pw - pw // 2], [0, 0]])
    rows = tf.reshape(tf.transpose(padded, [1, 2, 0, 3]), [-1, n, cin])
    dy_rows = tf.pad(dy, [[0, 0], [0, 0], [0, pw], [0, 0]])
    dy_rows = tf.reshape(tf.transpose(dy_rows, [1, 2, 0, 3]), [-1, cout])
    length = h * wp
    taps = [tf.matmul(tf.reshape(rows[i * wp + j:i * wp + j + length], [-1, cin]), dy_rows,
                      transpose_a=True)
            for i in range(kh) for j in range(kw)]
    return tf.reshape(tf.stack(taps), [kh, kw, cin, cout])


def _patch_kernel_gradient(x, dy, kernel_shape):
    """:func:`kernel_gradient` of a k x k kernel as one product ``P @ dy`` of a channel-major
    patch matrix ``P`` (``k*k*C`` rows, one per tap and input channel; ``N*H*W`` columns).

    ``P`` is built from the input transposed to (C, N, H, W) and padded, as the k*k shifted
    windows stacked tap-major, so the product reads both operands row-major and sums over
    exactly ``N*H*W`` pixels (the per-tap form also multiplies ``kw - 1`` zero columns per
    image row: 12.5 % more at 16 px, 3x3). It copies the input k*k times; where the channels
    are many and the image small that costs less than the product gains (docs/training.md,
    "Which kernel gradient, per layer"); the per-shape measurement decides.
    """
    kh, kw, cin, cout = kernel_shape
    ph, pw = kh - 1, kw - 1
    shape = tf.shape(x)
    h, w = shape[1], shape[2]
    channels_first = tf.transpose(x, [3, 0, 1, 2])
    padded = tf.pad(channels_first,
                    [[0, 0], [0, 0], [ph // 2, ph - ph // 2], [pw // 2, pw - pw // 2]])
    patches = tf.stack([padded[:, :, i:i + h, j:j + w] for i in range(kh) for j in range(kw)])
    grad = tf.matmul(tf.reshape(patches, [kh * kw * cin, -1]), tf.reshape(dy, [-1, cout]))
    return tf.reshape(grad, [kh, kw, cin, cout])
