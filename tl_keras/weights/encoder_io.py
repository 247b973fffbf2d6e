"""Our own pre-trained encoder format: ``encoder.weights.h5`` + ``encoder.json``.

``encoder.json`` describes how to rebuild the encoder (input channels, latent channels,
image size) and where the weights came from (source task, domain, provenance): the
:class:`~tl_keras.weights.encoder_meta.EncoderMeta` record. It is written last, so a
directory with ``encoder.json`` is complete.
"""
from __future__ import annotations

import contextlib
import datetime
import os

import tl_keras
from tl_common.io import atomic_path
from tl_keras.weights.encoder_meta import (FORMAT, HUB_ARCH, KERAS_JSON_ARCH, META_FILE,
                                           TASKONOMY_ARCH, EncoderMeta, as_weight_load_error,
                                           read_meta_file, write_meta_file)
from tl_keras.weights.load_report import WeightLoadError
from tl_keras.weights.taskonomy import build_parts, head_image_size

WEIGHTS_FILE = "encoder.weights.h5"


@contextlib.contextmanager
def atomic_weights(path: str):
    """Yield a temporary ``*.weights.h5`` path next to ``path``; rename it on success."""
    with atomic_path(path) as tmp:
        os.remove(tmp)
        tmp_h5 = tmp + ".weights.h5"  # Keras insists on the suffix
        try:
            yield tmp_h5
            os.replace(tmp_h5, tmp)
        finally:
            if os.path.exists(tmp_h5):
                os.remove(tmp_h5)


def encoder_config(encoder) -> dict:
    """The arguments that rebuild ``encoder``.

    A Taskonomy ResNet-50 (``build_encoder``) is rebuilt from its sizes, a keras-hub
    encoder from its backbone config and input mapping (:mod:`tl_keras.models.hub`); any
    other Keras encoder (e.g. the small test networks) is stored as its Keras JSON config.
    """
    _, h, w, c = encoder.input_shape
    config = {"image_size": [int(h), int(w)], "input_channels": int(c),
              "latent_channels": int(encoder.output_shape[-1]), "architecture": TASKONOMY_ARCH}
    if "encoder__conv1" not in {layer.name for layer in encoder.layers}:
        from tl_keras.models.hub import hub_encoder_config
        config.update(hub_encoder_config(encoder) or {"architecture": KERAS_JSON_ARCH,
                                                      "keras_config": encoder.to_json()})
    return config


