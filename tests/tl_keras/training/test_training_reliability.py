"""Training survives kill -9 at any point, damaged checkpoints, full and read-only
disks (docs/reliability.md): a resumed run finishes with the records of an
uninterrupted one, and every failure is one line naming the file."""
import dataclasses
import glob
import json
import os
import signal

import h5py
import numpy as np
import pytest

from tests.helpers import in_mount_namespace, needs_mount, read_only_error_lines, run_module
from tl_keras.training.config import FinetuneConfig, PretrainConfig

# epochs=2 of 6 steps (12 training slices, batch 2); checkpoints at steps 4, 6, 8, 12.
# float32 in the test process and in the driver subprocesses alike (the conftest fixture
# that makes ``auto`` float32 does not reach a subprocess or a module-scoped fixture).
def test_missing_index_files_are_refused_not_restarted(tmp_path):
    """The .index files deleted: the data files are evidence of a run, so no silent
    restart from step 0."""
    from tl_keras.training.checkpointing import CheckpointError
    directory = _saved_checkpoint(tmp_path)
    for index in glob.glob(os.path.join(directory, "*.index")):
        os.remove(index)
    with pytest.raises(CheckpointError, match=r"no ckpt-N.index file, but 3 other checkpoint "
                                              r"file\(s\) \(checkpoint, ckpt-2.data"):
        _restore(tmp_path)


def test_rebuilt_state_file_without_deprecation_warnings(tmp_path, capfd):
    directory = _saved_checkpoint(tmp_path)
    os.remove(os.path.join(directory, "checkpoint"))
    capfd.readouterr()
    ckpt, step = _restore(tmp_path)
    err = capfd.readouterr().err
    assert step == 4 and "deprecat" not in err.lower(), err
    with open(os.path.join(directory, "checkpoint")) as f:
        assert f.read().startswith('model_checkpoint_path: "ckpt-4"\n'
                                   'all_model_checkpoint_paths: "ckpt-2"\n'
                                   'all_model_checkpoint_paths: "ckpt-4"\n')
    ckpt.step.assign(6)
    ckpt.save()  # the manager rotates the rebuilt list: ckpt-2 goes (max_to_keep 2)
    assert sorted(os.path.basename(p) for p in glob.glob(os.path.join(directory, "*.index"))) \
        == ["ckpt-4.index", "ckpt-6.index"]


PRETRAIN = dict(batch_size=2, epochs=2, checkpoint_every=4, deterministic=True, seed=1,
                mixed_precision="none")


def _drive(kind, config, kill=None, prefix=()):
    """Run tests/train_driver.py in a subprocess (optionally behind ``prefix``)."""
    fields = {k: v for k, v in dataclasses.asdict(config).items() if not isinstance(v, tuple)}
    return run_module("tests.train_driver", [kind, json.dumps(fields)] + ([kill] if kill else []),
                      prefix=prefix)


def _h5_arrays(path):
    arrays = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: arrays.__setitem__(name, obj[()])
                     if isinstance(obj, h5py.Dataset) else None)
    return arrays


def _assert_same_encoder(a, b):
    wa, wb = (_h5_arrays(os.path.join(d, "encoder.weights.h5")) for d in (a, b))
    assert wa.keys() == wb.keys() and wa
    for k in wa:
        np.testing.assert_array_equal(wa[k], wb[k], err_msg=k)


@pytest.fixture(scope="module")
def pretrain_reference(tiny_data_dir, tmp_path_factory):
    from tl_keras.training import run_pretrain
    from tl_keras.models.presets import build_tiny_models
    config = PretrainConfig(data_dir=tiny_data_dir, **PRETRAIN,
                            model_dir=str(tmp_path_factory.mktemp("reference")))
    return config, run_pretrain(config, build_tiny_models)


