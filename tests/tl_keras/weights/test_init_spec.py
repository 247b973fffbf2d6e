"""``--init_from`` specs end to end: one grammar (InitSpec), the checkpoint forms the CLIs
accept, Taskonomy task labels in the artefacts and the report, and the experiments' sweeps
validated from another working folder. Checkpoints here are small (a few tensors under the
real names): these tests check files, names and labels; loading is proven in
tests/tl_keras/weights/test_weights_taskonomy.py on full checkpoints."""
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tests import taskonomy_reference as ts
from tests.helpers import ROOT

TASKS = ("segmentsemantic", "autoencoder", "class_1000")


@pytest.fixture(scope="module")
def small_ckpts(tmp_path_factory):
    """``ckpt/taskonomy/<task>/model.permanent-ckpt`` (V2) for three tasks and
    ``ckpt/resnet_v1_50.ckpt`` (V1, TF-slim names), laid out as the experiments expect."""
    rng = np.random.default_rng(0)
    tensors = {"encoder/conv1/weights": rng.standard_normal((7, 7, 3, 64), np.float32),
               "compress1/weights": rng.standard_normal((3, 3, 2048, 8), np.float32)}
    ident = {k: k for k in tensors}
    layouts = {f"taskonomy/{t}": ident for t in TASKS}
    layouts["resnet_v1_50.ckpt"] = {"resnet_v1_50/conv1/weights": "encoder/conv1/weights"}
    root = tmp_path_factory.mktemp("work") / "ckpt"
    return ts.write_tf1_checkpoints(root, tensors, layouts)


@pytest.fixture(scope="module")
def tiny_encoder_dir(tmp_path_factory):
    from tl_keras.models.small import tiny_encoder
    from tl_keras.weights import save_encoder
    out = tmp_path_factory.mktemp("enc") / "encoder_best"
    save_encoder(tiny_encoder(32, 3), str(out), source_task="segmentation", domain="t1")
    return str(out)


def test_grammar():
    from tl_keras.weights import InitSpec, WeightLoadError
    assert InitSpec.parse("scratch").kind == "scratch"
    spec = InitSpec.parse("taskonomy:/d/x@y/model.permanent-ckpt@seg_v2")
    assert (spec.kind, spec.path, spec.task) == ("taskonomy", "/d/x@y/model.permanent-ckpt",
                                                 "seg_v2")
    assert InitSpec.parse("runs/a@b").path == "runs/a@b"  # '@' only names Taskonomy tasks
    assert InitSpec.parse("imagenet:/w/resnet50.h5").is_keras_h5
    for bad, message in (("imagenett:/x", "unknown kind 'imagenett'"),
                         ("taskonomy:", "empty path"),
                         ("taskonomy:/c/model@a b", "not a task name")):
        with pytest.raises(WeightLoadError, match=message):
            InitSpec.parse(bad)


def test_every_checkpoint_form_validates(small_ckpts, tiny_data_dir, tmp_path):
    """On main the prefix form failed with "does not exist" (os.path.exists on a prefix)."""
    import dataclasses

    from tl_keras.training import config as cfg
    from tl_keras.training import validation as val
    prefix = small_ckpts["taskonomy/autoencoder"]
    ok = cfg.FinetuneConfig(data_dir=tiny_data_dir, model_dir=str(tmp_path))
    for spec in (prefix, os.path.dirname(prefix), prefix + ".index",
                 prefix + ".data-00000-of-00001"):
        val.validate_finetune(dataclasses.replace(ok, init_from="taskonomy:" + spec))
    v1 = small_ckpts["resnet_v1_50.ckpt"]
    val.validate_finetune(dataclasses.replace(ok, init_from="imagenet:" + v1))
    # the folder holding the V1 file (its Taskonomy subfolders hold no checkpoint here)
    val.validate_finetune(dataclasses.replace(ok, init_from="imagenet:" + os.path.dirname(v1)))
    with pytest.raises(cfg.ConfigError, match="a TF checkpoint; say taskonomy:"):
        val.validate_finetune(dataclasses.replace(ok, init_from=prefix))