def save_encoder(encoder, out_dir: str, *, source_task: str, domain: str,
                 provenance: dict | None = None, network: str | None = None) -> str:
    """Write ``encoder`` as ``out_dir/encoder.weights.h5`` + ``out_dir/encoder.json``.

    Args:
      encoder: a model from :func:`tl_keras.models.build_encoder`.
      out_dir: created if needed; existing files are replaced atomically.
      source_task: e.g. ``segmentation``, ``autoencoding``, ``classification``,
        ``taskonomy:autoencoder``, ``imagenet``.
      domain: e.g. ``t1`` or ``natural`` (what ``pretrain --domain`` records).
      provenance: free-form JSON-able dict (run dir, checkpoint, load report ...).
      network: the ``tl_keras.models.presets`` name the encoder was built as (recorded
        as ``network``; ``finetune --network auto`` builds it again).

    Returns:
      ``out_dir``.

    Raises:
      WeightLoadError: the record would be invalid (e.g. a non-JSON ``provenance`` type).
    """
    meta = {**encoder_config(encoder), "source_task": source_task, "domain": domain,
            "provenance": provenance or {}, "network": network or None,
            "tl_keras_version": tl_keras.__version__,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    with as_weight_load_error():  # checked before anything is written
        record = EncoderMeta.from_dict({"format": FORMAT, **meta},
                                       os.path.join(out_dir, META_FILE))
    os.makedirs(out_dir, exist_ok=True)
    with atomic_weights(os.path.join(out_dir, WEIGHTS_FILE)) as tmp:
        encoder.save_weights(tmp)
    write_meta_file(out_dir, record)
    return out_dir


def encoder_dir(path: str) -> str:
    """The directory of an encoder given the directory or one of its two files."""
    if os.path.basename(path) in (META_FILE, WEIGHTS_FILE):
        return os.path.dirname(path) or "."
    return path


def is_encoder_dir(path: str) -> bool:
    """True if ``path`` holds (or is a file of) our encoder format."""
    return os.path.isfile(os.path.join(encoder_dir(path), META_FILE))


def read_encoder_meta(path: str) -> EncoderMeta:
    """Read and check ``encoder.json`` of an encoder directory (or one of its files).

    Raises:
      WeightLoadError: missing or invalid metadata (one line naming the file and the
        key), or missing weights file.
    """
    d = encoder_dir(path)
    meta_path = os.path.join(d, META_FILE)
    if not os.path.isfile(meta_path):
        raise WeightLoadError(f"{d}: no {META_FILE}; not a tl_keras encoder directory "
                              "(write one with save_encoder or tl_keras.weights.convert)")
    meta = read_meta_file(meta_path)
    if not os.path.isfile(os.path.join(d, WEIGHTS_FILE)):
        raise WeightLoadError(f"{d}: {WEIGHTS_FILE} is missing next to {META_FILE}")
    return meta


def load_encoder(path: str, name: str = "encoder"):
    """Rebuild the saved encoder and load its weights.

    Args:
      path: an encoder directory (or its ``encoder.json`` / ``encoder.weights.h5``).
      name: model name.

    Returns:
      ``keras.Model``: images in [-1, 1], (N, H, W, C) -> the ``compress1`` representation.
    """
    meta = read_encoder_meta(path)
    if meta.architecture == KERAS_JSON_ARCH:
        import keras
        from tl_keras.models.batchnorm import fused_keras_json
        encoder = keras.models.model_from_json(fused_keras_json(meta.keras_config))
    elif meta.architecture == HUB_ARCH:
        from tl_keras.models.hub import rebuild_hub_encoder
        encoder = rebuild_hub_encoder(meta, name=name)
    else:  # TASKONOMY_ARCH; the record knows no other
        from tl_keras.models import build_encoder
        encoder = build_encoder(meta.image_size, meta.input_channels, meta.latent_channels,
                                name=name)
    weights = os.path.join(encoder_dir(path), WEIGHTS_FILE)
    try:
        encoder.load_weights(weights)
    except Exception as e:
        raise WeightLoadError(f"{weights}: cannot load into the encoder described by "
                              f"{META_FILE}: {str(e).splitlines()[0]}") from e
    return encoder


def load_part(path: str, part: str, *, output_activation: str | None = None):
    """Rebuild and load a part written by ``convert --parts`` next to the encoder.

    Args:
      path: the conversion's output directory.
      part: ``encoder``, ``decoder``, ``discriminator`` or ``head``.
      output_activation: decoder only, ``None`` (logits) or ``"tanh"`` (as Taskonomy).

    Returns:
      ``keras.Model`` with the converted weights.
    """
    if part == "encoder":
        return load_encoder(path)
    meta = read_encoder_meta(path)
    parts = meta.parts
    weights = os.path.join(encoder_dir(path), f"{part}.weights.h5")
    if part not in parts or not os.path.isfile(weights):
        raise WeightLoadError(f"{encoder_dir(path)}: no converted '{part}' (parts: "
                              f"{sorted(parts)}); rerun convert with --parts encoder,{part}")
    layout = {**parts, "encoder": {"input_channels": meta.input_channels,
                                   "latent_channels": meta.latent_channels}}
    size = meta.image_size[0]
    if part == "head":  # fc0's input size fixes the latent grid
        size = head_image_size(layout, size)
    model = build_parts(layout, [part], size, decoder_activation=output_activation)[part]
    model.load_weights(weights)
    return model
