"""2-D convolution whose kernel gradient is one matrix product (stride-1 convolutions).

oneDNN's weight-gradient kernel (``Conv2DBackpropFilter``) is the slowest part of a
training step on a CPU: in the bfloat16 step of the Taskonomy network it took more time
than the forward and input-gradient convolutions together, and for a 1x1 convolution it
runs at a third of the rate of the matrix product that computes the same numbers
(docs/training.md, "Speed"). For a stride-1 convolution the kernel gradient is exactly

    dK[i, j, c, o] = sum over (n, y, x) of X_pad[n, y + i, x + j, c] * dY[n, y, x, o],

i.e. ``patches(X)^T @ dY`` with the k x k shifted copies of the padded input side by side
(for 1x1 kernels, X itself). :class:`Conv2D` computes it that way and leaves the forward
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

#: Channels (input and output) from which a k x k (k > 1) kernel gradient is computed as a
#: matrix product. Below it the k*k shifted copies of the input cost more than oneDNN's
#: weight-gradient kernel saves: measured per layer of the Taskonomy network at 256 px,
#: batch 8, mixed bfloat16 (docs/training.md, "Which kernel gradient, per layer").
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
        return (self.compute_dtype == "bfloat16" and tuple(self.strides) == (1, 1) and tuple(self.dilation_rate) == (1, 1)
                and self.groups == 1 and self.data_format == "channels_last"
                and (self.padding == "same" or one_by_one))


def matmul_gradient_pays(kernel_shape) -> bool:
    """Whether the matrix-product kernel gradient is the faster one for this kernel.

    Always for 1x1 kernels (2-3x faster than oneDNN's weight-gradient kernel at every
    1x1 shape of the Taskonomy network); for larger kernels only when both the input and
    the output channels are at least :data:`MATMUL_MIN_CHANNELS` (the patch matrix is
    ``k*k*C`` wide and ``N*H*W`` long: with few channels, e.g. the decoder's 16-channel
    3x3 convolution at 256 x 256 px, it took 88 ms against oneDNN's 6 ms).
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

    Args:
      x: (N, H, W, C) input of the convolution.
      dy: (N, H, W, O) gradient of its output.
      kernel_shape: (kh, kw, C, O).

    Returns:
      (kh, kw, C, O), in ``x``'s dtype.
    """
    kh, kw, cin, cout = (int(d) for d in kernel_shape)
    if (kh, kw) == (1, 1):
        patches = x
    else:
        # TF 'SAME' at stride 1 pads (k - 1) // 2 before and the rest after.
        ph, pw = kh - 1, kw - 1
        padded = tf.pad(x, [[0, 0], [ph // 2, ph - ph // 2], [pw // 2, pw - pw // 2], [0, 0]])
        h, w = tf.shape(x)[1], tf.shape(x)[2]
        # Channel index (i * kw + j) * C + c, which the final reshape splits into (i, j, c).
        patches = tf.concat([padded[:, i:i + h, j:j + w, :]
                             for i in range(kh) for j in range(kw)], axis=-1)
    grad = tf.matmul(tf.reshape(patches, [-1, kh * kw * cin]), tf.reshape(dy, [-1, cout]),
                     transpose_a=True)
    return tf.reshape(grad, [kh, kw, cin, cout])
