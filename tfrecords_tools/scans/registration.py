"""Affine registration to the MNI152 2009 template (SimpleITK) and grid helpers.

Geometry convention: nibabel affines map voxel indices (i, j, k) to RAS+
millimetres; SimpleITK works in LPS millimetres. ``to_sitk`` converts, so every
transform here maps a *template* (fixed) point to the corresponding *native*
(moving) point, both in LPS -- ITK's convention for resampling a moving image
onto a fixed grid. Its inverse maps template-grid predictions back to native.
"""
from __future__ import annotations

import errno
import functools
import itertools
import os

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from tfrecords_tools.errors import itk_reason
from tl_common.cli import FlagError

_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])


def _whole_mm(resolution: float) -> int:
    if float(resolution) != int(resolution) or resolution < 1:
        raise FlagError(f"template resolution must be a whole number of mm >= 1, "
                         f"got {resolution}")
    return int(resolution)


@functools.lru_cache(maxsize=4)
def template_image(resolution: float) -> nib.Nifti1Image:
    """The MNI-ICBM152 2009 T1 template nilearn ships, on a ``resolution`` mm grid.

    1 mm gives 197 x 233 x 189; nilearn resamples it for other resolutions
    (2 mm: 99 x 117 x 95, 3 mm: 67 x 79 x 64, 4 mm: 50 x 59 x 48). Package data
    only: nothing is downloaded. nilearn accepts whole millimetres only.
    """
    from nilearn import datasets
    img = datasets.load_mni152_template(resolution=_whole_mm(resolution))
    return nib.Nifti1Image(np.asarray(img.get_fdata(), np.float32), img.affine)


@functools.lru_cache(maxsize=4)
def template_brain_mask(resolution: float) -> np.ndarray:
    """Boolean brain mask of the template on the same grid as ``template_image``."""
    from nilearn import datasets
    img = datasets.load_mni152_brain_mask(resolution=_whole_mm(resolution))
    mask = np.asarray(img.get_fdata()) > 0.5
    mask.setflags(write=False)
    return mask


def to_sitk(array: np.ndarray, affine: np.ndarray) -> sitk.Image:
    """A SimpleITK image of a (i, j, k[, c]) array with a nibabel (RAS) affine.

    A 4th axis becomes vector components (resampled together in one pass). A
    sheared affine is orthonormalised (polar decomposition), since ITK images
    carry a pure rotation; the same geometry is used in both directions, so the
    round trip stays consistent.
    """
    array = np.asarray(array)
    axes = (2, 1, 0) + tuple(range(3, array.ndim))
    return image_from_kji(array.transpose(axes), affine, vector=array.ndim == 4)


