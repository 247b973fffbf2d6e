"""``dataset.json``, the contract between a converted data set and its readers, as a
typed record (:class:`DatasetMeta`), checked when read and when written.

Files of earlier versions are read as they are: keys added since (``checksums``,
``ignore_class``, ``versions``, a split's ``complete`` ...) take their defaults, and a
bare number as ``image_size`` is a square size. Readers use its attributes
(``meta.split("train").subjects``); ``to_dict()`` is the JSON object.
"""
from __future__ import annotations

import dataclasses
import os

from tl_common.cli import MissingFileError
from tl_common.records import (RecordError, boolean, from_fields, image_size, integer, mapping,
                               names, optional, read_json_object, text)

DATASET_JSON = "dataset.json"
SCHEMA_VERSION = 1
# 10-bit levels: max abs error 0.5 / 1020 = 4.9e-4 on [0, 1] (the 5e-4 budget), and
# 1020 = 4 x 255 stores 8-bit photographs exactly. At 1 mm a phantom slice measured
# 39.7-41.7 KB (2047 levels: 45.7-48.4 KB).
DEFAULT_QUANT_MAX = 1020


@dataclasses.dataclass(frozen=True)
class SplitInfo:
    """One split of a data set.

    Attributes:
      subjects: the split's subject ids, sorted.
      slices: slices (examples) in the split's shards.
      shards: shard files of the split.
      complete: every planned shard of the split exists (false during shard jobs).
    """

    subjects: tuple[str, ...]
    slices: int
    shards: int
    complete: bool = True

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "subjects": list(self.subjects)}

    @classmethod
    def from_dict(cls, data, where: str) -> "SplitInfo":
        return from_fields(cls, mapping(data), where,
                           {"subjects": names, "slices": integer, "shards": integer,
                            "complete": boolean})


def _splits(where: str):
    def check(value) -> dict:
        return {text(name): SplitInfo.from_dict(entry, f"{where} (split '{name}')")
                for name, entry in mapping(value).items()}
    return check


def _context(value) -> int:
    value = integer(value)
    if value not in (0, 1):
        raise ValueError(f"must be 0 or 1, got {value}")
    return value


@dataclasses.dataclass(frozen=True, eq=True)
class DatasetMeta:
    """What ``dataset.json`` records about a converted data set.

    Attributes:
      image_size: (height, width) of every slice.
      channels: image channels (1: MR scans, 3: photographs).
      num_mask_classes: target mask classes, background included.
      num_tissue_classes: source segmentation classes, background included.
      splits: split name -> :class:`SplitInfo`.
      mask_classes, tissue_classes: the classes' names (may be empty).
      presence_labels: names of the multi-label presence vector (may be empty).
      ignore_class: the tissue class the pre-training loss weighs 0, or None.
      checksums: shard file name -> ``{"bytes", "sha256"}``, checked by the reader.
      preprocessing: the conversion's pre-processing parameters (``PreprocessConfig``).
      tool_version, versions: the converter's version and the package versions.
      quant_max: the image quantisation levels.
      synthetic: the data are synthetic (phantoms, test data).
      source: where the scans came from (the manifest's ``source``).
      complete: every planned shard exists and no subject failed.
      errors: subjects skipped by the conversion.
      context_slices: axial neighbours stored on each side of every slice (0 or 1; 1 for
        2.5-D input, docs/conversion.md).
      schema_version: the slice schema's version.
    """

    image_size: tuple[int, int]
    channels: int
    num_mask_classes: int
    num_tissue_classes: int
    splits: dict
    mask_classes: tuple[str, ...] = ()
    tissue_classes: tuple[str, ...] = ()
    presence_labels: tuple[str, ...] = ()
    ignore_class: int | None = None
    checksums: dict = dataclasses.field(default_factory=dict)
    preprocessing: dict = dataclasses.field(default_factory=dict)
    tool_version: str | None = None
    versions: dict = dataclasses.field(default_factory=dict)
    quant_max: int = DEFAULT_QUANT_MAX
    synthetic: bool = False
    source: str | None = None
    complete: bool = True
    errors: int = 0
    context_slices: int = 0
    schema_version: int = SCHEMA_VERSION

    __hash__ = None  # holds dicts

    def split(self, name: str) -> SplitInfo | None:
        """The split called ``name``, or None."""
        return self.splits.get(name)

    def to_dict(self) -> dict:
        """The JSON object of ``dataset.json``."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out.update(image_size=list(self.image_size), mask_classes=list(self.mask_classes),
                   tissue_classes=list(self.tissue_classes),
                   presence_labels=list(self.presence_labels),
                   splits={k: v.to_dict() for k, v in self.splits.items()},
                   checksums=dict(self.checksums), preprocessing=dict(self.preprocessing),
                   versions=dict(self.versions))
        return out

    @classmethod
    def from_dict(cls, data, where: str = DATASET_JSON) -> "DatasetMeta":
        """Check and convert ``data`` (a record is returned as it is).

        Raises:
          RecordError: naming ``where`` and the missing or bad key.
        """
        if isinstance(data, DatasetMeta):
            return data
        if not isinstance(data, dict):
            raise RecordError(f"{where}: holds a JSON {type(data).__name__}, not an object")
        opt_names, opt_text = optional(names), optional(text)
        checkers = {"image_size": image_size, "channels": integer,
                    "num_mask_classes": integer, "num_tissue_classes": integer,
                    "splits": _splits(where), "mask_classes": opt_names,
                    "tissue_classes": opt_names, "presence_labels": opt_names,
                    "ignore_class": optional(integer),
                    "checksums": optional(mapping), "preprocessing": optional(mapping),
                    "tool_version": opt_text, "versions": optional(mapping),
                    "quant_max": integer, "synthetic": boolean, "source": opt_text,
                    "complete": boolean, "errors": integer, "context_slices": _context,
                    "schema_version": integer}
        meta = from_fields(cls, data, where, checkers)
        # JSON null for an optional collection means "none recorded".
        return dataclasses.replace(
            meta, mask_classes=meta.mask_classes or (), tissue_classes=meta.tissue_classes or (),
            presence_labels=meta.presence_labels or (), checksums=meta.checksums or {},
            preprocessing=meta.preprocessing or {}, versions=meta.versions or {})


def read_dataset_meta(data_dir: str) -> DatasetMeta:
    """The :class:`DatasetMeta` of a converted data set.

    Raises:
      MissingFileError: ``data_dir`` holds no ``dataset.json``.
      RecordError: ``dataset.json`` is damaged or has a missing or bad key.
    """
    path = os.path.join(data_dir, DATASET_JSON)
    if not os.path.exists(path):
        raise MissingFileError(
            f"{path}: no dataset.json; is {data_dir} the --out_dir of tfrecords_tools.convert?")
    try:
        data = read_json_object(path)
    except RecordError as e:
        raise RecordError(f"{e}; convert the data set again") from None
    return DatasetMeta.from_dict(data, path)
