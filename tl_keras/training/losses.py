"""Per-example losses of the source and target tasks (docs/method.md sections 4 and 6).

Every function returns one loss value per example (shape ``(B,)``) computed in
float32, so that the training step can scale it for the global batch with
``tf.nn.compute_average_loss`` under any ``tf.distribute`` strategy and any
mixed-precision policy.
"""
from __future__ import annotations

import tensorflow as tf

REAL_LABEL = 0.9   # Taskonomy's one-sided label smoothing for the discriminator
FAKE_LABEL = 0.0
L1_WEIGHT = 0.996  # l_norm_weight_prop: generator = 0.996 * L1 + 0.004 * GAN


def _per_example_mean(values: tf.Tensor) -> tf.Tensor:
    """Mean over every axis but the first."""
    return tf.reduce_mean(tf.reshape(values, [tf.shape(values)[0], -1]), axis=1)


def weighted_cross_entropy(labels, logits, class_weights=None) -> tf.Tensor:
    """Voxel-wise (class-)weighted softmax cross-entropy.

    Each pixel's cross-entropy is multiplied by the weight of its true class and
    the result is averaged over the pixels of the slice (as Keras does with a
    ``sample_weight``), so with all weights 1 it is the plain mean cross-entropy.

    Args:
      labels: (B, H, W) integer class ids.
      logits: (B, H, W, K) unnormalised scores.
      class_weights: None or a length-K vector.

    Returns:
      (B,) float32 losses.
    """
    logits = tf.cast(logits, tf.float32)
    labels = tf.cast(labels, tf.int32)
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    if class_weights is not None:
        ce = ce * tf.gather(tf.constant(class_weights, tf.float32), labels)
    return _per_example_mean(ce)


def soft_dice_loss(labels, logits, smooth: float = 1.0) -> tf.Tensor:
    """1 - soft Dice of the softmax probabilities over the batch, mean over foreground classes.

    For each class c >= 1, over every pixel of the (per-replica) batch:
    ``(2 sum p g + s) / (sum p + sum g + s)``. Pooling the batch rather than scoring each
    slice keeps the many lesion-free slices from pulling every prediction towards
    "nothing" (measured in docs/decoders.md); the smoothing ``s`` (1 pixel) makes a batch
    without class c score 1 only when almost no pixel is predicted as c.

    Args:
      labels: (B, H, W) integer class ids (class 0 = background).
      logits: (B, H, W, K) with K >= 2.
      smooth: additive smoothing, in pixels.

    Returns:
      (B,) float32: the batch's loss, in [0, 1], repeated for every example (so that the
      global-batch average of ``tf.nn.compute_average_loss`` is the mean over replicas).
    """
    logits = tf.cast(logits, tf.float32)
    k = logits.shape[-1]
    probs = tf.nn.softmax(logits)[..., 1:]
    truth = tf.one_hot(tf.cast(labels, tf.int32), k, dtype=tf.float32)[..., 1:]
    axes = [0, 1, 2]
    overlap = tf.reduce_sum(probs * truth, axes)
    total = tf.reduce_sum(probs, axes) + tf.reduce_sum(truth, axes)
    dice = tf.reduce_mean((2.0 * overlap + smooth) / (total + smooth))
    return tf.fill([tf.shape(logits)[0]], 1.0 - dice)


def segmentation_loss(labels, logits, class_weights=None, dice: bool = False) -> tf.Tensor:
    """Weighted cross-entropy, plus the soft Dice loss when ``dice`` (per example, (B,))."""
    loss = weighted_cross_entropy(labels, logits, class_weights)
    if dice:
        loss = loss + soft_dice_loss(labels, logits)
    return loss


def multilabel_cross_entropy(labels, logits, softmax: bool = False) -> tf.Tensor:
    """Class-wise binary cross-entropy on sigmoid outputs (multi-label presence).

    Args:
      labels: (B, P) presence in {0, 1} (or soft targets in [0, 1]).
      logits: (B, P).
      softmax: use softmax cross-entropy against the normalised presence vector
        instead (the paper's text says softmax; kept as an option). Slices with no
        label present contribute 0.

    Returns:
      (B,) float32 losses (mean over classes for the sigmoid form).
    """
    logits = tf.cast(logits, tf.float32)
    labels = tf.cast(labels, tf.float32)
    if softmax:
        total = tf.reduce_sum(labels, axis=-1, keepdims=True)
        target = tf.math.divide_no_nan(labels, total)
        ce = tf.nn.softmax_cross_entropy_with_logits(labels=target, logits=logits)
        return ce * tf.cast(total[:, 0] > 0, tf.float32)
    ce = tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits)
    return _per_example_mean(ce)