def image_from_kji(array_kji: np.ndarray, affine: np.ndarray, vector: bool = False):
    """Like ``to_sitk`` for an array already in SimpleITK's (k, j, i) order (no transpose)."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(array_kji), isVector=vector)
    matrix = _RAS_TO_LPS @ np.asarray(affine, np.float64)[:3, :3]
    spacing = np.linalg.norm(matrix, axis=0)
    u, _, vt = np.linalg.svd(matrix / spacing)
    image.SetSpacing(spacing.tolist())
    image.SetDirection((u @ vt).ravel().tolist())
    image.SetOrigin((_RAS_TO_LPS @ np.asarray(affine, np.float64)[:3, 3]).tolist())
    return image


def from_sitk(image: sitk.Image) -> np.ndarray:
    """The (i, j, k[, c]) array of a SimpleITK image (inverse of ``to_sitk``'s layout).

    A transposed view of a contiguous copy: axial slices stay contiguous in
    memory, and no second, strided copy is made.
    """
    array = sitk.GetArrayFromImage(image)
    return array.transpose((2, 1, 0) + tuple(range(3, array.ndim)))


def template_reference(resolution: float) -> sitk.Image:
    """The template as a float32 SimpleITK image (fixed image and output grid)."""
    tpl = template_image(resolution)
    return to_sitk(tpl.get_fdata(dtype=np.float32), tpl.affine)


def _optimise(fixed, moving, transform, *, levels, iterations, sampling, bins, seed):
    """One registration stage, optimising ``transform`` in place."""
    spacing = min(fixed.GetSpacing())
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=bins)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    # SimpleITK reads seed 0 as "wall clock" (sitkWallClock): shift to stay fixed.
    reg.SetMetricSamplingPercentage(sampling, int(seed) + 1)
    reg.SetInterpolator(sitk.sitkLinear)
    # Gradients at the sampled points only, not of whole images at every level.
    reg.SetMetricUseFixedImageGradientFilter(False)
    reg.SetMetricUseMovingImageGradientFilter(False)
    reg.SetOptimizerAsRegularStepGradientDescent(
        learningRate=2.0, minStep=1e-3, numberOfIterations=iterations,
        relaxationFactor=0.5, gradientMagnitudeTolerance=1e-8)
    reg.SetOptimizerScalesFromPhysicalShift()
    # Levels are target voxel sizes in mm, so a 4 mm grid is not shrunk to 16 mm.
    reg.SetShrinkFactorsPerLevel([max(1, int(round(lv / spacing))) for lv in levels])
    reg.SetSmoothingSigmasPerLevel([lv / 2.0 for lv in levels])
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    reg.SetInitialTransform(transform, inPlace=True)
    reg.Execute(fixed, moving)
    return transform


def _float32(image: sitk.Image) -> sitk.Image:
    if image.GetPixelID() == sitk.sitkFloat32:
        return image
    return sitk.Cast(image, sitk.sitkFloat32)


def _bin_shrink(image: sitk.Image, voxel_mm: float) -> sitk.Image:
    """Block-average ``image`` to voxels of about ``voxel_mm`` (no-op if already coarse)."""
    factors = [max(1, int(voxel_mm / sp + 1e-6)) for sp in image.GetSpacing()]
    return sitk.BinShrink(image, factors) if max(factors) > 1 else image


def register(fixed: sitk.Image, moving: sitk.Image, *, levels=(8.0, 4.0, 2.0),
             iterations: int = 100, sampling: float = 0.05, bins: int = 32,
             seed: int = 0, threads: int = 1) -> sitk.AffineTransform:
    """Rigid (Euler3D), then affine, Mattes-MI registration of ``moving`` to ``fixed``.

    Args:
      fixed: template image (output grid).
      moving: native scan, RAS-reoriented, as produced by ``to_sitk``.
      levels: multi-resolution pyramid as voxel sizes in mm (coarse to fine);
        each level's smoothing sigma is half of it (physical units).
      iterations: maximum optimiser iterations per level and stage.
      sampling: fraction of fixed voxels sampled (random, seeded) for the metric.
      bins: Mattes mutual-information histogram bins.
      seed: metric sampling seed; with a fixed thread count the result is repeatable.
      threads: SimpleITK threads during the registration (1: bit-for-bit
        repeatable; more vary by ~1e-5 mm through threaded metric sums).

    Returns:
      The affine transform mapping template points to native points (LPS).
    """
    previous = sitk.ProcessObject_GetGlobalDefaultNumberOfThreads()
    # ITK's metric threads follow the global default only; restored afterwards so
    # resampling (exact for any thread count) keeps every core.
    sitk.ProcessObject_SetGlobalDefaultNumberOfThreads(int(threads))
    try:
        return _register(fixed, moving, levels=levels, iterations=iterations,
                         sampling=sampling, bins=bins, seed=seed)
    finally:
        sitk.ProcessObject_SetGlobalDefaultNumberOfThreads(previous)


# Start rotations tried about each axis (degrees): a head tilted by up to ~45 degrees
# in world space (a wrong or missing header rotation) still lands in the right basin.
START_ANGLES_DEG = (-30.0, 0.0, 30.0)


def _best_start(fixed, moving, rigid, *, level_mm, bins) -> None:
    """Set ``rigid``'s rotation to the best of a grid of start rotations (in place).

    The centres-of-mass alignment (MOMENTS) fixes the translation but no rotation;
    a gradient descent from the identity then stalls in a wrong minimum for heads
    rotated by ~20 degrees or more. The Mattes metric of each of the 27 start
    rotations is evaluated on images block-averaged to ``level_mm`` (a few
    milliseconds each), and the best one starts the optimisation.
    """
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=bins)
    reg.SetInterpolator(sitk.sitkLinear)
    small_fixed, small_moving = _bin_shrink(fixed, level_mm), _bin_shrink(moving, level_mm)
    best = None
    for angles in itertools.product(np.deg2rad(START_ANGLES_DEG), repeat=3):
        candidate = sitk.Euler3DTransform(rigid)
        candidate.SetRotation(*angles)
        reg.SetInitialTransform(candidate)
        value = reg.MetricEvaluate(small_fixed, small_moving)
        if best is None or value < best[0]:
            best = (value, angles)
    rigid.SetRotation(*best[1])


def _register(fixed, moving, *, levels, **opts):
    """Rigid then affine stages (see ``register``)."""
    # Nothing finer than the finest level is used: block-average both images to
    # it once, instead of smoothing full-resolution images at every level.
    fixed = _bin_shrink(_float32(fixed), min(levels))
    moving = _bin_shrink(_float32(moving), min(levels))
    rigid = sitk.Euler3DTransform(sitk.CenteredTransformInitializer(
        fixed, moving, sitk.Euler3DTransform(),
        sitk.CenteredTransformInitializerFilter.MOMENTS))
    _best_start(fixed, moving, rigid, level_mm=max(levels), bins=opts["bins"])
    opts["levels"] = levels
    _optimise(fixed, moving, rigid, **opts)
    affine = sitk.AffineTransform(3)
    affine.SetCenter(rigid.GetCenter())
    affine.SetMatrix(rigid.GetMatrix())
    affine.SetTranslation(rigid.GetTranslation())
    # The affine stage refines the rigid result: only the finer levels are needed.
    return _optimise(fixed, moving, affine, **{**opts, "levels": tuple(levels)[-2:]})


def identity_transform() -> sitk.AffineTransform:
    """The transform used when registration is skipped (data already in MNI space)."""
    return sitk.AffineTransform(3)


def resample(image: sitk.Image, reference: sitk.Image, transform: sitk.Transform, *,
             nearest: bool = False, default: float = 0.0) -> np.ndarray:
    """Resample ``image`` onto ``reference``'s grid; returns the (i, j, k) array.

    ``transform`` maps reference points to ``image`` points. Linear
    interpolation for intensities and probabilities, nearest for labels.
    """
    interp = sitk.sitkNearestNeighbor if nearest else sitk.sitkLinear
    out = sitk.Resample(image, reference, transform, interp, float(default),
                        image.GetPixelID())
    return from_sitk(out)


def as_affine(transform: sitk.Transform) -> sitk.AffineTransform:
    """Downcast a transform read from a file to an ``AffineTransform``."""
    if isinstance(transform, sitk.AffineTransform):
        return transform
    return sitk.AffineTransform(transform.Downcast())


def write_atomic(path: str, write) -> None:
    """Call ``write(tmp)`` on a temporary name with ``path``'s extension, then rename.

    Unlike ``tl_common.io.atomic_path`` the temporary name keeps the
    extension, which SimpleITK and nibabel use to pick the file format.
    """
    directory, name = os.path.split(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".tmp-{os.getpid()}-{name}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as e:  # name the file asked for, not the temporary one
        if e.filename not in (None, tmp):
            raise
        raise OSError(e.errno, e.strerror or str(e), path) from None
    except RuntimeError as e:  # SimpleITK's writers
        reason = itk_reason(e).replace(tmp, path).replace(os.path.basename(tmp), name)
        raise OSError(errno.EIO, f"cannot write the file ({reason})", path) from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_transform(transform: sitk.Transform, path: str) -> None:
    """Write a ``.tfm`` atomically."""
    write_atomic(path, lambda tmp: sitk.WriteTransform(transform, tmp))


def read_transform(path: str) -> sitk.AffineTransform:
    """Read a transform written by ``write_transform``."""
    return as_affine(sitk.ReadTransform(path))


def ras_matrix(transform: sitk.Transform) -> np.ndarray:
    """The 4 x 4 RAS matrix of an affine (LPS) transform: template mm -> native mm."""
    tx = as_affine(transform)
    m = np.asarray(tx.GetMatrix()).reshape(3, 3)
    c = np.asarray(tx.GetCenter())
    b = c + np.asarray(tx.GetTranslation()) - m @ c
    out = np.eye(4)
    out[:3, :3] = _RAS_TO_LPS @ m @ _RAS_TO_LPS
    out[:3, 3] = _RAS_TO_LPS @ b
    return out


@functools.lru_cache(maxsize=4)
def _brain_points(resolution: float) -> np.ndarray:
    """Homogeneous mm coordinates of a regular subsample of the template brain."""
    brain = np.argwhere(template_brain_mask(resolution))[::50]
    return np.c_[brain, np.ones(len(brain))] @ template_image(resolution).affine.T


def fov_coverage(transform: sitk.Transform, shape, affine, resolution: float) -> float:
    """Fraction of the template brain that maps inside a scan's field of view.

    Args:
      transform: template -> scan transform (LPS).
      shape: the scan's (RAS) grid shape.
      affine: the scan's (RAS) voxel-to-mm affine.
      resolution: template grid resolution in mm.
    """
    points = _brain_points(resolution)
    voxels = (points @ ras_matrix(transform).T) @ np.linalg.inv(affine).T
    inside = np.all((voxels[:, :3] > -0.5) & (voxels[:, :3] < np.array(shape[:3]) - 0.5), axis=1)
    return float(inside.mean()) if len(inside) else 0.0


def voxel_index_kji(shape, affine) -> np.ndarray:
    """1-based Fortran-order voxel indices of a file, laid out on its RAS grid in (k, j, i).

    Resampled (nearest) like an image, this tells for every output voxel which
    voxel of the original file it comes from (0: outside), so several label
    files share one resampling. Built in one broadcast pass, already in
    SimpleITK's (k, j, i) layout (see ``image_from_kji``).
    """
    ornt = nib.orientations.io_orientation(affine)  # original axis -> (RAS axis, flip)
    strides = np.cumprod((1,) + tuple(shape[:2]))
    ras_shape, coef, const = [0, 0, 0], [0, 0, 0], 1
    for axis, (ras_axis, flip) in enumerate(ornt.astype(int)):
        ras_shape[ras_axis] = shape[axis]
        coef[ras_axis] = int(strides[axis]) * flip
        if flip < 0:
            const += int(strides[axis]) * (shape[axis] - 1)
    dtype = np.int32 if np.prod(shape) < 2 ** 31 - 1 else np.int64
    k, j, i = np.ogrid[:ras_shape[2], :ras_shape[1], :ras_shape[0]]
    return (const + coef[2] * k.astype(dtype) + coef[1] * j.astype(dtype)
            + coef[0] * i.astype(dtype))
