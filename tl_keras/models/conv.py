"""2-D convolution whose kernel gradient is computed by matrix products where that pays.

oneDNN's weight-gradient kernel (``Conv2DBackpropFilter``) is the slowest part of a
training step on a CPU: in the bfloat16 step of the Taskonomy network it took more time
than the forward and input-gradient convolutions together, and for a 1x1 convolution it
runs at a third of the rate of the matrix product that computes the same numbers
(docs/training.md, "Speed"). For a stride-1 convolution the kernel gradient is exactly

    dK[i, j, c, o] = sum over (n, y, x) of X_pad[n, y + i, x + j, c] * dY[n, y, x, o],

i.e. one matrix product per kernel tap (i, j) of the shifted input with ``dY`` (for 1x1
kernels, ``X^T @ dY``). :class:`Conv2D` computes it that way and leaves the forward
pass and the input gradient to TensorFlow's convolution kernels, so outputs are
unchanged and gradients differ only in float rounding (both accumulate in float32). It does
so under mixed bfloat16 only, where it was measured to pay; float32 layers run Keras' code.

Like ``models.batchnorm``, the layer keeps Keras' class name on purpose (``.weights.h5``
files address variables by the snake-cased class name, ``layers/conv2d/vars``); it is
registered as ``tl_keras>Conv2D``. Strided, dilated, grouped, 'valid' k > 1 and
channels-first convolutions run Keras' code unchanged.
"""
from __future__ import annotations

import keras
import tensorflow as tf

__all__ = ["Conv2D", "kernel_gradient", "matmul_gradient_pays"]

#: Channels (input and output) from which a k x k (k > 1) kernel gradient is computed by
#: matrix products. Below it each product has a small (C, O) result summed over N*H*W rows,
#: and oneDNN's weight-gradient kernel is faster: measured per layer of the Taskonomy
#: network at 256 px, batch 8, mixed bfloat16 (docs/training.md, "Which kernel gradient,
#: per layer").
MATMUL_MIN_CHANNELS = 256


@keras.saving.register_keras_serializable(package="tl_keras")
class Conv2D(keras.layers.Conv2D):
    """``keras.layers.Conv2D`` with a matrix-product kernel gradient (module docstring)."""

    def convolution_op(self, inputs, kernel):
        if not (self._matmul_gradient_applies() and matmul_gradient_pays(kernel.shape)):
            return super().convolution_op(inputs, kernel)
        return _conv_same(tf.cast(inputs, self.compute_dtype),
                          tf.cast(kernel, self.compute_dtype))

    def _matmul_gradient_applies(self) -> bool:
        one_by_one = tuple(self.kernel_size) == (1, 1)
        # Measured faster only in mixed bfloat16 (the Taskonomy step at 256 px); in float32
        # the quickstart's 64 px network trained 24 % slower with it (95 -> 77 slices/s on one
        # thread), so float32 keeps TensorFlow's kernel gradient (docs/training.md).
        return (self.compute_dtype == "bfloat16" and tuple(self.strides) == (1, 1)
                and tuple(self.dilation_rate) == (1, 1) and self.groups == 1
                and self.data_format == "channels_last"
                and (self.padding == "same" or one_by_one))


def matmul_gradient_pays(kernel_shape) -> bool:
    """Whether the matrix-product kernel gradient is the faster one for this kernel.

    Always for 1x1 kernels (2-3x faster than oneDNN's weight-gradient kernel at every
    1x1 shape of the Taskonomy network); for larger kernels only when both the input and
    the output channels are at least :data:`MATMUL_MIN_CHANNELS`. With few channels the
    products are long and narrow: for the decoder's 16-channel 3x3 convolution at 256 x 256
    px they took 39 ms against oneDNN's 4 ms.
    """
    kh, kw, cin, cout = (int(d) for d in kernel_shape)
    return (kh, kw) == (1, 1) or min(cin, cout) >= MATMUL_MIN_CHANNELS


@tf.custom_gradient
def _conv_same(x, kernel):
    """TF 'SAME' stride-1 convolution; its kernel gradient via :func:`kernel_gradient`."""
    y = tf.nn.convolution(x, kernel, padding="SAME")

    def grad(dy):
        dx = tf.raw_ops.Conv2DBackpropInput(
            input_sizes=tf.shape(x), filter=kernel, out_backprop=dy, strides=[1, 1, 1, 1],
            padding="SAME")
        return dx, kernel_gradient(x, dy, kernel.shape)
    return y, grad


def kernel_gradient(x, dy, kernel_shape):
    """Gradient of a stride-1 TF 'SAME' NHWC convolution with respect to its kernel.

    For a 1x1 kernel, ``x^T @ dy`` over all pixels. For a k x k kernel, one product per
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

    Returns:
      (kh, kw, C, O), in ``x``'s dtype.
    """
    kh, kw, cin, cout = (int(d) for d in kernel_shape)
    if (kh, kw) == (1, 1):
        grad = tf.matmul(tf.reshape(x, [-1, cin]), tf.reshape(dy, [-1, cout]), transpose_a=True)
        return tf.reshape(grad, [kh, kw, cin, cout])
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
