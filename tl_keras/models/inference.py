"""From a segmentation model's logits to labels and probabilities, batch by batch.

The one place that knows the output convention of an exported model (``export.py``):
K >= 2 logits per pixel are softmax logits (label = argmax); a single logit is a
sigmoid logit of the foreground (label 1 where it is > 0, i.e. probability > 0.5).
Used by ``tl_keras.evaluate`` (and so by the sweep) and ``tl_keras.predict``.
"""
from __future__ import annotations

import numpy as np


def labels_from_logits(logits) -> np.ndarray:
    """(..., K) logits -> (...) uint8 labels: argmax, or ``logit > 0`` when K = 1."""
    logits = np.asarray(logits, np.float32)
    if logits.shape[-1] == 1:
        return (logits[..., 0] > 0).astype(np.uint8)
    return logits.argmax(axis=-1).astype(np.uint8)


def probabilities_from_logits(logits) -> np.ndarray:
    """(..., K) logits -> (..., max(K, 2)) float32 class probabilities (softmax; a single
    sigmoid logit becomes the two classes (1 - p, p))."""
    logits = np.asarray(logits, np.float32)
    if logits.shape[-1] == 1:
        p = 1.0 / (1.0 + np.exp(-logits))
        return np.concatenate([1.0 - p, p], axis=-1).astype(np.float32)
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))  # shifted: no overflow
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def predict_logits(model, images) -> np.ndarray:
    """Logits of one batch of model-ready images ([-1, 1], the model's channels)."""
    # predict_on_batch runs a traced (graph) forward pass: ~3x faster than an eager
    # call for the ResNet-50 encoder on CPU.
    return np.asarray(model.predict_on_batch(images), np.float32)


def predict_batches(model, batches, input_channels: int, *, image_key: str | None = "image",
                    probabilities: bool = False):
    """Predict every batch of ``batches``.

    Args:
      model: Keras model, [-1, 1] images -> logits.
      batches: iterable of batches: dicts with ``image_key`` (a ``task="raw"``
        dataset of ``tl_keras.data.dataset.build_dataset``), or, with
        ``image_key=None``, image tensors; images in [0, 1].
      input_channels: the model's input channels (``to_model_input``).
      probabilities: yield class probabilities instead of labels.

    Yields:
      ``(batch, output)``: (B, H, W) uint8 labels, or (B, H, W, K) probabilities.
    """
    from tl_keras.data.dataset import to_model_input
    convert = probabilities_from_logits if probabilities else labels_from_logits
    for batch in batches:
        images = batch if image_key is None else batch[image_key]
        yield batch, convert(predict_logits(model, to_model_input(images, input_channels)))
