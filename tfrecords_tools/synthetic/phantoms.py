"""A SYNTHETIC phantom cohort built from the MNI152 2009 template nilearn ships.

Not patient data. Each subject is the template anatomy (T1, GM/WM probability
maps, brain mask; nilearn package data, nothing downloaded) with painted
lesions, written in its own "native" space: a random affine (rotation up to 5
degrees, translation up to 6 mm, scaling +-5 % per axis) and a smooth elastic
deformation (about 2 mm) relate the native grid (LAS storage order, own origin)
to MNI space; a multiplicative bias field and Rician noise are added.

Labels per subject (all on the scan's grid):
  * ``tissue``: FAST-style 1 CSF, 2 GM, 3 WM (argmax of the template's CSF =
    brain - GM - WM, GM and WM maps inside the brain mask);
  * ``structures``: aseg codes of the 15 FIRST structures, painted as
    ellipsoids at approximate MNI coordinates (``labels.STRUCTURE_ELLIPSOIDS``);
  * ``brain``: brain mask;
  * ``lesion``: binary lesion mask -- ``stroke``: 1-3 large irregular blobs
    (unions of ellipsoids) in one hemisphere's middle-cerebral territory,
    hypo-intense; ``ms``: 8-20 small periventricular white-matter blobs,
    mildly hypo-intense;
  * ``anatomy``: 6 classes + background: 1 CSF, 2 cortical GM, 3 WM, 4 deep GM
    nuclei (thalamus, caudate, putamen, pallidum, accumbens), 5 hippocampus and
    amygdala, 6 brain stem (``anatomy_mapping.csv`` holds the table).
"""
from __future__ import annotations

import dataclasses
import functools
import os

import nibabel as nib
import numpy as np
from scipy import ndimage
from tqdm import tqdm

from tfrecords_tools.scans import labels as labels_lib
from tfrecords_tools.scans.native import save_nifti_atomic
from tl_common.io import write_csv_atomic, write_json_atomic, write_text_atomic
from tl_common.cli import FlagError

DESCRIPTION = b"SYNTHETIC phantom (tl_keras), not patient data"
MANIFEST_NAME = "synthetic_manifest.csv"
MANIFEST_COLUMNS = ("subject_id", "image", "label", "split", "tissue", "structures",
                    "brain", "anatomy")
ANATOMY_CLASSES = ("background", "CSF", "cortical GM", "WM", "deep GM",
                   "hippocampus+amygdala", "brain stem")
_DEEP = ("Thalamus", "Caudate", "Putamen", "Pallidum", "Accumbens-area")


@functools.lru_cache(maxsize=1)
def _mni():
    """1 mm MNI T1, packed labels (tissue + 8 * structure index), WM map, lesion regions."""
    from nilearn import datasets
    t1_img = datasets.load_mni152_template(resolution=1)
    t1 = t1_img.get_fdata(dtype=np.float32)
    gm = datasets.load_mni152_gm_template(resolution=1).get_fdata(dtype=np.float32)
    wm = datasets.load_mni152_wm_template(resolution=1).get_fdata(dtype=np.float32)
    brain = datasets.load_mni152_brain_mask(resolution=1).get_fdata() > 0.5
    csf = np.clip(brain - gm - wm, 0, 1)
    tissue = ((np.argmax(np.stack([csf, gm, wm]), 0) + 1) * brain).astype(np.uint8)
    structures = labels_lib.paint_structures(t1.shape, t1_img.affine, brain)
    packed = tissue.copy()
    for n, code in enumerate(labels_lib.STRUCTURE_CODES, start=1):
        packed[structures == code] += 8 * n
    mm = [t1_img.affine[a, a] * g + t1_img.affine[a, 3]
          for a, g in enumerate(np.indices(t1.shape, sparse=True))]
    box = (mm[1] > -40) & (mm[1] < 30) & (mm[2] > -5) & (mm[2] < 40) & (tissue >= 2)
    regions = {  # candidate lesion centres (voxel indices)
        "stroke_left": np.argwhere(box & (mm[0] < -20) & (mm[0] > -50)),
        "stroke_right": np.argwhere(box & (mm[0] > 20) & (mm[0] < 50)),
        "ms": np.argwhere((np.abs(mm[0]) < 30) & (mm[1] > -45) & (mm[1] < 30) & (mm[2] > 0)
                          & (mm[2] < 35) & (wm > 0.9)),
    }
    return t1, packed, tissue > 0, wm > 0.5, regions, t1_img.affine


