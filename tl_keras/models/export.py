"""The exported fine-tuned segmentation model: the contract between training,
evaluation and prediction.

Layout of ``<model_dir>/export/``:
  - ``segmentation.keras``: full Keras model, images in [-1, 1] (N, H, W, C) -> logits (N, H, W, K).
  - ``model.json``: the :class:`ExportMeta` record (fields in docs/evaluation.md,
    "Run records").
"""
from __future__ import annotations

import dataclasses
import os
import zipfile

from tl_common.cli import MissingFileError
from tl_common.io import atomic_path, write_json_atomic
from tl_keras.models.hub_preset import require_keras_hub
from tl_common.records import (RecordError, boolean, from_fields, image_size, integer, names,
                               optional, read_json_object, real, text)
from tfrecords_tools.dataset_meta import DatasetMeta

EXPORT_DIR = "export"
MODEL_FILE = "segmentation.keras"
META_FILE = "model.json"
#: Checkers of the fine-tuning mode fields (``freeze_encoder`` ...), in this record and in
#: ``result.json`` (:class:`tl_keras.training.results.FinetuneResult`).
MODE_CHECKERS = {"freeze_encoder": boolean, "freeze_epochs": integer,
                 "encoder_lr_multiplier": real, "init_decoder": boolean}


def _subject_count(value) -> int:
    # Earlier exports could record the subject list itself; its length is the set size.
    return len(value) if isinstance(value, (list, tuple)) else integer(value)


def _dataset_meta(where: str):
    """Checker of ``dataset_meta``: the embedded ``dataset.json`` as its record (None or
    an empty object, as files of earlier versions wrote, mean none recorded)."""
    return lambda value: DatasetMeta.from_dict(value, f"{where}: key 'dataset_meta'") \
        if value else None


@dataclasses.dataclass(frozen=True, kw_only=True)
class FinetuneRecordFields:
    """The fields ``export/model.json`` (:class:`ExportMeta`) and ``result.json``
    (:class:`tl_keras.training.results.FinetuneResult`) both record: the encoder's source
    and the fine-tuning mode (keyword-only, so each record keeps its own required fields
    first).

    Attributes:
      source_task, source_domain, source_label: the encoder's source
        (``tl_keras.weights.InitSpec.source`` / ``label``); None for scratch;
        ``source_label`` is the report's row name.
      freeze_encoder, freeze_epochs, encoder_lr_multiplier, init_decoder: the fine-tuning
        mode (docs/training.md, "Freezing the encoder"); the defaults are the paper's.
    """

    source_task: str | None = None
    source_domain: str | None = None
    source_label: str | None = None
    freeze_encoder: bool = False
    freeze_epochs: int = 0
    encoder_lr_multiplier: float = 1.0
    init_decoder: bool = False


@dataclasses.dataclass(frozen=True)
class ExportMeta(FinetuneRecordFields):
    """What ``export/model.json`` records about a fine-tuned model.

    Attributes (besides the source and mode fields of :class:`FinetuneRecordFields`):
      image_size: (height, width) of the model's input slices.
      input_channels: channels of the model's input.
      num_classes: logits per pixel (mask classes, background included).
      class_names: name of each class (may be empty).
      target: target task name (``--target``).
      init_from: the ``--init_from`` spec (``init`` in files of earlier versions).
      train_subjects: number of fine-tuning subjects.
      subset_seed: seed of the subject subset (the sweep's repeat).
      seed: the run's seed.
      slice_context: the model takes 2.5-D input, [previous, slice, next]
        (``--slice_context``); evaluation and prediction stack the same.
      data_dir: absolute path of the training data set.
      dataset_meta: the training data set's ``dataset.json`` record (with its
        ``preprocessing`` parameters, used by ``tl_keras.predict``); None when not
        recorded (an empty object in files of earlier versions).
    """

    image_size: tuple[int, int]
    input_channels: int
    num_classes: int
    class_names: tuple[str, ...] = ()
    target: str | None = None
    init_from: str | None = None
    train_subjects: int | None = None
    subset_seed: int | None = None
    seed: int | None = None
    slice_context: bool = False
    data_dir: str | None = None
    dataset_meta: DatasetMeta | None = None

    def to_dict(self) -> dict:
        """The JSON object of ``model.json``."""
        out = dataclasses.asdict(self)
        out["image_size"], out["class_names"] = list(self.image_size), list(self.class_names)
        out["dataset_meta"] = self.dataset_meta.to_dict() if self.dataset_meta else None
        return out

    @classmethod
    def from_dict(cls, data: dict, where: str = META_FILE) -> "ExportMeta":
        """Check and convert ``data`` (``init`` of earlier versions is read as ``init_from``).

        Raises:
          RecordError: naming ``where`` and the missing or bad key.
        """
        opt_text, opt_int = optional(text), optional(integer)
        checkers = {"image_size": image_size, "input_channels": integer,
                    "num_classes": integer, "class_names": optional(names),
                    "target": opt_text, "source_task": opt_text, "source_domain": opt_text,
                    "source_label": opt_text, "init_from": opt_text,
                    "train_subjects": optional(_subject_count), "subset_seed": opt_int,
                    "seed": opt_int, "data_dir": opt_text, "slice_context": boolean,
                    "dataset_meta": _dataset_meta(where),
                    **MODE_CHECKERS}
        meta = from_fields(cls, data, where, checkers, renamed={"init": "init_from"})
        # JSON null for the optional collections means "none recorded".
        return dataclasses.replace(meta, class_names=meta.class_names or ())


