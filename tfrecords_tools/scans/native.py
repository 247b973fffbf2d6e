"""The native side of pre-processing: loading and checking scans, and writing
predictions back onto a scan's native grid (the inverse of pre-processing).

Slice predictions on the padded template grid are un-padded, the dropped axial
slices re-inserted as background, the volume resampled onto the scan's RAS grid
with the inverse registration transform (nearest for labels, linear for
probabilities), the RAS reorientation undone, and the result saved with the
input's affine and header.
"""
from __future__ import annotations

import dataclasses
import json
import os

import SimpleITK as sitk
import nibabel as nib
import numpy as np

from tfrecords_tools.errors import InputError
from tfrecords_tools.scans import registration as reg

_RAS = np.array([[0, 1], [1, 1], [2, 1]], dtype=float)


@dataclasses.dataclass
class PreparedScan:
    """A new scan pre-processed for prediction, with what write-back needs."""
    subject_id: str
    image_path: str
    slices: np.ndarray | None   # (N, S, S) float32 in [0, 1]; None when loaded from disk
    slice_indices: np.ndarray   # (N,) axial indices on the template grid
    config: object              # the PreprocessConfig used
    transform: sitk.Transform   # template -> native (LPS)
    native_image: nib.Nifti1Image
    geometry: dict
    transform_file: str | None = None


def load_volume(subject: str, path: str, *, label: bool = False) -> nib.Nifti1Image:
    """Load a NIfTI file as a 3D image with its data in memory, validating it.

    Raises:
      InputError: missing, unreadable or truncated file; not 3D (a 4th axis of
        length 1 is dropped); non-finite voxels; non-integer label values.
    """
    if not os.path.isfile(path):
        raise InputError(subject, path, "file not found")
    try:
        img = nib.load(path)
        data = np.asanyarray(img.dataobj)  # reads (and decompresses) everything
    except Exception as e:  # nibabel raises many types for damaged files
        raise InputError(subject, path, f"unreadable or truncated NIfTI file "
                                        f"({type(e).__name__}: {e})") from None
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise InputError(subject, path, f"image is {data.ndim}D with shape {data.shape}; "
                         "expected a 3D scan (a 4th axis is accepted only with length 1)")
    if np.issubdtype(data.dtype, np.floating):
        bad = int(np.count_nonzero(~np.isfinite(data)))
        if bad:
            raise InputError(subject, path, f"{bad} non-finite voxels (NaN or Inf)")
        if label:
            frac = data[data != np.rint(data)]
            if frac.size:
                raise InputError(subject, path, f"{frac.size} non-integer label values "
                                 f"(e.g. {frac.flat[0]:g}); expected an integer label map")
            data = np.rint(data).astype(np.int32)
    elif not label:
        data = data.astype(np.float32)
    header = img.header.copy()
    return nib.Nifti1Image(data, img.affine, header)


def native_geometry(img: nib.Nifti1Image, ras: nib.Nifti1Image, resolution: float, *,
                    image_path: str, slice_indices, slice_size: int) -> dict:
    """JSON-able description of the native grid and the kept slices (saved per subject)."""
    return {
        "image_path": os.path.abspath(image_path),
        "slice_indices": [int(k) for k in slice_indices],
        "slice_size": int(slice_size),
        "native_shape": [int(n) for n in img.shape[:3]],
        "native_affine": np.asarray(img.affine).tolist(),
        "native_axcodes": "".join(nib.aff2axcodes(img.affine)),
        "native_voxel_size": [float(z) for z in img.header.get_zooms()[:3]],
        "native_dtype": str(img.header.get_data_dtype()),
        "ras_shape": [int(n) for n in ras.shape[:3]],
        "ras_affine": np.asarray(ras.affine).tolist(),
        "template_resolution": float(resolution),
        "template_shape": [int(n) for n in reg.template_image(resolution).shape],
    }


def load_prepared(transform_file: str, config=None) -> PreparedScan:
    """A ``PreparedScan`` (without slices) from the files pre-processing saved.

    Lets predictions on converted subjects (``subjects.csv`` lists the
    transform file) be written back in native space. The header comes from the
    original image when it is still readable, else from the saved affine.
    """
    with open(transform_file[:-len(".tfm")] + ".geometry.json") as f:
        geometry = json.load(f)
    affine = np.asarray(geometry["native_affine"])
    try:
        header = nib.load(geometry["image_path"]).header
    except (OSError, nib.filebasedimages.ImageFileError):
        header = None
    native = nib.Nifti1Image(np.zeros((1, 1, 1), np.uint8), affine, header)
    return PreparedScan(
        subject_id=os.path.basename(transform_file)[:-len(".tfm")],
        image_path=geometry["image_path"], slices=None,
        slice_indices=np.asarray(geometry["slice_indices"]), config=config,
        transform=reg.read_transform(transform_file), native_image=native,
        geometry=geometry, transform_file=transform_file)


