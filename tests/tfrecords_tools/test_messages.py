"""Error messages that say what differs (docs/reliability.md, "One line")."""
import nibabel as nib
import numpy as np

from tfrecords_tools.scans.preprocess import grid_difference


def test_affine_mismatch_names_the_difference_not_two_equal_shapes():
    image = nib.Nifti1Image(np.zeros((4, 5, 6), np.float32), np.diag([1.0, 1.0, 1.0, 1.0]))
    shifted = np.diag([1.0, 1.0, 1.0, 1.0])
    shifted[:3, 3] = (0.0, 2.5, 0.0)
    label = nib.Nifti1Image(np.zeros((4, 5, 6), np.uint8), shifted)
    assert grid_difference(label, image) == (
        "same shape (4, 5, 6) but affines differ by up to 2.5 mm (voxel 1 x 1 x 1 mm, origin "
        "(0.00, 2.50, 0.00) vs voxel 1 x 1 x 1 mm, origin (0.00, 0.00, 0.00))")
    other = nib.Nifti1Image(np.zeros((4, 5, 7), np.uint8), image.affine)
    assert grid_difference(other, image) == "shape (4, 5, 7) vs (4, 5, 6)"
    assert grid_difference(nib.Nifti1Image(np.zeros((4, 5, 6)), image.affine), image) == ""
