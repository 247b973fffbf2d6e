"""Image corruptions and views of the self-supervised source tasks, as batched TF ops.

Every function takes a batch of model inputs in [-1, 1], shape (B, H, W, C), and a
stateless seed (an int tensor of shape [2]) and returns a result that depends only on
the two: the training steps seed them with the run's seed and the optimizer's step
count (:mod:`tl_keras.training.ssl_steps`), so a resumed run draws exactly the
corruptions of an uninterrupted one. Every random choice is made per image; the
channels of a pixel share it (a grey slice repeated into 3 channels stays grey).

- :func:`genesis_corrupt`: the Models Genesis transformations (Zhou et al. 2019/2021),
  restoration task: local pixel shuffling, a non-linear intensity curve, in- or
  out-painting, in that order and with that code's probabilities (docs/sources.md).
- :func:`mask_patches`: random square patches masked at a fixed ratio (SimMIM / MAE),
  masked-modelling task.
- :func:`simsiam_view`: a SimSiam view (random resized crop, flip, brightness /
  contrast, blur), SimSiam task.
"""
from __future__ import annotations

import math

import tensorflow as tf

# Models Genesis probabilities (its configuration: local_rate, nonlinear_rate,
# paint_rate, outpaint_rate) and in-/out-painting box counts (one box, then more
# while a draw stays below 0.95, at most 5 in-painted / 1 + 4 kept).
SHUFFLE_PROB = 0.5
NONLINEAR_PROB = 0.9
PAINT_PROB = 0.9
OUTPAINT_RATE = 0.8
MORE_BOXES_PROB = 0.95
INPAINT_BOXES = 5
OUTPAINT_BOXES = 5
#: Models Genesis shuffles windows up to a tenth of the image side.
WINDOW_FRACTION = 10
#: Share of the shuffling grid's cells that are shuffled: Models Genesis' 10000 random
#: windows (sides 1..1/10 of the cube's) cover about 85 % of its 64x64x32 cubes.
SHUFFLED_CELLS = 0.85
#: Points on which the Bezier intensity curve is sampled (then linearly interpolated).
CURVE_POINTS = 1024


def _seed(seed, k: int) -> tf.Tensor:
    """The ``k``-th independent seed derived from ``seed``."""
    return tf.random.experimental.stateless_fold_in(tf.cast(seed, tf.int64), k)


def _uniform(seed, k: int, shape, minval=0.0, maxval=1.0) -> tf.Tensor:
    return tf.random.stateless_uniform(shape, _seed(seed, k), minval, maxval)


def _randint(u: tf.Tensor, low, high) -> tf.Tensor:
    """Integers uniform in [low, high] (inclusive, per element) from uniforms ``u``."""
    low, high = tf.cast(low, tf.float32), tf.cast(high, tf.float32)
    return tf.cast(tf.floor(low + u * (high - low + 1.0)), tf.int32)


def _per_image(flag: tf.Tensor) -> tf.Tensor:
    """(B,) booleans -> (B, 1, 1, 1), to choose between whole images."""
    return tf.reshape(flag, [-1, 1, 1, 1])


def bezier_intensity(x01: tf.Tensor, seed) -> tf.Tensor:
    """Map intensities through a random monotone cubic Bezier curve (per image).

    The curve runs from (0, 0) to (1, 1) with two control points uniform in the unit
    square; its x and y samples are each sorted, which makes the mapping monotone,
    and half of the curves are flipped (decreasing: an inverted contrast), as in
    Models Genesis' non-linear transformation.

    Args:
      x01: (B, H, W, C) in [0, 1].
      seed: stateless seed, shape [2].

    Returns:
      (B, H, W, C) in [0, 1].
    """
    b = tf.shape(x01)[0]
    control = _uniform(seed, 0, [b, 2, 2])                        # (B, point, xy)
    t = tf.linspace(0.0, 1.0, CURVE_POINTS)[None, :, None]        # (1, T, 1)
    p1, p2 = control[:, None, 0], control[:, None, 1]             # (B, 1, 2)
    curve = 3 * (1 - t) ** 2 * t * p1 + 3 * (1 - t) * t ** 2 * p2 + t ** 3
    xs, ys = tf.sort(curve[..., 0], axis=-1), tf.sort(curve[..., 1], axis=-1)
    flip = _uniform(seed, 1, [b]) < 0.5
    ys = tf.where(flip[:, None], tf.reverse(ys, [-1]), ys)
    # The curve tabulated on CURVE_POINTS even steps of [0, 1], then read per pixel by
    # linear interpolation: a gather per pixel instead of a search of the curve.
    grid = tf.broadcast_to(tf.linspace(0.0, 1.0, CURVE_POINTS)[None], tf.shape(xs))
    table = _interpolate(xs, ys, grid)
    pos = tf.clip_by_value(tf.reshape(x01, [b, -1]), 0.0, 1.0) * (CURVE_POINTS - 1)
    low = tf.minimum(tf.cast(tf.floor(pos), tf.int32), CURVE_POINTS - 2)
    w = pos - tf.cast(low, tf.float32)
    y = (tf.gather(table, low, batch_dims=1) * (1.0 - w)
         + tf.gather(table, low + 1, batch_dims=1) * w)
    return tf.reshape(y, tf.shape(x01))