def save_exported(model, model_dir: str, meta: ExportMeta | dict) -> str:
    """Save ``model`` and ``meta`` under ``model_dir/export`` (atomically).

    Args:
      model: the Keras model.
      model_dir: the run directory.
      meta: the record, or a dict checked by :meth:`ExportMeta.from_dict`.

    Raises:
      RecordError: ``meta`` is missing a required key or has a bad value.
    """
    if not isinstance(meta, ExportMeta):
        meta = ExportMeta.from_dict(meta, "export metadata")
    out = os.path.join(model_dir, EXPORT_DIR)
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, MODEL_FILE)
    with atomic_path(path) as tmp:
        os.remove(tmp)
        tmp_keras = tmp + ".keras"  # Keras insists on the suffix
        model.save(tmp_keras)
        os.replace(tmp_keras, tmp)
    write_json_atomic(os.path.join(out, META_FILE), meta.to_dict())
    return out


def read_exported_meta(model_dir: str) -> ExportMeta:
    """The :class:`ExportMeta` of a fine-tuned run directory.

    Raises:
      FileNotFoundError: ``model_dir`` holds no export.
      RecordError: ``model.json`` is damaged or has a missing or bad key.
    """
    path = os.path.join(model_dir, EXPORT_DIR, META_FILE)
    if not os.path.exists(path):
        raise MissingFileError(
            f"{path}: no exported model; is {model_dir} a finished tl_keras.finetune run?")
    return ExportMeta.from_dict(read_json_object(path), path)


def load_exported(model_dir: str):
    """Return ``(keras.Model, ExportMeta)`` of a fine-tuned run directory."""
    import keras
    import tl_keras.models.batchnorm  # noqa: F401  registers FusedBatchNorm for load_model
    meta = read_exported_meta(model_dir)
    path = os.path.join(model_dir, EXPORT_DIR, MODEL_FILE)
    if not os.path.exists(path):
        raise MissingFileError(f"{path}: exported model file missing")
    if _uses_keras_hub(path):  # its classes register on import
        require_keras_hub(path)
        import keras_hub  # noqa: F401
    model = keras.models.load_model(path, compile=False)
    _check_agrees(model, meta, path)
    return model, meta


def _check_agrees(model, meta: ExportMeta, path: str) -> None:
    """RecordError when ``model.json`` describes another network than the model file
    (input size, channels, classes), instead of Keras' shape error at the first batch."""
    want = (*meta.image_size, meta.input_channels, meta.num_classes)
    got = (*tuple(model.input_shape)[1:4], tuple(model.output_shape)[-1])
    if None in got or got == want:
        return
    names = ("height", "width", "input channels", "classes")
    diff = "; ".join(f"{n} {w} in {META_FILE}, {g} in the model" for n, w, g in
                     zip(names, want, got) if w != g)
    raise RecordError(f"{os.path.join(os.path.dirname(path), META_FILE)} does not describe "
                      f"{path} ({diff}); export the run again")


def _uses_keras_hub(path: str) -> bool:
    """Whether the ``.keras`` file holds a keras-hub layer (a backbone encoder)."""
    with zipfile.ZipFile(path) as z:
        return b'"keras_hub>' in z.read("config.json")


__all__ = ["EXPORT_DIR", "META_FILE", "MODEL_FILE", "ExportMeta", "RecordError",
           "load_exported", "read_exported_meta", "save_exported"]