@pytest.mark.parametrize("kill", [
    # right after the mid-epoch checkpoint of step 8: the epoch mean must cover steps 7-12
    "tl_keras.training.checkpointing:RunCheckpoint.save:3:after",
    # after the last step, before the last validation, export and checkpoint
    "tl_keras.training.train:evaluate:2:before",
])
def test_pretrain_killed_resumes_to_the_uninterrupted_records(pretrain_reference, tmp_path,
                                                              kill, capsys):
    from tl_keras.training import run_pretrain
    from tl_keras.models.presets import build_tiny_models
    reference, expected = pretrain_reference
    config = dataclasses.replace(reference, model_dir=str(tmp_path / "run"))
    killed = _drive("pretrain", config, kill)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert not os.path.exists(os.path.join(config.model_dir, "result.json"))
    result = run_pretrain(config, build_tiny_models)
    assert "Resumed from step" in capsys.readouterr().out
    assert result == expected
    assert json.load(open(os.path.join(config.model_dir, "result.json"))) == expected
    assert {"final_loss", "final_val_loss"} <= set(result) and result["epochs"] == 2
    for name in ("encoder_last", "encoder_best"):
        _assert_same_encoder(os.path.join(reference.model_dir, name),
                             os.path.join(config.model_dir, name))
    meta = json.load(open(os.path.join(config.model_dir, "encoder_last", "encoder.json")))
    assert meta["provenance"]["epoch"] == 2
    # Pre-training keeps its checkpoints by default (to train longer later).
    assert glob.glob(os.path.join(config.model_dir, "checkpoints", "ckpt-12.*"))


def test_finetune_killed_after_its_last_checkpoint_finishes_on_rerun(tiny_data_dir, tmp_path,
                                                                     capsys):
    from tl_keras.training import run_finetune
    from tl_keras.models.presets import build_tiny_models
    base = FinetuneConfig(data_dir=tiny_data_dir, batch_size=2, epochs=1, checkpoint_every=4,
                          deterministic=True, evaluate=False, model_dir=str(tmp_path / "ref"),
                          mixed_precision="none")
    expected = run_finetune(base, build_tiny_models)
    config = dataclasses.replace(base, model_dir=str(tmp_path / "run"))
    killed = _drive("finetune", config,
                    "tl_keras.training.finetuning:_export:1:before")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert os.path.exists(os.path.join(config.model_dir, "checkpoints", "ckpt-6.index"))
    # Debris of killed writes: a checkpoint save and two atomic writes.
    debris = [os.path.join(config.model_dir, "checkpoints", "ckpt-8_temp"),
              os.path.join(config.model_dir, ".tmp-result.json.x1"),
              os.path.join(config.model_dir, "export", ".tmp-model.json.x2")]
    os.makedirs(debris[0])
    for path in debris[1:]:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        open(path, "w").write("partial")
    result = run_finetune(config, build_tiny_models)
    out = capsys.readouterr().out
    assert "Resumed from step 6" in out and "removed 3 temporary file(s)" in out
    assert result == expected and "final_loss" in result and "final_val_loss" in result
    assert not any(os.path.exists(p) for p in debris)
    assert os.path.exists(os.path.join(config.model_dir, "export", "segmentation.keras"))
    # --keep_checkpoints_after_done is off for fine-tuning: only the export stays.
    assert not os.path.exists(os.path.join(config.model_dir, "checkpoints"))
    assert run_finetune(config, build_tiny_models) == expected
    assert "already complete" in capsys.readouterr().out


def _saved_checkpoint(tmp_path, steps=(2, 4)):
    import tensorflow as tf
    from tl_keras.training.checkpointing import RunCheckpoint
    ckpt = RunCheckpoint(str(tmp_path), {"v": tf.Variable(tf.zeros([256]))})
    for step in steps:
        ckpt.step.assign(step)
        ckpt.checkpoint.v.assign_add(tf.ones([256]))
        ckpt.record.sums = {"loss": float(step)}
        ckpt.save()
    return os.path.join(str(tmp_path), "checkpoints")


def _restore(tmp_path):
    import tensorflow as tf
    from tl_keras.training.checkpointing import RunCheckpoint
    ckpt = RunCheckpoint(str(tmp_path), {"v": tf.Variable(tf.zeros([256]))})
    return ckpt, ckpt.restore_or_initialize()


