"""The typed run records: export/model.json (ExportMeta) and result.json
(FinetuneResult): round trips, files of earlier versions, errors naming file and key."""
import json
import math
import os

import pytest

from tl_keras.models.export import EXPORT_DIR, META_FILE, ExportMeta, read_exported_meta
from tl_keras.training.results import FinetuneResult, read_finetune_result
from tl_common.records import RecordError

# export/model.json exactly as fine-tuning wrote it before the key became init_from.
OLD_MODEL_JSON = {
    "class_names": ["background", "lesion"], "data_dir": "/data/atlas",
    "dataset_meta": {"image_size": [64, 64], "channels": 1, "num_mask_classes": 2,
                     "num_tissue_classes": 4, "splits": {
                         "train": {"subjects": ["a"], "slices": 20, "shards": 1}}},
    "image_size": [64, 64], "init": "runs/pre/encoder_best", "input_channels": 3,
    "num_classes": 2, "seed": 0, "source_domain": "t1", "source_label": "t1 segmentation",
    "source_task": "segmentation", "subset_seed": 3, "target": "stroke", "train_subjects": 8}

# result.json of an evaluated fine-tuning run as earlier versions wrote it.
OLD_RESULT_JSON = {
    "eval_dir": "runs/ft/eval_test", "final_loss": 0.25, "final_val_loss": 0.5,
    "init_from": "scratch", "seed": 0, "source_domain": None, "source_label": "scratch",
    "source_task": None, "steps": 400, "subset_seed": 1, "target": "stroke",
    "test_dice": 0.61, "test_include_background": False, "test_seed": 0,
    "test_volume_dice": float("nan"), "train_slices": 96, "train_subjects": 4}


# The fields a record of an earlier version is read with: the paper's fine-tuning mode, and
# no recorded precision choice.
PAPER_MODE = {"freeze_encoder": False, "freeze_epochs": 0, "encoder_lr_multiplier": 1.0,
              "init_decoder": False, "precision": None}


def _write_model_json(model_dir, data):
    os.makedirs(os.path.join(model_dir, EXPORT_DIR))
    path = os.path.join(model_dir, EXPORT_DIR, META_FILE)
    with open(path, "w") as f:
        json.dump(data, f)
    return path


def test_export_meta_of_an_earlier_version_loads_with_init_from(tmp_path):
    _write_model_json(str(tmp_path), OLD_MODEL_JSON)
    meta = read_exported_meta(str(tmp_path))
    assert meta.init_from == "runs/pre/encoder_best"
    assert meta.image_size == (64, 64) and meta.num_classes == 2 and meta.subset_seed == 3
    written = meta.to_dict()
    assert "init" not in written and written["init_from"] == "runs/pre/encoder_best"
    assert ExportMeta.from_dict(written) == meta


def test_export_meta_normalises_old_shorthands():
    meta = ExportMeta.from_dict({"image_size": 32, "input_channels": 1, "num_classes": 2,
                                 "train_subjects": ["s1", "s2", "s3"], "class_names": None})
    assert (meta.image_size, meta.train_subjects, meta.class_names) == ((32, 32), 3, ())
    assert meta.dataset_meta is None and meta.init_from is None


@pytest.mark.parametrize("change, message", [
    ({"num_classes": None}, "key 'num_classes' = None: expected an integer"),
    ({"input_channels": "3"}, "key 'input_channels' = '3': expected an integer"),
    ({"image_size": [64, 64, 1]}, "key 'image_size'"),
    ({"modality": "t1"}, "unknown key(s) ['modality']"),
    ({"init_from": "scratch"}, "has both 'init' (the old name) and 'init_from'"),
    ({"dataset_meta": {"image_size": [64, 64]}}, "key 'dataset_meta': missing key 'channels'"),
])
def test_bad_model_json_names_file_and_key(tmp_path, change, message):
    path = _write_model_json(str(tmp_path), {**OLD_MODEL_JSON, **change})
    with pytest.raises(RecordError) as info:
        read_exported_meta(str(tmp_path))
    assert str(info.value).startswith(f"{path}: ") and message in str(info.value)


def test_missing_and_damaged_model_json(tmp_path):
    data = dict(OLD_MODEL_JSON)
    del data["num_classes"]
    path = _write_model_json(str(tmp_path / "a"), data)
    with pytest.raises(RecordError, match="missing key 'num_classes'") as info:
        read_exported_meta(str(tmp_path / "a"))
    assert path in str(info.value)
    path = _write_model_json(str(tmp_path / "b"), {})
    open(path, "w").write('{"image_size": [64,')
    with pytest.raises(RecordError, match="not valid JSON") as info:
        read_exported_meta(str(tmp_path / "b"))
    assert path in str(info.value)


def test_result_of_an_earlier_version_round_trips(tmp_path):
    path = tmp_path / "result.json"
    path.write_text(json.dumps(OLD_RESULT_JSON))
    result = read_finetune_result(str(tmp_path))
    assert result.evaluated and result.test["dice"] == 0.61 and result.final["loss"] == 0.25
    assert result.test["include_background"] is False and math.isnan(result.test["volume_dice"])
    out = result.to_dict()
    assert set(out) == set(OLD_RESULT_JSON) | set(PAPER_MODE)  # read as the paper's mode
    assert {k: v for k, v in out.items() if k != "test_volume_dice"} == {
        k: v for k, v in {**OLD_RESULT_JSON, **PAPER_MODE}.items() if k != "test_volume_dice"}
    assert read_finetune_result(str(tmp_path / "none")) is None


def test_result_without_evaluation_and_with_it():
    plain = {k: v for k, v in OLD_RESULT_JSON.items()
             if not k.startswith("test_") and k != "eval_dir"}
    result = FinetuneResult.from_dict(plain)
    assert not result.evaluated and result.to_dict() == {**plain, **PAPER_MODE}
    evaluated = result.with_evaluation("runs/x/eval_test",
                                       {"dice": 0.5, "target": "stroke", "seed": 0})
    assert evaluated.evaluated and evaluated.test == {"dice": 0.5, "seed": 0}
    assert evaluated.to_dict()["test_dice"] == 0.5 and "test_target" not in evaluated.to_dict()


@pytest.mark.parametrize("change, message", [
    ({"steps": None}, "key 'steps' = None: expected an integer"),
    ({"test_dice": "high"}, "key 'test_dice' = 'high': expected a number"),
    ({"predictions": "p.npz"}, "unknown key(s) ['predictions']"),
])
def test_bad_result_json_names_file_and_key(tmp_path, change, message):
    (tmp_path / "result.json").write_text(json.dumps({**OLD_RESULT_JSON, **change}))
    with pytest.raises(RecordError) as info:
        read_finetune_result(str(tmp_path))
    assert str(info.value).startswith(f"{tmp_path / 'result.json'}: ")
    assert message in str(info.value)


def test_result_missing_key(tmp_path):
    data = dict(OLD_RESULT_JSON)
    del data["train_subjects"]
    with pytest.raises(RecordError, match="result.json: missing key 'train_subjects'"):
        FinetuneResult.from_dict(data)
