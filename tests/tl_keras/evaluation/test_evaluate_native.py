"""evaluate --space native: the volume metrics on each scan's own grid and label files."""
import json
import os

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from tests.helpers import export_threshold_model, make_mni_cohort, mni_cohort_config


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    from tfrecords_tools.conversion import pipeline
    root = tmp_path_factory.mktemp("native_eval")
    manifest = make_mni_cohort(str(root / "scans"), n=2)
    config = mni_cohort_config()
    pipeline.convert(manifest, str(root / "data"), config, num_shards=1, progress=False)
    model = root / "model"
    export_threshold_model(model, size=config.slice_size,
                           dataset_meta={"preprocessing": config.to_dict(), "channels": 1})
    return root, str(model)


def test_native_space_scores_the_scans_own_labels(converted, tmp_path):
    from tl_keras.evaluation.evaluate import EvalConfig, evaluate_model_dir
    root, model = converted
    data = str(root / "data")
    tables = {space: evaluate_model_dir(model, data, "test", str(tmp_path / space),
                                        EvalConfig(verbose=False, num_examples=0, space=space))
              for space in ("template", "native")}
    native, template = (tables[s]["per_subject"].iloc[0] for s in ("native", "template"))
    row = pd.read_csv(os.path.join(data, "subjects.csv")).query("split == 'test'").iloc[0]
    masks = json.loads(row["label_files"])["mask"]
    voxels = np.count_nonzero(sum(np.asarray(nib.load(m).dataobj) for m in masks))
    assert native["voxel_volume_ml"] == pytest.approx(0.064)  # 4 mm voxels
    assert native["gt_volume_ml"] == pytest.approx(voxels * 0.064)  # the label files, all of them
    # The cohort is on the MNI grid (identity transform): the prediction maps back exactly,
    # the cropped slices add nothing.
    assert native["pred_volume_ml"] == pytest.approx(template["pred_volume_ml"])
    assert native["gt_volume_ml"] >= template["gt_volume_ml"] > 0
    assert tables["native"]["summary"].iloc[0]["space"] == "native"
    assert tables["template"]["summary"].iloc[0]["space"] == "template"
    # Per-slice scores are those of the slices the network saw, in both spaces.
    np.testing.assert_array_equal(tables["native"]["per_slice"]["dice"],
                                  tables["template"]["per_slice"]["dice"])


def test_native_space_needs_the_conversions_records(tiny_data_dir, tmp_path):
    from tl_keras.evaluation.evaluate import EvalConfig, evaluate_model_dir
    from tl_keras.evaluation.native import NativeSpaceError
    export_threshold_model(tmp_path / "m")
    with pytest.raises(NativeSpaceError, match="subjects.csv: missing; --space native needs"):
        evaluate_model_dir(str(tmp_path / "m"), tiny_data_dir, "test", str(tmp_path / "e"),
                           EvalConfig(verbose=False, space="native"))
    assert not (tmp_path / "e").exists()
