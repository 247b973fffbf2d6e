"""Label generation: FAST tissue, fallback tissue, presence vectors, mapping tables."""
import numpy as np
import pytest

from tfrecords_tools.scans import labels as labels_lib, registration as reg


def test_presence_order_and_values():
    assert len(labels_lib.PRESENCE_LABELS) == 16 and labels_lib.PRESENCE_LABELS[0] == "Brain"
    assert labels_lib.STRUCTURE_CODES == (10, 11, 12, 13, 16, 17, 18, 26, 49, 50, 51, 52, 53,
                                          54, 58)
    structures = np.zeros((4, 4, 3), np.int16)
    structures[1, 1, 0], structures[2, 2, 2] = 16, 58
    brain = np.zeros((4, 4, 3), bool)
    brain[:, :, :2] = True
    out = labels_lib.presence(structures, brain)
    assert out.shape == (3, 16) and out.dtype == np.float32
    expected = np.zeros((3, 16), np.float32)
    expected[:2, 0] = 1
    expected[0, 1 + labels_lib.STRUCTURE_CODES.index(16)] = 1
    expected[2, 1 + labels_lib.STRUCTURE_CODES.index(58)] = 1
    np.testing.assert_array_equal(out, expected)


def test_tissue_from_fast_rejects_other_codes():
    seg = np.array([[0, 1], [2, 3]])
    np.testing.assert_array_equal(labels_lib.tissue_from_fast(seg), seg)
    with pytest.raises(ValueError, match="outside 0..3"):
        labels_lib.tissue_from_fast(np.array([0, 4]))


def test_fallback_tissue_orders_csf_gm_wm_by_intensity():
    rng = np.random.default_rng(0)
    truth = rng.integers(1, 4, (20, 20, 20))
    image = np.choose(truth - 1, [0.2, 0.5, 0.8]) + rng.normal(0, 0.02, truth.shape)
    brain = np.ones(truth.shape, bool)
    brain[:2] = False
    out = labels_lib.fallback_tissue(image, brain)
    assert (out[:2] == 0).all()
    assert np.mean(out[brain] == truth[brain]) > 0.99
    mask = labels_lib.fallback_brain(np.where(brain, image, 0.0), brain)
    np.testing.assert_array_equal(mask, brain)


def test_structure_atlas_lies_in_the_template_brain():
    tpl = reg.template_image(4.0)
    brain = reg.template_brain_mask(4.0)
    atlas = labels_lib.paint_structures(tpl.shape, tpl.affine)
    assert set(np.unique(atlas)) - {0} == set(labels_lib.STRUCTURE_CODES)
    assert np.mean(brain[atlas > 0]) > 0.95
    # Left structures (codes < 40) on the left (x < 0), right ones on the right.
    x = (np.argwhere(atlas > 0) @ tpl.affine[:3, :3].T + tpl.affine[:3, 3])[:, 0]
    codes = atlas[atlas > 0]
    assert (x[(codes < 40) & (codes != 16)] < 0).all() and (x[codes > 40] > 0).all()


def test_read_label_mapping(tmp_path):
    path = tmp_path / "map.csv"
    path.write_text("label,class,name\n4,1,CSF\n43,2,WM\n44,2,\n")
    mapping, names = labels_lib.read_label_mapping(str(path))
    assert mapping == {4: 1, 43: 2, 44: 2} and names == ("background", "CSF", "WM")
    volume = np.array([0, 4, 43, 44, 99])
    np.testing.assert_array_equal(labels_lib.map_labels(volume, mapping), [0, 1, 2, 2, 0])
    np.testing.assert_array_equal(labels_lib.binary_mask([volume, volume[::-1]]),
                                  [1, 1, 1, 1, 1])
    (tmp_path / "bad.csv").write_text("label,klass\n1,2\n")
    with pytest.raises(ValueError, match="label,class"):
        labels_lib.read_label_mapping(str(tmp_path / "bad.csv"))
    (tmp_path / "bad2.csv").write_text("label,class\n1,x\n")
    with pytest.raises(ValueError, match="line 2"):
        labels_lib.read_label_mapping(str(tmp_path / "bad2.csv"))