def _ellipsoid(mask, centre, radii):
    """Set an axis-aligned ellipsoid (voxel units) in ``mask``, in place; returns its box."""
    lo = np.maximum(np.floor(centre - radii).astype(int), 0)
    hi = np.minimum(np.ceil(centre + radii).astype(int) + 1, mask.shape)
    if np.any(hi <= lo):
        return None
    grid = np.ogrid[tuple(slice(a, b) for a, b in zip(lo, hi))]
    inside = sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii)) <= 1.0
    mask[tuple(slice(a, b) for a, b in zip(lo, hi))] |= inside
    return lo, hi


def _lesions(rng, kind, regions, shape):
    """Boolean 1 mm MNI lesion mask, its bounding box and intensity factor."""
    mask = np.zeros(shape, bool)
    boxes = []
    if kind == "stroke":
        candidates = regions[rng.choice(["stroke_left", "stroke_right"])]
        for _ in range(rng.integers(1, 4)):
            centre = candidates[rng.integers(len(candidates))].astype(float)
            for _ in range(rng.integers(4, 9)):
                boxes.append(_ellipsoid(mask, centre + rng.uniform(-8, 8, 3),
                                        rng.uniform(4, 12, 3)))
        return mask, boxes, 0.35
    if kind == "ms":
        candidates = regions["ms"]
        for _ in range(rng.integers(8, 21)):
            centre = candidates[rng.integers(len(candidates))].astype(float)
            boxes.append(_ellipsoid(mask, centre, rng.uniform(1.5, 4.0, 3)))
        return mask, boxes, 0.6
    raise ValueError(f"lesions must be 'stroke' or 'ms', got {kind!r}")


def _random_affine(rng, centre):
    """4 x 4 native-mm -> MNI-mm map: rotation, scaling and translation about ``centre``."""
    angles = np.deg2rad(rng.uniform(-5, 5, 3))
    rot = np.eye(3)
    for axis, a in enumerate(angles):
        c, s = np.cos(a), np.sin(a)
        i, j = [k for k in range(3) if k != axis]
        r = np.eye(3)
        r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
        rot = rot @ r
    lin = rot @ np.diag(rng.uniform(0.95, 1.05, 3))
    out = np.eye(4)
    out[:3, :3] = lin
    out[:3, 3] = centre - lin @ centre + rng.uniform(-6, 6, 3)
    return out


def _interp_weights(n, coarse):
    """(n, coarse) linear-interpolation weights spanning the axis end to end."""
    pos = np.linspace(0.0, coarse - 1.0, n)
    lo = np.clip(np.floor(pos).astype(int), 0, coarse - 2)
    w = np.zeros((n, coarse), np.float32)
    w[np.arange(n), lo] = 1.0 - (pos - lo)
    w[np.arange(n), lo + 1] = pos - lo
    return w


def _smooth_field(rng, shape, spacing_vox, amplitude, components):
    """Smooth random field(s): Gaussian-smoothed coarse noise, trilinearly upsampled.

    The upsampling is separable (one small matrix product per axis), much
    faster than ``ndimage.zoom`` on a full 1 mm grid.
    """
    coarse = [max(2, int(np.ceil(n / spacing_vox)) + 1) for n in shape]
    wx, wy, wz = (_interp_weights(n, c) for n, c in zip(shape, coarse))
    out = []
    for _ in range(components):
        noise = ndimage.gaussian_filter(rng.standard_normal(coarse), 1.0, mode="nearest")
        noise = (noise * amplitude / max(noise.std(), 1e-6)).astype(np.float32)
        field = np.einsum("kc,ijc->ijk", wz, np.einsum(
            "jb,ibc->ijc", wy, np.einsum("ia,abc->ibc", wx, noise)))
        out.append(np.ascontiguousarray(field))
    return out


