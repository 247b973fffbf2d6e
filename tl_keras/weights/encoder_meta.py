"""``encoder.json``, the description of a saved encoder, as a typed record
(:class:`EncoderMeta`), checked when read and when written (docs/models_weights.md,
"Our format").

Files of earlier versions are read as they are: without ``architecture`` the encoder is a
Taskonomy ResNet-50, without ``network`` none is recorded (:attr:`EncoderMeta.implied_network`
falls back on the architecture), without ``format_version`` it is version 1, and
``provenance``, ``tl_keras_version`` and ``created`` take empty defaults.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os

from tl_common.io import write_json_atomic
from tl_common.records import (RecordError, from_fields, image_size, integer, mapping,
                               optional, read_json_object, real, text)
from tl_keras.weights.load_report import WeightLoadError

META_FILE = "encoder.json"
FORMAT = "tl_keras.encoder"
FORMAT_VERSION = 1
TASKONOMY_ARCH = "taskonomy_resnet50_v1"
KERAS_JSON_ARCH = "keras_json"
HUB_ARCH = "keras_hub"  # tl_keras.models.hub.ARCHITECTURE
#: The keys each architecture needs to be rebuilt (besides the sizes).
ARCH_KEYS = {TASKONOMY_ARCH: (), KERAS_JSON_ARCH: ("keras_config",),
             HUB_ARCH: ("backbone_config", "input_mapping")}


def _format_version(value) -> int:
    version = integer(value)
    if not 1 <= version <= FORMAT_VERSION:
        raise ValueError(f"version {FORMAT_VERSION} or older expected (written by a newer "
                         "tl_keras?)")
    return version


def _positive(value) -> int:
    value = integer(value)
    if value < 1:
        raise ValueError("expected a positive integer")
    return value


def _architecture(value) -> str:
    if text(value) not in ARCH_KEYS:
        raise ValueError(f"unknown architecture; expected one of {sorted(ARCH_KEYS)}")
    return value


def _input_mapping(value) -> tuple[float, float]:
    """``[scale, offset]`` of a keras-hub encoder's input map."""
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ValueError("expected [scale, offset]")
    return tuple(real(v) for v in value)


CHECKERS = {"format": text, "format_version": _format_version,
            "input_channels": _positive, "latent_channels": _positive,
            "image_size": image_size, "source_task": text, "domain": text,
            "architecture": _architecture, "keras_config": optional(text),
            "backbone_config": optional(mapping), "input_mapping": optional(_input_mapping),
            "provenance": mapping, "network": optional(text),
            "tl_keras_version": optional(text), "created": optional(text)}


@dataclasses.dataclass(frozen=True)
class EncoderMeta:
    """What ``encoder.json`` records about a saved encoder.

    Attributes:
      format: always ``tl_keras.encoder``.
      format_version: the version of the format (1).
      input_channels, latent_channels: channels of the input and of the latent.
      image_size: (height, width) the encoder was built for (weights are size-independent).
      source_task: e.g. ``segmentation``, ``taskonomy:autoencoder``, ``imagenet``.
      domain: e.g. ``t1`` or ``natural``.
      architecture: how to rebuild it: ``taskonomy_resnet50_v1`` (from its sizes),
        ``keras_json`` (``keras_config``: the Keras JSON config) or ``keras_hub``
        (``backbone_config``: the serialized backbone, ``input_mapping``: [scale, offset]).
      provenance: free-form (run dir, epoch, logs; the converter: source, parts, load report).
      network: the ``tl_keras.models.presets`` name it was built as, or None.
      tl_keras_version, created: the writing version and UTC time (None in old files).
    """

    input_channels: int
    latent_channels: int
    image_size: tuple[int, int]
    source_task: str
    domain: str
    format: str = FORMAT
    format_version: int = FORMAT_VERSION
    architecture: str = TASKONOMY_ARCH
    keras_config: str | None = None
    backbone_config: dict | None = None
    input_mapping: tuple[float, float] | None = None
    provenance: dict = dataclasses.field(default_factory=dict)
    network: str | None = None
    tl_keras_version: str | None = None
    created: str | None = None

    @property
    def implied_network(self) -> str | None:
        """The network to build for it: the recorded ``network``; in files without one,
        ``taskonomy`` for the Taskonomy architecture, else None."""
        if self.network:
            return self.network
        return "taskonomy" if self.architecture == TASKONOMY_ARCH else None

    @property
    def parts(self) -> dict:
        """Build arguments of the parts a conversion wrote (``provenance.parts``)."""
        return self.provenance.get("parts") or {}

    def to_dict(self) -> dict:
        """The JSON object of ``encoder.json`` (the keys of other architectures and an
        unset ``network`` left out)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["image_size"] = list(self.image_size)
        if self.input_mapping is not None:
            out["input_mapping"] = list(self.input_mapping)
        unused = {"network"} | {k for keys in ARCH_KEYS.values() for k in keys}
        return {k: v for k, v in out.items() if not (k in unused and v is None)}

    @classmethod
    def from_dict(cls, data: dict, where: str = META_FILE) -> "EncoderMeta":
        """Check and convert ``data`` (files of earlier versions: see the module doc).

        Raises:
          RecordError: naming ``where`` and the missing, unknown or bad key.
        """
        found = data.get("format")
        if found != FORMAT:  # checked first: a foreign file is named as such
            raise RecordError(f"{where}: not a {FORMAT} file (format {found!r}, "
                              f"expected {FORMAT!r})")
        meta = from_fields(cls, data, where, CHECKERS)
        for key in ARCH_KEYS[meta.architecture]:
            if getattr(meta, key) is None:
                raise RecordError(f"{where}: missing key '{key}' (architecture "
                                  f"{meta.architecture!r})")
        return meta


@contextlib.contextmanager
def as_weight_load_error():
    """Raise a :class:`RecordError` of the block as the :class:`WeightLoadError` the
    callers of :mod:`tl_keras.weights` expect (the same one-line message)."""
    try:
        yield
    except RecordError as e:
        raise WeightLoadError(str(e)) from None


def read_meta_file(meta_path: str) -> EncoderMeta:
    """The checked record of the ``encoder.json`` at ``meta_path``.

    Raises:
      WeightLoadError: the file is unreadable, not JSON, foreign, or has a missing,
        unknown or bad key (one line naming the file and the key).
    """
    try:
        with as_weight_load_error():
            return EncoderMeta.from_dict(read_json_object(meta_path), meta_path)
    except OSError as e:
        raise WeightLoadError(f"{meta_path}: unreadable encoder metadata: {e}") from e


def write_meta_file(out_dir: str, meta: EncoderMeta) -> None:
    """Write ``out_dir/encoder.json`` atomically."""
    write_json_atomic(os.path.join(out_dir, META_FILE), meta.to_dict())


__all__ = ["EncoderMeta", "META_FILE", "FORMAT", "FORMAT_VERSION", "as_weight_load_error",
           "read_meta_file", "write_meta_file"]
