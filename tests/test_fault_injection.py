"""Fault injection: every CLI against a table of bad inputs (missing, truncated, wrong
type, output equal to an input, read-only target). Each case must exit with status 1,
print one line ``prog: error: ...`` naming the file, and leave no output behind
(docs/reliability.md). CLIs run in this process through their ``main(argv)``; the
read-only cases run in a subprocess with a read-only bind mount."""
import importlib
import os
import re
import shutil

import pytest

from tests.helpers import (export_threshold_model, make_tiny_dataset, needs_mount,
                           read_only_error_lines, touch_nifti)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Inputs for every CLI: a data set, an exported model, scans, a manifest, images."""
    root = tmp_path_factory.mktemp("faults")
    data = root / "data"
    make_tiny_dataset(str(data), splits={"train": 2, "test": 1})
    truncated_data = root / "truncated_data"
    shutil.copytree(data, truncated_data)
    meta = truncated_data / "dataset.json"
    meta.write_bytes(meta.read_bytes()[:40])
    model = root / "model"
    export_threshold_model(model)
    from tfrecords_tools.scans.config import PreprocessConfig
    config = PreprocessConfig.for_resolution(4.0)  # a model predict can use
    export_threshold_model(root / "predict_model", size=config.slice_size,
                           dataset_meta={"preprocessing": config.to_dict(), "channels": 1})
    truncated_model = root / "truncated_model"
    shutil.copytree(model, truncated_model)
    (truncated_model / "export" / "model.json").write_text('{"image_size": [3')
    touch_nifti(root, "scans/truncated.nii.gz")
    (root / "scans" / "m.csv").write_text("subject_id,image\ns1,truncated.nii.gz\n")
    (root / "images").mkdir()
    (root / "images" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (root / "a_file").write_text("not a folder")
    (root / "encoder").mkdir()
    (root / "encoder" / "encoder.json").write_text("{")
    from tl_keras.evaluation.evaluate import EvalConfig, evaluate_model_dir
    evaluate_model_dir(str(model), str(data), "test", str(root / "eval"),
                       EvalConfig(verbose=False, num_examples=0))
    return root


# (case id, module, argv (``{w}`` = the world folder, ``{o}`` = this case's output),
#  text the error line must contain, paths (relative to the world) that must not exist).
CASES = [
    ("convert-missing-manifest", "tfrecords_tools.convert",
     ["--manifest={w}/nope.csv", "--out_dir={o}"], "{w}/nope.csv", ["{o}"]),
    ("convert-truncated-scan", "tfrecords_tools.convert",
     ["--manifest={w}/scans/m.csv", "--out_dir={o}", "--skip_registration", "--noprogress"],
     "{w}/scans/truncated.nii.gz", ["{o}/dataset.json", "{o}/train-00000-of-00001.tfrecord"]),
    ("convert-out-dir-is-input-folder", "tfrecords_tools.convert",
     ["--manifest={w}/scans/m.csv", "--out_dir={w}/scans"], "{w}/scans",
     ["{w}/scans/convert.json", "{w}/scans/.lock"]),
    ("convert-out-dir-is-a-file", "tfrecords_tools.convert",
     ["--manifest={w}/scans/m.csv", "--out_dir={w}/a_file"], "{w}/a_file", []),
    ("convert_images-missing-dir", "tfrecords_tools.convert_images",
     ["--image_dir={w}/no_images", "--out_dir={o}"], "{w}/no_images", ["{o}"]),
    ("convert_images-truncated-image", "tfrecords_tools.convert_images",
     ["--image_dir={w}/images", "--out_dir={o}", "--splits=train=1", "--noprogress"],
     "{w}/images/broken.png",
     ["{o}/dataset.json"]),
    ("convert_images-out-dir-is-input", "tfrecords_tools.convert_images",
     ["--image_dir={w}/images", "--out_dir={w}/images"], "{w}/images",
     ["{w}/images/.lock", "{w}/images/dataset.json"]),
    ("phantoms-out-dir-is-a-file", "tfrecords_tools.phantoms",
     ["--out_dir={w}/a_file", "--subjects=1"], "{w}/a_file", []),
    ("pretrain-missing-data", "tl_keras.pretrain",
     ["--data_dir={w}/no_data", "--model_dir={o}"], "{w}/no_data", ["{o}"]),
    ("pretrain-truncated-dataset-json", "tl_keras.pretrain",
     ["--data_dir={w}/truncated_data", "--model_dir={o}"], "{w}/truncated_data/dataset.json",
     ["{o}"]),
    ("pretrain-model-dir-is-data", "tl_keras.pretrain",
     ["--data_dir={w}/data", "--model_dir={w}/data", "--batch_size=2", "--max_steps=1"],
     "{w}/data", ["{w}/data/flags.json", "{w}/data/.lock"]),
    ("finetune-model-dir-inside-data", "tl_keras.finetune",
     ["--data_dir={w}/data", "--model_dir={w}/data/run", "--batch_size=2", "--max_steps=1"],
     "{w}/data", ["{w}/data/run"]),
    ("finetune-damaged-init-encoder", "tl_keras.finetune",
     ["--data_dir={w}/data", "--model_dir={o}", "--init_from={w}/encoder"],
     "{w}/encoder/encoder.json", ["{o}"]),
    ("finetune-model-dir-is-a-file", "tl_keras.finetune",
     ["--data_dir={w}/data", "--model_dir={w}/a_file", "--batch_size=2", "--max_steps=1"],
     "{w}/a_file", []),
    ("sweep-missing-data", "tl_keras.sweep",
     ["--data_dir={w}/no_data", "--out_dir={o}", "--set_sizes=1", "--repeats=1"],
     "{w}/no_data", ["{o}"]),
    ("evaluate-missing-export", "tl_keras.evaluate",
     ["--model_dir={w}/no_model", "--data_dir={w}/data", "--out_dir={o}"],
     "{w}/no_model/export/model.json", ["{o}"]),
    ("evaluate-truncated-model-json", "tl_keras.evaluate",
     ["--model_dir={w}/truncated_model", "--data_dir={w}/data", "--out_dir={o}"],
     "{w}/truncated_model/export/model.json", ["{o}"]),
    ("evaluate-out-dir-is-data", "tl_keras.evaluate",
     ["--model_dir={w}/model", "--data_dir={w}/data", "--out_dir={w}/data"], "{w}/data",
     ["{w}/data/summary.csv", "{w}/data/.lock"]),
    ("predict-missing-scan", "tl_keras.predict",
     ["--model_dir={w}/predict_model", "--input={w}/scans/nope.nii.gz",
      "--output={o}/seg.nii.gz"],
     "{w}/scans/nope.nii.gz", ["{o}"]),
    ("predict-output-is-input", "tl_keras.predict",
     ["--model_dir={w}/model", "--input={w}/scans/truncated.nii.gz",
      "--output={w}/scans/truncated.nii.gz"], "{w}/scans/truncated.nii.gz", []),
    ("predict-output-dir-is-input-dir", "tl_keras.predict",
     ["--model_dir={w}/model", "--input_dir={w}/scans", "--output_dir={w}/scans"],
     "{w}/scans", ["{w}/scans/truncated_seg.nii.gz"]),
    ("report-missing-results", "tl_keras.report",
     ["--results={w}/no_results", "--out_dir={o}"], "{w}/no_results", ["{o}"]),
    ("weights-convert-missing-checkpoint", "tl_keras.weights.convert",
     ["--taskonomy={w}/no_ckpt/model.permanent-ckpt", "--out={o}"], "{w}/no_ckpt", ["{o}"]),
]


@pytest.mark.parametrize("case,module,argv,names,absent", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_leaves_nothing(world, tmp_path, capsys, case, module, argv,
                                                  names, absent):
    def fill(text):
        return text.format(w=world, o=tmp_path / "out")
    before = {p: sorted(os.listdir(world / p)) for p in ("data", "scans", "images", "eval")}
    main = importlib.import_module(module).main
    code = main([module, *map(fill, argv)])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 1, err
    assert len(err) == 1 and re.match(r"[\w.]+: error: ", err[0]), err
    assert fill(names) in err[0], err
    for path in map(fill, absent):
        assert not os.path.lexists(path), (path, os.listdir(os.path.dirname(path)))
    assert {p: sorted(os.listdir(world / p)) for p in before} == before  # inputs untouched


# Read-only targets of the CLIs whose own tests do not cover one (convert, evaluate,
# predict and training do: docs/reliability.md).
READ_ONLY = [
    ("tfrecords_tools.convert_images", ["--from_skimage_samples", "--num_images=4",
                                        "--image_size=16", "--out_dir={ro}/out"]),
    ("tfrecords_tools.phantoms", ["--out_dir={ro}/out", "--subjects=1", "--resolution=8"]),
    ("tl_keras.report", ["--results={eval}", "--out_dir={ro}/out"]),
]


@needs_mount
@pytest.mark.parametrize("module,argv", READ_ONLY, ids=[m for m, _ in READ_ONLY])
def test_read_only_target_is_one_line(world, tmp_path, module, argv):
    ro = tmp_path / "ro"
    ro.mkdir()
    args = [a.format(ro=ro, eval=world / "eval") for a in argv]
    lines = read_only_error_lines(module, args, ro)
    assert len(lines) == 1 and f"{ro}/out" in lines[0] and "Read-only file system" in lines[0]
    assert os.listdir(ro) == []