def test_missing_or_truncated_files_are_named(small_ckpts, tiny_data_dir, tmp_path, capsys):
    """On main: IndexError / OpError tracebacks from every loader, "does not exist" checks
    that passed a missing data file, and inspect said "all tensors map cleanly"."""
    import dataclasses

    from tl_keras.training import config as cfg
    from tl_keras.training import validation as val
    from tl_keras.models.small import tiny_encoder
    from tl_keras.weights import InitSpec, WeightLoadError, convert, load_taskonomy
    from tl_keras.weights import inspect_checkpoint as inspect
    copy = tmp_path / "autoencoder"
    shutil.copytree(os.path.dirname(small_ckpts["taskonomy/autoencoder"]), copy)
    prefix = str(copy / "model.permanent-ckpt")
    data = prefix + ".data-00000-of-00001"
    with open(data, "r+b") as f:
        f.truncate(os.path.getsize(data) // 2)
    enc = tiny_encoder(32, 3)  # the read fails before any name is matched
    for load in (lambda: load_taskonomy(prefix, {"encoder": enc}),
                 lambda: InitSpec.parse(f"taskonomy:{prefix}").load(enc)):
        with pytest.raises(WeightLoadError, match=re.escape(data) + ": cannot read tensor") as e:
            load()
        assert "truncated" in str(e.value) and "\n" not in str(e.value)
    capsys.readouterr()
    for main, argv in ((inspect.main, ["inspect", prefix, "--image_size", "32"]),
                       (convert.main, ["convert", "--taskonomy", prefix, "--out",
                                       str(tmp_path / "o"), "--image_size", "32"])):
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and data in err and "truncated" in err
    os.remove(data)
    assert inspect.main(["inspect", prefix, "--image_size", "32"]) == 1
    captured = capsys.readouterr()
    assert "map cleanly" not in captured.out and f"{data}: missing" in captured.err
    ok = cfg.FinetuneConfig(data_dir=tiny_data_dir, model_dir=str(tmp_path / "run"))
    with pytest.raises(cfg.ConfigError, match=re.escape(f"{data}: missing")) as e:
        val.validate_finetune(dataclasses.replace(ok, init_from=f"taskonomy:{copy}"))
    assert "\n" not in str(e.value)
    v1 = tmp_path / "resnet_v1_50.ckpt"
    v1.write_bytes(open(small_ckpts["resnet_v1_50.ckpt"], "rb").read()[:100])
    with pytest.raises(WeightLoadError, match=re.escape(f"{v1}: not a TF checkpoint")):
        InitSpec.parse(f"imagenet:{v1}").check()


# A complete, evaluated fine-tuning run's result.json (tl_keras.training.results).
_DONE = {"target": "stroke", "init_from": "scratch", "train_subjects": 2, "subset_seed": 0,
         "seed": 0, "steps": 1, "train_slices": 6, "eval_dir": "eval_test"}


def test_each_taskonomy_task_is_its_own_source(small_ckpts, tmp_path):
    """On main every Taskonomy checkpoint was ("taskonomy", "natural"): one report row."""
    import pandas as pd

    from tl_keras.evaluation.study_report import source_table
    from tl_keras.training.finetuning import source_of
    from tl_keras.studies.sweeps import SweepConfig, merge_results, parse_sources
    records = {t: source_of("taskonomy:" + small_ckpts[f"taskonomy/{t}"] + ".index")
               for t in TASKS}
    assert records["class_1000"] == {"source_task": "taskonomy:class_1000",
                                     "source_domain": "natural",
                                     "source_label": "Taskonomy class_1000"}
    prefix = small_ckpts["taskonomy/autoencoder"]
    assert source_of(f"taskonomy:{os.path.dirname(prefix)}")["source_label"] == \
        "Taskonomy autoencoder"
    assert source_of(f"taskonomy:{prefix}@ae_v2")["source_task"] == "taskonomy:ae_v2"
    assert source_of("imagenet:" + small_ckpts["resnet_v1_50.ckpt"])["source_label"] == "ImageNet"
    assert [n for n, *_ in parse_sources(["taskonomy:" + small_ckpts[f"taskonomy/{t}"]
                                         for t in TASKS])] == [f"taskonomy_{t}" for t in TASKS]
    # result.json -> the sweep CSV -> the report: one row per task
    sources = parse_sources([f"{t}=taskonomy:{small_ckpts['taskonomy/' + t]}" for t in TASKS])
    config = SweepConfig(str(tmp_path), sources, (4,), 2, finetune=None)
    for i, (name, spec, _) in enumerate(sources):
        for r in range(2):
            run = tmp_path / name / "n4" / f"r{r}"
            run.mkdir(parents=True)
            (run / "result.json").write_text(json.dumps(
                {"target": "stroke", "init_from": spec, **source_of(spec),
                 "train_subjects": 4, "subset_seed": r, "seed": 0, "steps": 1,
                 "train_slices": 8, "test_dice": 0.1 * (i + 1) + 0.01 * r}))
    frame = pd.read_csv(merge_results(config))
    assert sorted(set(frame["source_label"])) == sorted(f"Taskonomy {t}" for t in TASKS)
    from tl_keras.evaluation.study_report import load_results
    table = source_table(load_results([os.path.join(str(tmp_path), "sweep_results.csv")]).runs)
    means = dict(zip(table["source"], table["mean"]))
    assert means == pytest.approx({"Taskonomy segmentsemantic": 0.105,
                                   "Taskonomy autoencoder": 0.205,
                                   "Taskonomy class_1000": 0.305})


def _run(cmd, cwd):
    env = {**os.environ, "PYTHONPATH": ROOT}
    return subprocess.run([sys.executable, "-m", *cmd], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_finetune_cli_accepts_each_taskonomy_form(small_ckpts, tiny_data_dir, tmp_path):
    """``tl_keras.finetune --init_from taskonomy:...``: the prefix form runs (a finished run,
    result.json present, returns without training); the folder and ``.index`` forms get past
    the --init_from check to the last check (an absent --eval_split) without TensorFlow."""
    prefix = small_ckpts["taskonomy/segmentsemantic"]
    run = tmp_path / "run"
    run.mkdir()
    (run / "result.json").write_text(json.dumps(_DONE))
    common = ["tl_keras.finetune", f"--data_dir={tiny_data_dir}", f"--model_dir={run}"]
    out = _run(common + [f"--init_from=taskonomy:{prefix}"], tmp_path)
    assert out.returncode == 0 and "already complete" in out.stdout, out.stderr[-1500:]
    for form in (os.path.dirname(prefix), prefix + ".index"):
        out = _run(common + [f"--init_from=taskonomy:{form}", "--eval_split=absent"], tmp_path)
        assert out.returncode == 1 and "no 'absent' split" in out.stderr, out.stderr[-1500:]
    missing = _run(common + [f"--init_from=taskonomy:{tmp_path}/nope/model.permanent-ckpt"],
                   tmp_path)
    assert missing.returncode == 1 and missing.stderr.count("\n") == 1
    assert "nope/model.permanent-ckpt does not exist" in missing.stderr


def test_experiment_sweep_validates_every_cell_from_another_folder(
        small_ckpts, tiny_encoder_dir, tiny_data_dir, tmp_path):
    """experiments/sweep_stroke.flags run from a work folder holding the checkpoints, the
    pre-trained encoders and the data where the flagfile says: every cell (scratch, our
    encoders, three Taskonomy checkpoints, the V1 ImageNet file) passes validation; all
    cells are complete, so nothing trains. On main it stopped at the include (relative to
    the repository) and then at the Taskonomy prefix ("does not exist")."""
    work = tmp_path / "work"
    work.mkdir()
    shutil.copytree(os.path.dirname(small_ckpts["resnet_v1_50.ckpt"]), work / "ckpt")
    (work / "data").mkdir()
    os.symlink(tiny_data_dir, work / "data" / "atlas")
    flagfile = os.path.join(ROOT, "experiments", "sweep_stroke.flags")
    with open(flagfile) as f:
        sources = next(line for line in f if line.startswith("--sources="))
    names = []
    for item in sources.strip().split("=", 1)[1].split(","):
        name, spec = item.split("=", 1)
        names.append(name)
        if spec.startswith("runs/"):
            shutil.copytree(tiny_encoder_dir, work / spec)
        done = work / "runs" / "sweeps" / "stroke" / name / "n2" / "r0"
        done.mkdir(parents=True)
        (done / "result.json").write_text(json.dumps(
            {**_DONE, "init_from": spec, "test_dice": 0.5}))
    out = _run(["tl_keras.sweep", f"--flagfile={flagfile}", "--set_sizes=2", "--repeats=1"],
               work)
    assert out.returncode == 0, out.stderr[-1500:]
    assert f"skipped {len(names)}" in out.stdout and len(names) == 11
    assert (work / "runs" / "sweeps" / "stroke" / "sweep_results.csv").is_file()
