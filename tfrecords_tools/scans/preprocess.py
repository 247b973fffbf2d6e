"""Per-scan pre-processing (docs/method.md section 3) and source/target label generation.

Pipeline: load and validate (nibabel) -> reorient to RAS -> register rigid then
affine to the MNI152 2009 template (SimpleITK) -> resample image (linear) and
labels (nearest) onto the template grid -> clip to percentiles and min-max
normalise to [0, 1] -> keep axial slices between the crops -> zero-pad each
slice, centred, to ``slice_size``. The transform and the native geometry are
saved per subject so predictions can be written back (``tfrecords_tools.scans.native``).

Slices are the (x, y) planes of the RAS template grid: row = x (right to left
of the array is left-to-right of the head), column = y (posterior to anterior);
slice index k counts from the bottom of the template grid.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import time

import nibabel as nib
import numpy as np

from tfrecords_tools.errors import InputError, itk_reason
from tfrecords_tools.scans import checks, labels as labels_lib, registration as reg
from tfrecords_tools.scans.config import PreprocessConfig
from tfrecords_tools.scans.native import (PreparedScan, load_prepared, load_volume,  # noqa: F401
                                          native_geometry, template_to_native, write_native)
from tl_common.io import write_json_atomic

AFFINE_TOLERANCE_MM = 1e-3
LABEL_KINDS = ("mask", "tissue", "structures", "brain")


@functools.lru_cache(maxsize=4)
def _structure_atlas(resolution: float) -> np.ndarray:
    """The ellipsoid structure atlas on the template grid (presence fallback)."""
    tpl = reg.template_image(resolution)
    return labels_lib.paint_structures(tpl.shape, tpl.affine)


@dataclasses.dataclass
class SubjectResult:
    """Pre-processed slices of one subject (Z kept slices of side S)."""
    subject_id: str
    image: np.ndarray            # (Z, S, S) float32 in [0, 1]
    slice_indices: np.ndarray    # (Z,) int, axial index on the template grid
    mask: np.ndarray | None      # (Z, S, S) uint8 target mask, None without mask files
    tissue: np.ndarray           # (Z, S, S) uint8: 0 bg, 1 CSF, 2 GM, 3 WM
    presence: np.ndarray         # (Z, 16) float32, order labels.PRESENCE_LABELS
    voxel_size: tuple            # mm of the template grid
    geometry: dict               # native geometry, see native.native_geometry
    transform_file: str | None
    timings: dict                # registration_s (optimisation only), rest_s; *_cpu_s
    tissue_source: str = "none"  # what the tissue labels came from
    checks: dict = dataclasses.field(default_factory=dict)  # figures of checks.py


def _register_scan(subject, image_path, config):
    """Load, validate, reorient and register one scan; returns everything later steps need.

    The last item is (wall, CPU) seconds spent in the registration itself.
    """
    img = load_volume(subject, image_path)
    data = np.asarray(img.dataobj)
    checks.check_intensities(subject, image_path, data)
    extent = checks.check_head_size(subject, image_path, data, img.affine)
    ras = nib.as_closest_canonical(img)
    moving = reg.to_sitk(np.asarray(ras.dataobj, np.float32), ras.affine)
    fixed = reg.template_reference(config.resolution)
    start = time.perf_counter(), time.process_time()
    if config.skip_registration:
        transform = reg.identity_transform()
    else:
        try:
            transform = reg.register(
                fixed, moving, levels=config.reg_levels_mm, iterations=config.reg_iterations,
                sampling=config.reg_sampling, bins=config.reg_bins, seed=config.reg_seed,
                threads=config.reg_threads)
        except RuntimeError as e:  # SimpleITK: a multi-line ITK report
            raise InputError(subject, image_path, f"registration failed: {itk_reason(e)}; "
                             "check that the file is a T1 head scan") from None
    seconds = time.perf_counter() - start[0], time.process_time() - start[1]
    volume = reg.resample(moving, fixed, transform)
    brain = reg.template_brain_mask(config.resolution)
    covered = reg.fov_coverage(transform, ras.shape, ras.affine, config.resolution)
    inside = volume[brain]
    if covered < 0.5 or np.ptp(inside) == 0 or (inside != 0).mean() < 0.1:
        raise InputError(subject, image_path, (
            f"empty brain after registration ({100 * covered:.0f}% of the template brain "
            "inside the scan's field of view, or no signal there); check that the file is a "
            "T1 head scan, or use skip_registration only for data already in MNI space"))
    tpl = reg.template_image(config.resolution).get_fdata(dtype=np.float32)
    correlation = checks.template_correlation(volume, tpl, brain)
    checks.check_registration(subject, image_path, correlation)
    return img, ras, transform, volume, seconds, {"head_extent_mm": extent,
                                                  "template_correlation": round(correlation, 3)}



def normalise(volume: np.ndarray, percentiles=(1.0, 99.0), region: str = "nonzero",
              slices=None):
    """Clip to the scan's intensity percentiles, then min-max scale to [0, 1] (float32).

    Args:
      volume: (X, Y, Z) registered scan.
      percentiles: (low, high) clip percentiles, computed over the whole scan.
      region: "nonzero" computes the percentiles over non-zero voxels (the head,
        not the empty space around it, which would otherwise pin the low
        percentile at 0); "volume" over all voxels.
      slices: axial indices to return (default all); the percentiles still come
        from the whole scan.
    """
    values = volume[volume != 0] if region == "nonzero" else volume.ravel()
    part = volume if slices is None else volume[:, :, slices]
    if values.size == 0:
        return np.zeros(part.shape, np.float32)
    lo, hi = np.percentile(values, percentiles)
    if hi <= lo:
        return np.zeros(part.shape, np.float32)
    lo, hi = np.float32(lo), np.float32(hi)
    out = np.clip(part, lo, hi).astype(np.float32, copy=False)
    out -= lo
    out /= hi - lo  # the same float32 span: the maximum maps to exactly 1
    return out


def kept_slices(num_slices: int, config: PreprocessConfig) -> np.ndarray:
    """Axial indices kept after dropping ``crop_bottom`` and ``crop_top`` slices."""
    top, bottom = config.crop_slices()
    return np.arange(bottom, num_slices - top)


def to_slices(volume: np.ndarray, indices, size: int) -> np.ndarray:
    """(X, Y, Z) volume -> (len(indices), size, size) axial slices zero-padded, centred."""
    x, y = volume.shape[:2]
    px, py = (size - x) // 2, (size - y) // 2
    out = np.zeros((len(indices), size, size), volume.dtype)
    out[:, px:px + x, py:py + y] = np.moveaxis(volume[:, :, indices], 2, 0)
    return out


def _resample_labels(subject, labels, img, ras, image_path, transform, resolution, keep):
    """Load every label file, check it is on the image's grid, resample all (nearest) at once.

    Returns:
      ``{kind: [array on the template grid's kept axial slices, ...]}`` in the
      order of ``labels``.
    """
    files = [(kind, path) for kind, paths in labels.items() for path in paths]
    if not files:
        return {}
    # Nearest-neighbour resampling picks one source voxel per template voxel, the
    # same for every label file: resample the (1-based, Fortran-order) index of the
    # source voxels once, then gather each label file's values with it.
    index = reg.image_from_kji(reg.voxel_index_kji(img.shape, img.affine), ras.affine)
    source = reg.resample(index, reg.template_reference(resolution), transform,
                          nearest=True)[:, :, keep]
    outside = source == 0
    source -= 1
    source[outside] = 0
    result = {}
    for kind, path in files:
        lab = load_volume(subject, path, label=True)
        checks.check_label_values(subject, path, np.asarray(lab.dataobj))
        difference = grid_difference(lab, img)
        if difference:
            raise InputError(subject, path, (
                f"the label grid does not match the image grid of {image_path}: "
                f"{difference}; labels must be on the image's grid"))
        out = np.asarray(lab.dataobj).ravel(order="F")[source]
        out[outside] = 0
        result.setdefault(kind, []).append(out)
    return result


def grid_difference(label, image) -> str:
    """How a label volume's grid differs from the image's ('' when it matches): the
    shapes, or the largest affine difference with both voxel sizes and origins."""
    if label.shape != image.shape:
        return f"shape {tuple(label.shape)} vs {tuple(image.shape)}"
    a, b = np.asarray(label.affine, float), np.asarray(image.affine, float)
    if np.allclose(a, b, atol=AFFINE_TOLERANCE_MM):
        return ""
    return (f"same shape {tuple(image.shape)} but affines differ by up to "
            f"{np.abs(a - b).max():.3g} mm ({_describe_grid(a)} vs {_describe_grid(b)})")


def _describe_grid(affine: np.ndarray) -> str:
    voxel = np.linalg.norm(affine[:3, :3], axis=0)
    return (f"voxel {' x '.join(f'{v:.3g}' for v in voxel)} mm, origin "
            f"({', '.join(f'{v:.2f}' for v in affine[:3, 3])})")


def preprocess_subject(subject_id: str, image_path: str, labels: dict[str, list[str]],
                       config: PreprocessConfig, transform_dir: str | None) -> SubjectResult:
    """Pre-process one subject and derive every per-slice target.

    Args:
      subject_id: identifier used in errors, file names and examples.
      image_path: the T1 NIfTI file.
      labels: lists of label files by kind: ``mask`` (lesion masks, unioned;
        or an anatomy map for multiclass), ``tissue`` (FAST pveseg),
        ``structures`` (FIRST / aseg), ``brain`` (BET mask). Missing keys or
        empty lists are allowed.
      config: pre-processing parameters.
      transform_dir: where ``{subject}.tfm`` and ``{subject}.geometry.json`` are
        written (None: not saved).

    Returns:
      A ``SubjectResult``.

    Raises:
      InputError: an unusable scan or label file (names subject, file, problem).
      ValueError: a label kind other than ``LABEL_KINDS`` (a programming error).
    """
    labels = {k: list(v or []) for k, v in (labels or {}).items()}
    unknown = set(labels) - set(LABEL_KINDS)
    if unknown:
        raise ValueError(f"unknown label kinds {sorted(unknown)}; expected {LABEL_KINDS}")
    t0 = time.perf_counter(), time.process_time()
    img, ras, transform, volume, t_reg, found = _register_scan(subject_id, image_path, config)
    res = config.resolution
    # Targets are needed on the kept slices only: everything below works on that slab.
    keep = kept_slices(volume.shape[2], config)
    slab = np.arange(len(keep))
    resampled = _resample_labels(subject_id, labels, img, ras, image_path, transform, res, keep)
    image01 = normalise(volume, config.clip_percentiles, config.clip_region, keep)
    tpl_brain = reg.template_brain_mask(res)[:, :, keep]
    brain = (resampled["brain"][0] > 0) if "brain" in resampled else \
        labels_lib.fallback_brain(image01, tpl_brain)
    tissue, source = _tissue(subject_id, labels, resampled, image01, brain, config)
    if "structures" in resampled:
        structures = resampled["structures"][0]
    else:
        structures = np.where(brain, _structure_atlas(res)[:, :, keep], 0)
    mask = None
    if "mask" in resampled:
        mask = (labels_lib.binary_mask(resampled["mask"]) if config.mask_mode == "binary"
                else labels_lib.map_labels(resampled["mask"][0], config.label_mapping))
        if config.mask_mode == "multiclass":
            found["unmapped_label_voxels"] = checks.report_unmapped(
                subject_id, labels["mask"][0], resampled["mask"][0], config.label_mapping)
    size = config.slice_size
    geometry = native_geometry(img, ras, res, image_path=image_path, slice_indices=keep,
                               slice_size=size)
    transform_file = save_transform(subject_id, transform, geometry, transform_dir)
    return SubjectResult(
        subject_id=subject_id,
        image=to_slices(image01, slab, size),
        slice_indices=keep,
        mask=None if mask is None else to_slices(mask, slab, size),
        tissue=to_slices(tissue, slab, size),
        presence=labels_lib.presence(structures, brain),
        voxel_size=(res, res, res),
        geometry=geometry,
        transform_file=transform_file,
        timings={"registration_s": t_reg[0], "rest_s": time.perf_counter() - t0[0] - t_reg[0],
                 # CPU time: close to the wall time on an idle machine (1 thread)
                 "registration_cpu_s": t_reg[1],
                 "rest_cpu_s": time.process_time() - t0[1] - t_reg[1]},
        tissue_source=source, checks=found)



def _tissue(subject_id, labels, resampled, image01, brain, config):
    """Tissue classes and where they came from (label / fallback / none)."""
    if config.tissue_source == "none":
        return np.zeros(image01.shape, np.uint8), "none"
    if config.tissue_source == "label" and "tissue" in resampled:
        try:
            return labels_lib.tissue_from_fast(resampled["tissue"][0]), "label"
        except ValueError as e:
            raise InputError(subject_id, labels["tissue"][0], str(e)) from None
    return labels_lib.fallback_tissue(image01, brain), "fallback"


def save_transform(subject_id, transform, geometry, transform_dir):
    """Write ``{subject}.tfm`` and ``{subject}.geometry.json``; returns the .tfm path."""
    if transform_dir is None:
        return None
    path = os.path.join(transform_dir, f"{subject_id}.tfm")
    reg.write_transform(transform, path)
    write_json_atomic(os.path.join(transform_dir, f"{subject_id}.geometry.json"), geometry)
    return path


def prepare_scan(image_path: str, config: PreprocessConfig,
                 work_dir: str | None = None) -> PreparedScan:
    """Pre-process a new scan for prediction, keeping what ``write_native`` needs.

    Args:
      image_path: T1 NIfTI file.
      config: the pre-processing config the model's data set was built with.
      work_dir: if given, the transform and geometry are also saved there.

    Returns:
      A ``PreparedScan`` with ``.slices`` (N, S, S) float32 in [0, 1] and
      ``.slice_indices``, the transform and native geometry in memory.
    """
    name = os.path.basename(image_path)
    subject = name[:-7] if name.endswith(".nii.gz") else os.path.splitext(name)[0]
    img, ras, transform, volume, _, _ = _register_scan(subject, image_path, config)
    image01 = normalise(volume, config.clip_percentiles, config.clip_region)
    keep = kept_slices(volume.shape[2], config)
    geometry = native_geometry(img, ras, config.resolution, image_path=image_path,
                               slice_indices=keep, slice_size=config.slice_size)
    return PreparedScan(
        subject_id=subject, image_path=image_path,
        slices=to_slices(image01, keep, config.slice_size), slice_indices=keep,
        config=config, transform=transform, native_image=img, geometry=geometry,
        transform_file=save_transform(subject, transform, geometry, work_dir))