def test_truncated_latest_checkpoint_falls_back_to_the_previous(tmp_path, capsys):
    directory = _saved_checkpoint(tmp_path)
    data = glob.glob(os.path.join(directory, "ckpt-4.data-*"))[0]
    with open(data, "r+b") as f:
        f.truncate(100)
    ckpt, step = _restore(tmp_path)
    out = capsys.readouterr().out
    assert step == 2 and float(ckpt.checkpoint.v.numpy()[0]) == 1.0
    assert ckpt.record.sums == {"loss": 2.0}
    assert "warning: checkpoint" in out and "ckpt-4 is unreadable" in out
    assert os.path.exists(os.path.join(directory, "unreadable", os.path.basename(data)))
    ckpt.step.assign(4)
    assert ckpt.save().endswith("ckpt-4")  # the bad one no longer blocks this number
    assert _restore(tmp_path)[1] == 4


def test_garbage_state_file_recovers_the_newest_checkpoint(tmp_path, capsys):
    directory = _saved_checkpoint(tmp_path)
    with open(os.path.join(directory, "checkpoint"), "w") as f:
        f.write("\x00garbage {{ not a state file")
    ckpt, step = _restore(tmp_path)
    assert step == 4 and float(ckpt.checkpoint.v.numpy()[0]) == 2.0
    assert "is missing or unreadable; recovering" in capsys.readouterr().out
    assert _restore(tmp_path)[0].manager.latest_checkpoint.endswith("ckpt-4")


def test_no_readable_checkpoint_is_refused_not_restarted(tmp_path):
    from tl_keras.training.checkpointing import CheckpointError
    directory = _saved_checkpoint(tmp_path)
    for index in glob.glob(os.path.join(directory, "*.index")):
        with open(index, "r+b") as f:
            f.truncate(10)
    with pytest.raises(CheckpointError, match="none of the 2 checkpoint"):
        _restore(tmp_path)
    assert len(glob.glob(os.path.join(directory, "ckpt-*.index"))) == 2  # evidence kept


@needs_mount
def test_disk_full_during_checkpoint_save_is_one_line(tiny_data_dir, tmp_path):
    """``--model_dir`` on a 64 kB tmpfs: flags and TensorBoard fit, the first
    (150 kB) checkpoint does not."""
    disk = tmp_path / "disk"
    disk.mkdir()
    config = FinetuneConfig(data_dir=tiny_data_dir, model_dir=str(disk / "run"), batch_size=2,
                            epochs=1, checkpoint_every=4, evaluate=False)
    proc = _drive("finetune", config,
                  prefix=in_mount_namespace(f"mount -t tmpfs -o size=64k tmpfs {disk}"))
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    lines = [l for l in proc.stderr.splitlines() if "error:" in l]
    assert lines == [f"tl_keras.finetune: error: {disk}/run/checkpoints/ckpt-4: cannot write "
                     "the checkpoint: No space left on device"], proc.stderr[-2000:]


@needs_mount
def test_read_only_model_dir_is_one_line(tiny_data_dir, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    lines = read_only_error_lines("tl_keras.finetune", [
        f"--data_dir={tiny_data_dir}", f"--model_dir={ro / 'run'}", "--batch_size=2"], ro)
    assert len(lines) == 1 and lines[0].startswith(f"tl_keras.finetune: error: {ro}/run")
    assert "Read-only file system" in lines[0]


def test_encoder_json_of_another_format_names_the_problem(tmp_path):
    from tl_keras.weights import WeightLoadError, read_encoder_meta
    for content, message in ((json.dumps({"format": "keras", "input_channels": 3}),
                              "format 'keras', expected 'tl_keras.encoder'"),
                             ("[1, 2]", "a JSON list, not an object")):
        (tmp_path / "encoder.json").write_text(content)
        (tmp_path / "encoder.weights.h5").write_text("")
        with pytest.raises(WeightLoadError, match=message) as info:
            read_encoder_meta(str(tmp_path))
        assert "missing keys []" not in str(info.value)
