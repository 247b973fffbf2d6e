"""Every pre-processing parameter in one frozen record (docs/preprocessing.md), written
into dataset.json so a model's pre-processing can be rebuilt (``tl_keras.predict``)."""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from tl_common.cli import FlagError

MASK_MODES = ("binary", "multiclass")
TISSUE_SOURCES = ("label", "fallback", "none")
CLIP_REGIONS = ("nonzero", "volume")


@dataclasses.dataclass(frozen=True)
class PreprocessConfig:
    """Every pre-processing parameter; written into dataset.json via ``to_dict``.

    Attributes:
      resolution: template grid spacing in mm (1.0 = 197 x 233 x 189).
      slice_size: side of the zero-padded square slice (256 at 1 mm; use
        ``PreprocessConfig.for_resolution`` for coarser test grids).
      crop_top: axial slices dropped from the top, counted at 1 mm (scaled by
        ``resolution``).
      crop_bottom: axial slices dropped from the bottom, counted at 1 mm.
      clip_percentiles: intensity clip range (low, high) in percent.
      clip_region: voxels the percentiles are computed over: ``nonzero`` (voxels
        of the registered scan that are not 0, i.e. the head, not the empty field
        around it) or ``volume`` (every template-grid voxel).
      skip_registration: data already in MNI space (e.g. ATLAS ``_stx``):
        identity transform, resample only.
      mask_mode: ``binary`` (union of mask files > 0) or ``multiclass``
        (``label_mapping`` applied to the first mask file).
      label_mapping: ``{original_label: class}`` for ``multiclass``.
      mask_class_names: class names incl. background (defaults derived).
      tissue_source: ``label`` (FAST map when the subject has one, fallback
        otherwise), ``fallback`` (always built in) or ``none`` (all zeros).
      reg_levels_mm: registration pyramid as voxel sizes in mm.
      reg_iterations: optimiser iterations per level.
      reg_sampling: fraction of voxels sampled by the metric.
      reg_bins: Mattes MI histogram bins.
      reg_seed: metric sampling seed (repeatable registration).
      reg_threads: SimpleITK threads during the registration (1: bit-for-bit
        repeatable); resampling uses SimpleITK's global default (all cores).
    """
    resolution: float = 1.0
    slice_size: int = 256
    crop_top: int = 0
    crop_bottom: int = 0
    clip_percentiles: tuple = (1.0, 99.0)
    clip_region: str = "nonzero"
    skip_registration: bool = False
    mask_mode: str = "binary"
    label_mapping: dict | None = None
    mask_class_names: tuple = ()
    tissue_source: str = "label"
    reg_levels_mm: tuple = (8.0, 4.0, 2.0)
    reg_iterations: int = 100
    reg_sampling: float = 0.05
    reg_bins: int = 32
    reg_seed: int = 0
    reg_threads: int = 1

    def __post_init__(self):
        for name in ("clip_percentiles", "mask_class_names", "reg_levels_mm"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.label_mapping is not None:
            object.__setattr__(self, "label_mapping",
                               {int(k): int(v) for k, v in dict(self.label_mapping).items()})
        lo, hi = self.clip_percentiles
        checks = [(self.resolution > 0, "resolution must be > 0"),
                  (0 <= lo < hi <= 100, "clip_percentiles must satisfy 0 <= low < high <= 100"),
                  (self.crop_top >= 0 and self.crop_bottom >= 0, "crops must be >= 0"),
                  (self.mask_mode in MASK_MODES, f"mask_mode must be one of {MASK_MODES}"),
                  (self.tissue_source in TISSUE_SOURCES,
                   f"tissue_source must be one of {TISSUE_SOURCES}"),
                  (self.clip_region in CLIP_REGIONS, f"clip_region must be one of {CLIP_REGIONS}"),
                  (self.mask_mode == "binary" or self.label_mapping,
                   "mask_mode multiclass needs a label_mapping")]
        for ok, message in checks:
            if not ok:
                raise FlagError(f"PreprocessConfig: {message}")
        shape = template_shape(self.resolution)
        if max(shape[:2]) > self.slice_size:
            raise FlagError(f"PreprocessConfig: slice_size {self.slice_size} is smaller than "
                             f"the {self.resolution} mm template slice {shape[:2]}")
        if sum(self.crop_slices()) >= shape[2]:
            raise FlagError("PreprocessConfig: the crops remove every axial slice")

    @classmethod
    def for_resolution(cls, resolution: float, **kwargs) -> "PreprocessConfig":
        """A config whose slice_size is the smallest multiple of 32 holding the slice."""
        size = int(np.ceil(max(template_shape(resolution)[:2]) / 32.0) * 32)
        return cls(resolution=resolution, slice_size=kwargs.pop("slice_size", size), **kwargs)

    @property
    def num_mask_classes(self) -> int:
        if self.mask_mode == "binary":
            return 2
        return max(self.label_mapping.values()) + 1

    @property
    def mask_classes(self) -> tuple:
        if self.mask_class_names:
            return self.mask_class_names
        if self.mask_mode == "binary":
            return ("background", "lesion")
        return ("background",) + tuple(f"class_{k}" for k in range(1, self.num_mask_classes))

    def crop_slices(self) -> tuple[int, int]:
        """(top, bottom) slices dropped on this grid: 1 mm counts / resolution, half up."""
        return (int(np.floor(self.crop_top / self.resolution + 0.5)),
                int(np.floor(self.crop_bottom / self.resolution + 0.5)))

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        for key, value in out.items():
            if isinstance(value, tuple):
                out[key] = list(value)
        if self.label_mapping is not None:
            out["label_mapping"] = {str(k): v for k, v in self.label_mapping.items()}
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PreprocessConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise FlagError(f"PreprocessConfig: unknown keys {sorted(unknown)}")
        return cls(**data)


def template_shape(resolution: float) -> tuple[int, int, int]:
    """Shape of the MNI152 template grid at ``resolution`` mm."""
    from tfrecords_tools.scans import registration as reg  # loads nilearn and SimpleITK
    return tuple(reg.template_image(resolution).shape)