@dataclasses.dataclass
class Phantom:
    """One synthetic subject on its native grid."""
    image: np.ndarray        # float32 T1-like intensities
    tissue: np.ndarray       # uint8 0..3
    structures: np.ndarray   # int16 aseg codes
    lesion: np.ndarray       # uint8 0/1
    affine: np.ndarray       # native voxel -> native world (RAS mm), LAS storage
    native_to_mni: np.ndarray  # 4 x 4 affine part of native world -> MNI mm

    @property
    def anatomy(self) -> np.ndarray:
        """6-class anatomy map (see module docstring)."""
        out = np.zeros(self.tissue.shape, np.uint8)
        out[self.tissue == 1], out[self.tissue == 2], out[self.tissue == 3] = 1, 2, 3
        codes = dict(zip(labels_lib.STRUCTURE_NAMES, labels_lib.STRUCTURE_CODES))
        for name, code in codes.items():
            part = name.split("-", 1)[-1]
            cls = 6 if name == "Brain-Stem" else 4 if part in _DEEP else 5
            out[self.structures == code] = cls
        return out


def synthesise(seed: int, index: int, lesions: str = "stroke", resolution: float = 1.0,
               elastic_mm: float = 2.0, bias: float = 0.15, noise: float = 0.02) -> Phantom:
    """Build subject ``index`` of the cohort with ``seed`` (independent of cohort size)."""
    rng = np.random.default_rng([seed, index])
    t1, packed, brain, wm, regions, mni_affine = _mni()
    lesion, boxes, factor = _lesions(rng, lesions, regions, t1.shape)
    lesion &= wm if lesions == "ms" else brain
    t1_mod = t1.copy()
    boxes = [b for b in boxes if b is not None]
    if boxes:  # smooth hypo-intensity, computed inside the lesions' bounding box only
        lo = np.maximum(np.min([b[0] for b in boxes], 0) - 4, 0)
        hi = np.max([b[1] for b in boxes], 0) + 4
        sl = tuple(slice(a, b) for a, b in zip(lo, hi))
        soft = ndimage.gaussian_filter(lesion[sl].astype(np.float32), 1.0)
        t1_mod[sl] *= 1.0 - (1.0 - factor) * soft
    # Native grid: the template's field of view at ``resolution`` mm, LAS order.
    extent = np.array(t1.shape) * np.abs(np.diag(mni_affine)[:3])
    shape = tuple(int(round(e / resolution)) for e in extent)
    centre = mni_affine[:3, :3] @ (np.array(t1.shape) - 1) / 2 + mni_affine[:3, 3]
    affine = np.diag([-resolution, resolution, resolution, 1.0])
    affine[:3, 3] = centre - affine[:3, :3] @ (np.array(shape) - 1) / 2
    native_to_mni = _random_affine(rng, centre)
    # Template voxel coordinates of each native voxel, plus the elastic warp.
    vox = np.linalg.inv(mni_affine) @ native_to_mni @ affine
    fields = _smooth_field(rng, shape, 20.0 / resolution, elastic_mm, 3)
    ijk = np.ogrid[tuple(slice(0, n) for n in shape)]
    coords = [sum(vox[a, b] * ijk[b] for b in range(3)) + vox[a, 3] + fields[a]
              for a in range(3)]
    code = ndimage.map_coordinates(packed + 4 * lesion.astype(np.uint8), coords, order=0,
                                   mode="constant")
    image = ndimage.map_coordinates(t1_mod, coords, order=1, mode="constant")
    image *= np.exp(_smooth_field(rng, shape, 60.0 / resolution, bias, 1)[0])
    sigma = noise * float(t1.max())
    image = np.hypot(image + rng.normal(0, sigma, shape), rng.normal(0, sigma, shape))
    struct_map = np.zeros(shape, np.int16)
    for n, c in enumerate(labels_lib.STRUCTURE_CODES, start=1):
        struct_map[code // 8 == n] = c
    return Phantom(image=(image * 1000).astype(np.float32), tissue=(code % 4).astype(np.uint8),
                   structures=struct_map, lesion=((code // 4) % 2).astype(np.uint8),
                   affine=affine, native_to_mni=native_to_mni)


def _splits(n: int, seed: int) -> list[str]:
    """Deterministic train/val/test assignment: about 70/15/15 %, val and test >= 1 when n >= 3."""
    n_test = max(1, int(round(0.15 * n))) if n >= 3 else 0
    n_val = max(1, int(round(0.15 * n))) if n >= 3 else 0
    order = np.random.default_rng(seed).permutation(n)
    out = ["train"] * n
    for rank, i in enumerate(order):
        if rank < n_test:
            out[i] = "test"
        elif rank < n_test + n_val:
            out[i] = "val"
    return out


def _save(array, affine, path, kind):
    img = nib.Nifti1Image(array, affine)
    img.header["descrip"] = DESCRIPTION
    img.header.set_xyzt_units("mm")
    img.header.set_qform(affine, code=1)
    img.header.set_sform(affine, code=1)
    if kind != "image":
        img.header["intent_name"] = b"label"
    save_nifti_atomic(img, path)


_SUFFIXES = {"image": "T1w", "label": "lesion", "tissue": "tissue", "structures": "structures",
             "brain": "brain", "anatomy": "anatomy"}


def subject_files(out_dir: str, subject_id: str) -> dict:
    """Absolute paths of a subject's files by manifest column."""
    return {k: os.path.abspath(os.path.join(out_dir, f"{subject_id}_{s}.nii.gz"))
            for k, s in _SUFFIXES.items()}


def write_subject(phantom: Phantom, out_dir: str, subject_id: str) -> dict:
    """Write one phantom's scan and label files; returns the manifest row (without split)."""
    arrays = {"image": phantom.image, "label": phantom.lesion, "tissue": phantom.tissue,
              "structures": phantom.structures, "brain": (phantom.tissue > 0).astype(np.uint8),
              "anatomy": phantom.anatomy}
    files = subject_files(out_dir, subject_id)
    write_json_atomic(os.path.join(out_dir, f"{subject_id}_truth.json"), {
        "native_to_mni_affine": phantom.native_to_mni.tolist(),
        "note": "SYNTHETIC phantom: affine part of the native-to-MNI mapping "
                "(an elastic deformation is added on top)"})
    # The T1 is written last, so its presence marks a complete subject.
    for key in [k for k in files if k != "image"] + ["image"]:
        _save(arrays[key], phantom.affine, files[key], key)
    return {"subject_id": subject_id, **files}


def make_cohort(out_dir: str, subjects: int, lesions: str = "stroke", seed: int = 0,
                resolution: float = 1.0) -> str:
    """Write a SYNTHETIC cohort and its manifest; a rerun skips finished subjects.

    Args:
      out_dir: output directory.
      subjects: number of subjects.
      lesions: ``stroke`` or ``ms``.
      seed: cohort seed; subject i depends only on (seed, i, lesions, resolution).
      resolution: native voxel size in mm.

    Returns:
      Path of ``synthetic_manifest.csv`` (columns ``MANIFEST_COLUMNS``, absolute paths).
    """
    import pandas as pd
    if lesions not in ("stroke", "ms"):
        raise FlagError(f"lesions must be 'stroke' or 'ms', got {lesions!r}")
    if subjects < 1:
        raise FlagError(f"subjects must be >= 1, got {subjects}")
    os.makedirs(out_dir, exist_ok=True)
    splits = _splits(subjects, seed)
    rows = []
    for i in tqdm(range(subjects), desc="synthetic subjects", unit="subject"):
        sid = f"synthetic{i:03d}"
        if os.path.exists(subject_files(out_dir, sid)["image"]):
            row = {"subject_id": sid, **subject_files(out_dir, sid)}
        else:
            row = write_subject(synthesise(seed, i, lesions, resolution), out_dir, sid)
        rows.append({**row, "split": splits[i]})
    mapping = pd.DataFrame({"label": range(1, 7), "class": range(1, 7),
                            "name": ANATOMY_CLASSES[1:]})
    write_csv_atomic(os.path.join(out_dir, "anatomy_mapping.csv"), mapping)
    write_text_atomic(os.path.join(out_dir, "SYNTHETIC_README.txt"), (
        "SYNTHETIC phantom cohort generated by tfrecords_tools.phantoms from the MNI152 2009 "
        f"template shipped with nilearn (seed {seed}, lesions {lesions}, {resolution} mm).\n"
        "Not patient data; for tests, benchmarks and the quickstart only.\n"))
    path = os.path.join(out_dir, MANIFEST_NAME)
    write_csv_atomic(path, pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS)))
    return path