def _interpolate(xs: tf.Tensor, ys: tf.Tensor, values: tf.Tensor) -> tf.Tensor:
    """Per row, the piecewise-linear function through (xs, ys) (xs sorted) at ``values``."""
    n = xs.shape[-1]
    right = tf.clip_by_value(tf.searchsorted(xs, values, side="right"), 1, n - 1)
    x0, x1 = tf.gather(xs, right - 1, batch_dims=1), tf.gather(xs, right, batch_dims=1)
    y0, y1 = tf.gather(ys, right - 1, batch_dims=1), tf.gather(ys, right, batch_dims=1)
    w = tf.clip_by_value(tf.math.divide_no_nan(values - x0, x1 - x0), 0.0, 1.0)
    return y0 + w * (y1 - y0)


def local_shuffle(x: tf.Tensor, seed, shuffled_cells: float = SHUFFLED_CELLS) -> tf.Tensor:
    """Shuffle the pixels inside small windows (Models Genesis' local pixel shuffling).

    Models Genesis shuffles 10000 windows of random sides (1 to a tenth of the image
    side) at random places, one after the other. Here, vectorised: each image gets a
    grid of cells of one random size (each side 1 to a tenth of the image side) at a
    random offset, and a share ``shuffled_cells`` of its cells have their pixels
    permuted; the pixels of a cell stay in it, so the global structure survives and
    only the local texture must be restored.

    Args:
      x: (B, H, W, C) (any range: pixels are moved, not changed).
      seed: stateless seed, shape [2].
      shuffled_cells: probability that a cell is shuffled.

    Returns:
      (B, H, W, C), a permutation of each image's pixels.
    """
    shape = tf.shape(x)
    b, h, w = shape[0], shape[1], shape[2]
    sides = _randint(_uniform(seed, 0, [b, 2]), 1,
                     tf.maximum(tf.stack([h, w]) // WINDOW_FRACTION, 1))   # (B, 2)
    offsets = _randint(_uniform(seed, 1, [b, 2]), 0, sides - 1)
    rows = (tf.range(h)[None, :] + offsets[:, :1]) // sides[:, :1]        # (B, H)
    cols = (tf.range(w)[None, :] + offsets[:, 1:]) // sides[:, 1:]        # (B, W)
    cell = tf.cast(rows[:, :, None] * (w + 1) + cols[:, None, :], tf.int64)  # (B, H, W)
    cell = tf.reshape(cell, [b, -1])
    n = tf.shape(cell)[1]
    index = tf.broadcast_to(tf.range(n, dtype=tf.int64)[None], tf.shape(cell))
    # Sorting by (cell, index) lists each cell's pixels in place order; by (cell, random
    # key) in a random order. Pixel k of the first order takes the value of pixel k of
    # the second: the same cell, a random position in it (untouched cells keep index).
    shuffled = tf.gather(_uniform(seed, 2, [b, (h + 1) * (w + 1)]) < shuffled_cells,
                         cell, batch_dims=1)
    key = tf.where(shuffled, tf.cast(_uniform(seed, 3, [b, n]) * 2.0 ** 30, tf.int64), index)
    span = tf.constant(2 ** 31, tf.int64)
    in_place = tf.argsort(cell * span + index, axis=1, stable=True)
    permuted = tf.argsort(cell * span + key, axis=1, stable=True)
    source = tf.gather(permuted, tf.argsort(in_place, axis=1), batch_dims=1)
    flat = tf.reshape(x, [b, n, -1])
    return tf.reshape(tf.gather(flat, source, batch_dims=1), shape)


def _box_masks(seed, k: int, b, size, count: int, low, high, margin: int = 3) -> tf.Tensor:
    """(B, count, H, W) booleans: boxes of sides in [low, high] px at random places
    ``margin`` px from the border (Models Genesis' painting boxes); ``size`` = (H, W)."""
    u = _uniform(seed, k, [b, count, 4])
    sides = _randint(u[..., :2], low, high)                                   # (B, n, 2)
    starts = _randint(u[..., 2:], margin, size[None, None] - sides - margin)
    ys = tf.range(size[0])[None, None, :]
    xs = tf.range(size[1])[None, None, :]
    in_rows = (ys >= starts[..., :1]) & (ys < starts[..., :1] + sides[..., :1])
    in_cols = (xs >= starts[..., 1:]) & (xs < starts[..., 1:] + sides[..., 1:])
    return in_rows[..., :, None] & in_cols[..., None, :]


def _chain(seed, k: int, b, count: int) -> tf.Tensor:
    """(B, count) booleans: the first box always, each next one while draws < 0.95."""
    more = _uniform(seed, k, [b, count - 1]) < MORE_BOXES_PROB
    ones = tf.ones([b, 1], tf.float32)
    return tf.math.cumprod(tf.concat([ones, tf.cast(more, tf.float32)], 1), axis=1) > 0


def paint(x01: tf.Tensor, seed) -> tf.Tensor:
    """In-painting or out-painting (Models Genesis), on ``PAINT_PROB`` of the images.

    In-painting (a fifth of the painted images): up to five boxes, sides 1/6 to 1/3
    of the image's, replaced by uniform noise. Out-painting (the rest): the image
    replaced by noise except up to five boxes, sides 3/7 to 4/7 of the image's.

    Args:
      x01: (B, H, W, C) in [0, 1].
      seed: stateless seed, shape [2].

    Returns:
      (B, H, W, C) in [0, 1].
    """
    shape = tf.shape(x01)
    b, size = shape[0], shape[1:3]
    noise = _uniform(seed, 0, tf.concat([shape[:3], [1]], 0))   # grey noise, all channels
    inner = _box_masks(seed, 1, b, size, INPAINT_BOXES, size // 6, size // 3)
    inner = tf.reduce_any(inner & _chain(seed, 2, b, INPAINT_BOXES)[..., None, None], 1)
    kept = _box_masks(seed, 3, b, size, OUTPAINT_BOXES, size - 4 * size // 7,
                      size - 3 * size // 7)
    kept = tf.reduce_any(kept & _chain(seed, 4, b, OUTPAINT_BOXES)[..., None, None], 1)
    draw = _uniform(seed, 5, [b, 2])
    painted, outer = draw[:, 0] < PAINT_PROB, draw[:, 1] < OUTPAINT_RATE
    noisy = tf.where(outer[:, None, None], ~kept, inner) & painted[:, None, None]
    return tf.where(noisy[..., None], noise, x01)


def genesis_corrupt(x: tf.Tensor, seed) -> tf.Tensor:
    """The restoration task's input: Models Genesis' transformations of ``x``.

    Local pixel shuffling (probability 0.5), then the Bezier intensity curve (0.9),
    then in- or out-painting (0.9), each drawn per image.

    Args:
      x: (B, H, W, C) model inputs in [-1, 1].
      seed: stateless seed, shape [2].

    Returns:
      (B, H, W, C) in [-1, 1], ``x.dtype``.
    """
    x01 = (tf.cast(x, tf.float32) + 1.0) / 2.0
    b = tf.shape(x)[0]
    draw = _uniform(seed, 0, [b, 2])
    y = tf.where(_per_image(draw[:, 0] < SHUFFLE_PROB), local_shuffle(x01, _seed(seed, 1)), x01)
    y = tf.where(_per_image(draw[:, 1] < NONLINEAR_PROB), bezier_intensity(y, _seed(seed, 2)), y)
    y = paint(y, _seed(seed, 3))
    return tf.cast(y * 2.0 - 1.0, x.dtype)


def mask_patches(x: tf.Tensor, seed, patch: int, ratio: float) -> tuple[tf.Tensor, tf.Tensor]:
    """Mask ``round(ratio * patches)`` random ``patch`` x ``patch`` squares of every image.

    As SimMIM and MAE, every image loses exactly the same number of patches (a random
    choice of which). Masked pixels are set to 0, the middle of the [-1, 1] range
    (a convolutional encoder has no mask token to put there).

    Args:
      x: (B, H, W, C) in [-1, 1]; H and W multiples of ``patch``.
      seed: stateless seed, shape [2].
      patch: patch side in px.
      ratio: share of the patches masked, in (0, 1).

    Returns:
      ``(masked x, mask)``, the mask (B, H, W, 1) float32, 1 on masked pixels.
    """
    shape = tf.shape(x)
    b, gh, gw = shape[0], shape[1] // patch, shape[2] // patch
    n = gh * gw
    count = tf.cast(tf.round(ratio * tf.cast(n, tf.float32)), tf.int32)
    rank = tf.argsort(tf.argsort(_uniform(seed, 0, [b, n]), axis=1), axis=1)
    grid = tf.reshape(tf.cast(rank < count, tf.float32), [b, gh, 1, gw, 1, 1])
    mask = tf.reshape(tf.tile(grid, [1, 1, patch, 1, patch, 1]), [b, shape[1], shape[2], 1])
    return x * tf.cast(1.0 - mask, x.dtype), mask


# SimSiam's augmentation (its ImageNet recipe, kept where it applies to grey scans):
# crops of 20-100 % of the area with aspect ratios 3/4-4/3, brightness and contrast
# jitter of 0.4 with probability 0.8 (no saturation / hue: the scans are grey), Gaussian
# blur with sigma 0.1-2 px at 224 px (scaled to the image size) with probability 0.5,
# horizontal flips with probability 0.5.
CROP_SCALE = (0.2, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)
JITTER = 0.4
JITTER_PROB = 0.8
BLUR_SIGMA = (0.1, 2.0)
BLUR_REFERENCE_SIZE = 224
BLUR_PROB = 0.5


def _crop_boxes(seed, b) -> tf.Tensor:
    """(B, 4) normalised crop boxes (y1, x1, y2, x2), x swapped for a flip."""
    u = _uniform(seed, 0, [b, 5])
    area = CROP_SCALE[0] + u[:, 0] * (CROP_SCALE[1] - CROP_SCALE[0])
    log_ratio = math.log(CROP_RATIO[0]) + u[:, 1] * math.log(CROP_RATIO[1] / CROP_RATIO[0])
    ratio = tf.exp(log_ratio)                                 # width / height
    height = tf.minimum(tf.sqrt(area / ratio), 1.0)
    width = tf.minimum(tf.sqrt(area * ratio), 1.0)
    top, left = u[:, 2] * (1.0 - height), u[:, 3] * (1.0 - width)
    flip = u[:, 4] < 0.5
    x1 = tf.where(flip, left + width, left)
    x2 = tf.where(flip, left, left + width)
    return tf.stack([top, x1, top + height, x2], axis=1)


def _gaussian_rows(sigma: tf.Tensor, n) -> tf.Tensor:
    """(B, n, n) row-normalised Gaussian smoothing matrices, one sigma (px) per image.

    Normalising each row keeps the image's brightness at the borders (as a reflected
    padding would), where a zero-padded convolution would darken them."""
    pos = tf.cast(tf.range(n), tf.float32)
    dist = pos[None, :, None] - pos[None, None, :]
    weights = tf.exp(-0.5 * tf.square(dist / sigma[:, None, None]))
    return weights / tf.reduce_sum(weights, axis=2, keepdims=True)


def simsiam_view(x: tf.Tensor, seed) -> tf.Tensor:
    """One SimSiam view of each image (the constants above).

    Args:
      x: (B, H, W, C) model inputs in [-1, 1].
      seed: stateless seed, shape [2] (two views: two seeds).

    Returns:
      (B, H, W, C) in [-1, 1], ``x.dtype``.
    """
    shape = tf.shape(x)
    b, h, w = shape[0], shape[1], shape[2]
    x01 = (tf.cast(x, tf.float32) + 1.0) / 2.0
    y = tf.image.crop_and_resize(x01, _crop_boxes(_seed(seed, 0), b), tf.range(b), [h, w])
    u = _uniform(seed, 1, [b, 5])
    brightness = 1.0 + JITTER * (2.0 * u[:, 0] - 1.0)
    contrast = 1.0 + JITTER * (2.0 * u[:, 1] - 1.0)
    jittered = tf.clip_by_value(y * _per_image(brightness), 0.0, 1.0)
    mean = tf.reduce_mean(jittered, axis=[1, 2, 3], keepdims=True)
    jittered = tf.clip_by_value((jittered - mean) * _per_image(contrast) + mean, 0.0, 1.0)
    y = tf.where(_per_image(u[:, 2] < JITTER_PROB), jittered, y)
    scale = tf.cast(h, tf.float32) / BLUR_REFERENCE_SIZE
    sigma = (BLUR_SIGMA[0] + u[:, 3] * (BLUR_SIGMA[1] - BLUR_SIGMA[0])) * scale
    blurred = tf.einsum("bij,bjkc,blk->bilc", _gaussian_rows(sigma, h), y,
                        _gaussian_rows(sigma, w))
    y = tf.where(_per_image(u[:, 4] < BLUR_PROB), blurred, y)
    return tf.cast(y * 2.0 - 1.0, x.dtype)
