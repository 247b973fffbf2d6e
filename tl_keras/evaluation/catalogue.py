"""The evaluation's catalogues, each defined once: metrics and detection presets.

Everything that lists metrics or presets reads them from here: the evaluation's
tables, the report (tables, ``summary.md``, figures), the ``tl_keras.evaluate``
flags and the documentation tests. This module imports nothing heavy, so a CLI can
use it for its flag defaults and help without loading pandas or scipy.

- ``METRICS``: the overlap metric of a run, by column name (``dice`` for binary
  targets, ``miou`` for multi-class ones) with the name a table or figure shows.
- ``LESION_METRICS``: the lesion-wise numbers each detection preset gives per run
  (``<preset>_<name>`` columns of ``summary.csv``).
- ``DETECTION_PRESETS``: the lesion-wise conventions (docs/evaluation.md,
  "Challenge presets").
- ``TARGET_PRESETS``: the preset the report shows beside Dice for a target: the
  convention of the challenge on that kind of lesion.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Optional

from tl_common.cli import FlagError


@dataclasses.dataclass(frozen=True)
class Metric:
    """An overlap metric of a run.

    Attributes:
      name: the column name in ``summary.csv`` (``test_<name>`` in a sweep's CSV).
      display: the name tables and figures show.
      binary: the metric of binary (lesion) targets; otherwise of multi-class ones.
      description: one line for documentation.
      per_slice: None for the run's own metric (``dice``, ``miou``: the evaluation's
        tables compute them with their per-class and volume companions); else
        ``(gt, pred, num_classes, config) -> (N,) scores`` of N ``(N, H, W)`` label
        slices, computed for every run of its kind beside the run's metric (a
        ``per_slice.csv`` column, its mean and ``_sd`` in ``summary.csv``).
    """

    name: str
    display: str
    binary: bool
    description: str
    per_slice: Optional[Callable] = None


METRICS = {
    "dice": Metric("dice", "Dice", True, "Dice of the foreground, mean over the split's slices"),
    "miou": Metric("miou", "mIoU", False,
                   "mean IoU over the foreground classes, mean over the split's slices"),
}

# Lesion-wise numbers of a detection preset: column suffix -> display name.
LESION_METRICS = {"recall": "lesion recall", "precision": "lesion precision",
                  "f1": "lesion F1"}


def metric_for(num_classes: int) -> str:
    """The metric of a model with ``num_classes`` classes (2: binary)."""
    return next(m.name for m in METRICS.values()
                if m.binary == (num_classes == 2) and m.per_slice is None)


def extra_metrics(num_classes: int) -> list:
    """The registered metrics computed beside the run's own (those with ``per_slice``)."""
    return [m for m in METRICS.values()
            if m.binary == (num_classes == 2) and m.per_slice is not None]


def display_name(metric) -> str:
    """"Dice", "mIoU", ...; an unknown name is shown as it is."""
    known = METRICS.get(str(metric))
    return known.display if known else str(metric)


@dataclasses.dataclass(frozen=True)
class DetectionPreset:
    """A lesion-wise evaluation convention.

    Attributes:
      name: preset name.
      connectivity: component connectivity.
      gt_overlap: a lesion is a true positive when more than this fraction of it
        is covered by (valid) predicted components.
      max_outside: predicted components with more than this fraction of their
        voxels outside the ground truth are false positives (1.0: only
        components with no overlap at all are).
      min_volume_mm3: lesions and predicted components must be larger than
        this (strictly) to take part.
      f1: ``"harmonic"`` (2PR / (P + R)) or ``"lesion"`` (TP / (TP + (FP + FN) / 2)).
      description: one line for documentation and reports.
    """

    name: str
    connectivity: int
    gt_overlap: float = 0.0
    max_outside: float = 1.0
    min_volume_mm3: float = 0.0
    f1: str = "harmonic"
    description: str = ""


DETECTION_PRESETS = {
    "paper": DetectionPreset(
        "paper", 8, description="Zoetmulder et al. 2022: 8-connected per slice, any overlap"),
    # The challenges' own evaluation code (docs/evaluation.md says which version):
    # ISLES'22 labels with cc3d at 26-connectivity; ATLAS R2.0 with
    # scipy.ndimage.label's default structure, i.e. 6-connectivity.
    "isles22": DetectionPreset(
        "isles22", 26, f1="lesion",
        description="ISLES'22: 26-connected, any overlap, lesion F1 = TP / (TP + (FP + FN) / 2)"),
    "atlas2": DetectionPreset(
        "atlas2", 6, f1="lesion",
        description="ATLAS R2.0: 6-connected, any overlap, lesion F1 = TP / (TP + (FP + FN) / 2)"),
    "wmh": DetectionPreset(
        "wmh", 26, description="WMH challenge: 26-connected, any overlap, recall, "
                               "precision, F1 = 2PR / (P + R)"),
    "msseg_anima": DetectionPreset(
        "msseg_anima", 6, gt_overlap=0.1, max_outside=0.7, min_volume_mm3=3.0,
        description="MSSEG 2016 (Anima): 6-connected, lesions > 3 mm^3, detected when > 10 % "
                    "covered by predicted components at most 70 % outside the ground truth"),
}

# Former preset names -> why they are gone (the error a user of an old flagfile sees).
RETIRED_PRESETS = {
    "atlas_isles": "it was split because the two challenges count lesions differently: "
                   "use 'isles22' (26-connected) and/or 'atlas2' (6-connected)",
}



def get_preset(name: str) -> DetectionPreset:
    """The preset called ``name`` (a clear error listing the known ones)."""
    if name in RETIRED_PRESETS:
        raise FlagError(f"detection preset '{name}' no longer exists: {RETIRED_PRESETS[name]}")
    try:
        return DETECTION_PRESETS[name]
    except KeyError:
        raise FlagError(f"unknown detection preset '{name}', expected one of "
                        f"{sorted(DETECTION_PRESETS)}") from None


# The target's lesion-wise convention, shown by the report beside Dice: stroke lesions
# as the ATLAS R2.0 challenge counts them (the stroke data are ATLAS scans), MS lesions
# as MSSEG 2016's Anima tool does. Other targets (and unnamed ones) use the paper's.
TARGET_PRESETS = {"stroke": "atlas2", "ms": "msseg_anima"}
DEFAULT_TARGET_PRESET = "paper"


def target_preset(target) -> str:
    """The detection preset whose precision and F1 the report shows for ``target``."""
    return TARGET_PRESETS.get(str(target), DEFAULT_TARGET_PRESET)
