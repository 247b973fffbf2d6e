"""Registration: recovery of a known affine, determinism, geometry and transform I/O."""
import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from tfrecords_tools import phantoms
from tfrecords_tools import registration as reg


def _register_phantom(resolution, seed=3):
    """Register a phantom moved by a known affine (no elastic part); returns (R, truth)."""
    ph = phantoms.synthesise(seed, 0, "stroke", resolution, elastic_mm=0.0)
    ras = nib.as_closest_canonical(nib.Nifti1Image(ph.image, ph.affine))
    moving = reg.to_sitk(np.asarray(ras.dataobj, np.float32), ras.affine)
    tx = reg.register(reg.template_reference(resolution), moving)
    return reg.ras_matrix(tx), np.linalg.inv(ph.native_to_mni)


def test_known_affine_is_recovered_within_1mm():
    # The real grid (1 mm, 197 x 233 x 189); about 10 s on 2 cores.
    resolution = 1.0
    recovered, truth = _register_phantom(resolution)
    assert not np.allclose(truth, np.eye(4), atol=0.5)  # the scan really was moved
    brain = reg.template_brain_mask(resolution)
    points = np.c_[np.argwhere(brain), np.ones(brain.sum())] @ reg.template_image(
        resolution).affine.T
    displacement = np.linalg.norm((points @ recovered.T - points @ truth.T)[:, :3], axis=1)
    assert displacement.mean() < 1.0, displacement.mean()


def test_registration_is_repeatable():
    a, _ = _register_phantom(4.0, seed=4)
    b, _ = _register_phantom(4.0, seed=4)
    np.testing.assert_array_equal(a, b)


def test_to_sitk_matches_nibabel_geometry():
    affine = np.array([[-2.0, 0, 0, 50], [0, 0, 3, -20], [0, 2.5, 0, 10], [0, 0, 0, 1]])
    data = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    image = reg.to_sitk(data, affine)
    assert image.GetSize() == (4, 5, 6)
    index = (3, 1, 4)
    lps = np.array(image.TransformIndexToPhysicalPoint(index))
    np.testing.assert_allclose(lps * [-1, -1, 1], (affine @ (index + (1,)))[:3])
    assert image[index] == data[index]
    np.testing.assert_array_equal(reg.from_sitk(image), data)


def test_transform_file_round_trip(tmp_path):
    tx = sitk.AffineTransform(3)
    tx.SetMatrix((1.02, 0.01, 0, -0.01, 0.98, 0.02, 0, 0.03, 1.0))
    tx.SetTranslation((1.5, -2.0, 3.0))
    tx.SetCenter((10.0, 0.0, -5.0))
    path = str(tmp_path / "t" / "s.tfm")
    reg.write_transform(tx, path)
    np.testing.assert_allclose(reg.ras_matrix(reg.read_transform(path)), reg.ras_matrix(tx))
    assert sorted(p.name for p in (tmp_path / "t").iterdir()) == ["s.tfm"]


def test_template_grids():
    assert reg.template_image(1.0).shape == (197, 233, 189)
    assert reg.template_image(4.0).shape == (50, 59, 48)
    with pytest.raises(ValueError):
        reg.template_image(1.5)