def slices_to_template(prediction: np.ndarray, slice_indices, template_shape,
                       kind: str = "label") -> np.ndarray:
    """Padded slice predictions -> (X, Y, Z[, K]) volume on the template grid.

    Dropped slices become background (label 0; probability 1 for class 0).
    """
    prediction = np.asarray(prediction)
    x, y, z = template_shape
    size = prediction.shape[1]
    px, py = (size - x) // 2, (size - y) // 2
    core = prediction[:, px:px + x, py:py + y]
    if kind == "label":
        volume = np.zeros((x, y, z), prediction.dtype)
    else:
        volume = np.zeros((x, y, z, prediction.shape[-1]), np.float32)
        volume[..., 0] = 1.0
    volume[:, :, np.asarray(slice_indices)] = np.moveaxis(core, 0, 2)
    return volume


def template_to_native(volume: np.ndarray, geometry: dict, transform: sitk.Transform,
                       kind: str = "label") -> np.ndarray:
    """Map a (X, Y, Z[, K]) volume on the template grid onto the native grid.

    Shared by ``write_native`` and tests/QA of label volumes.

    Args:
      volume: labels (integers) or probabilities (last axis classes).
      geometry: ``native_geometry`` dict of the scan.
      transform: the registration transform (template -> native); inverted here.
      kind: ``label`` (nearest) or ``prob`` (linear, per class).

    Returns:
      The array in the original file's voxel order (RAS reorientation undone).
    """
    if kind not in ("label", "prob"):
        raise ValueError(f"kind must be 'label' or 'prob', got {kind!r}")
    res = geometry["template_resolution"]
    tpl_affine = reg.template_image(res).affine
    reference = reg.to_sitk(np.zeros(geometry["ras_shape"], np.uint8), geometry["ras_affine"])
    inverse = reg.as_affine(transform).GetInverse()
    if kind == "label":
        data = volume.astype(np.int16 if volume.max() > 255 else np.uint8)
        ras = reg.resample(reg.to_sitk(data, tpl_affine), reference, inverse, nearest=True)
    else:
        channels = []
        for k in range(volume.shape[-1]):
            channel = reg.to_sitk(volume[..., k].astype(np.float32), tpl_affine)
            # Outside the template grid is background: probability 1 for class 0.
            channels.append(reg.resample(channel, reference, inverse,
                                         default=1.0 if k == 0 else 0.0))
        ras = np.stack(channels, axis=-1)
    to_original = nib.orientations.ornt_transform(
        _RAS, nib.orientations.io_orientation(np.asarray(geometry["native_affine"])))
    return nib.orientations.apply_orientation(ras, to_original)


def save_nifti_atomic(img: nib.Nifti1Image, path: str) -> None:
    """Save under a temporary name with the same extension, then rename."""
    reg.write_atomic(path, lambda tmp: nib.save(img, tmp))


def write_native(prediction: np.ndarray, prepared: PreparedScan, out_path: str,
                 kind: str = "label") -> str:
    """Write slice predictions of a ``PreparedScan`` as NIfTI on its native grid.

    Args:
      prediction: (N, S, S) integer labels or (N, S, S, K) probabilities for the
        kept slices ``prepared.slice_indices``, in that order.
      prepared: from ``preprocess.prepare_scan``.
      out_path: ``.nii`` or ``.nii.gz`` path, written atomically.
      kind: ``label`` or ``prob``.

    Returns:
      ``out_path``.
    """
    prediction = np.asarray(prediction)
    size = prepared.geometry["slice_size"]
    expected = (len(prepared.slice_indices), size, size)
    if prediction.shape[:3] != expected or prediction.ndim != (3 if kind == "label" else 4):
        raise ValueError(f"prediction shape {prediction.shape} does not match the prepared "
                         f"slices {expected} (kind={kind})")
    volume = slices_to_template(prediction, prepared.slice_indices,
                                prepared.geometry["template_shape"], kind)
    data = template_to_native(volume, prepared.geometry, prepared.transform, kind)
    header = prepared.native_image.header.copy()
    dtype = np.float32 if kind == "prob" else data.dtype
    header.set_data_dtype(dtype)
    img = nib.Nifti1Image(data.astype(dtype), prepared.native_image.affine, header)
    img.header.set_slope_inter(1.0, 0.0)
    save_nifti_atomic(img, out_path)
    return out_path