def l1_loss(target, prediction) -> tf.Tensor:
    """Mean absolute error per example, (B,)."""
    diff = tf.abs(tf.cast(target, tf.float32) - tf.cast(prediction, tf.float32))
    return _per_example_mean(diff)


def _sigmoid_ce_to(logits, label: float) -> tf.Tensor:
    logits = tf.cast(logits, tf.float32)
    ce = tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.fill(tf.shape(logits), label),
                                                 logits=logits)
    return _per_example_mean(ce)


def discriminator_loss(real_logits, fake_logits, real_label: float = REAL_LABEL,
                       fake_label: float = FAKE_LABEL) -> dict[str, tf.Tensor]:
    """Discriminator loss parts, averaged over the patch logits (Taskonomy get_gan_loss).

    Returns:
      dict with per-example ``real``, ``fake`` and ``total`` = real/2 + fake/2.
    """
    real = _sigmoid_ce_to(real_logits, real_label)
    fake = _sigmoid_ce_to(fake_logits, fake_label)
    return {"real": real, "fake": fake, "total": 0.5 * real + 0.5 * fake}


def generator_loss(target, reconstruction, fake_logits, l1_weight: float = L1_WEIGHT,
                   fake_label: float = FAKE_LABEL) -> dict[str, tf.Tensor]:
    """Generator loss parts: ``l1``, ``adversarial`` (target 1 - fake_label) and
    ``total`` = l1_weight * l1 + (1 - l1_weight) * adversarial, all per example."""
    l1 = l1_loss(target, reconstruction)
    adversarial = _sigmoid_ce_to(fake_logits, 1.0 - fake_label)
    return {"l1": l1, "adversarial": adversarial,
            "total": l1_weight * l1 + (1.0 - l1_weight) * adversarial}


def mse_loss(target, prediction) -> tf.Tensor:
    """Mean squared error per example, (B,)."""
    diff = tf.cast(target, tf.float32) - tf.cast(prediction, tf.float32)
    return _per_example_mean(tf.square(diff))


def masked_l1_loss(target_and_mask, prediction) -> tf.Tensor:
    """Mean absolute error over the masked pixels only, per example, (B,).

    Args:
      target_and_mask: (B, H, W, C + 1): the target image and, last, the mask (1 on
        the pixels scored).
      prediction: (B, H, W, C).

    Returns:
      (B,) float32; 0 for an image without masked pixels.
    """
    packed = tf.cast(target_and_mask, tf.float32)
    target, mask = packed[..., :-1], packed[..., -1:]
    diff = tf.abs(target - tf.cast(prediction, tf.float32)) * mask
    channels = tf.cast(tf.shape(target)[-1], tf.float32)
    scored = tf.reduce_sum(tf.reshape(mask, [tf.shape(mask)[0], -1]), axis=1) * channels
    return tf.math.divide_no_nan(tf.reduce_sum(tf.reshape(diff, [tf.shape(diff)[0], -1]), 1),
                                 scored)


def negative_cosine(p, z) -> tf.Tensor:
    """SimSiam's D(p, z) = -cos(p, stop_gradient(z)) per example, (B,): no gradient
    reaches ``z`` (the target branch)."""
    p = tf.math.l2_normalize(tf.cast(p, tf.float32), axis=1)
    z = tf.math.l2_normalize(tf.stop_gradient(tf.cast(z, tf.float32)), axis=1)
    return -tf.reduce_sum(p * z, axis=1)


def simsiam_loss(p1, p2, z1, z2) -> tf.Tensor:
    """The symmetric SimSiam loss D(p1, z2) / 2 + D(p2, z1) / 2 per example, in [-1, 1]."""
    return 0.5 * negative_cosine(p1, z2) + 0.5 * negative_cosine(p2, z1)
