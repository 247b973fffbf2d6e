"""Optimizer, class weights, configuration, flags, checkpointing and sweep grid."""
import dataclasses
import os

import numpy as np
import pytest

from tests.helpers import ROOT
from tl_keras.training import class_weights as cw
from tl_keras.training import config as cfg
from tl_keras.training import validation as val


def test_decoupled_adamw_one_step_equals_formula():
    import keras
    from tl_keras.training.optimizers import DecoupledAdamW, learning_rate_schedule
    w0 = np.array([1.0, -2.0, 0.5], np.float32)
    g = np.array([0.1, -0.3, 0.0], np.float32)
    lr, wd, eps = 0.01, 0.05, 1e-8
    for rate in (lr, learning_rate_schedule(lr, [10], [lr, lr / 10])):
        var = keras.Variable(w0)
        opt = DecoupledAdamW(learning_rate=rate, weight_decay=wd, epsilon=eps)
        opt.apply([g], [var])
        # Step 1: m_hat = g, v_hat = g^2; decay uses the pre-step weights, not scaled by lr.
        expected = w0 - wd * w0 - lr * g / (np.abs(g) + eps)
        np.testing.assert_allclose(var.numpy(), expected, rtol=1e-6, atol=1e-7)
    keras_var = keras.Variable(w0)
    keras.optimizers.AdamW(learning_rate=lr, weight_decay=wd, epsilon=eps).apply([g], [keras_var])
    assert not np.allclose(keras_var.numpy(), expected)  # Keras scales the decay by lr


HIST = np.array([[90, 10, 0, 0], [50, 0, 50, 0]])  # two slices, class 3 never occurs


@pytest.mark.parametrize("method,expected", [
    ("median_frequency", [0.5 / 0.7, 0.5 / 0.1, 1.0, 0.0]),
    ("inverse", [200 / (4 * 140), 200 / (4 * 10), 200 / (4 * 50), 0.0]),
    ("enet", 1 / np.log(1.02 + np.array([0.7, 0.05, 0.25, 0.0]))),
    ("foreground", [1, 5, 5, 5]),
    ("none", [1, 1, 1, 1]),
])
def test_class_weights_on_known_histogram(method, expected):
    np.testing.assert_allclose(cw.compute_class_weights(HIST, method), expected, rtol=1e-6)


def test_zero_weight_decay_is_plain_adam():
    import keras
    from tl_keras.training.optimizers import make_generator_optimizer
    opt = make_generator_optimizer(1e-2, 0.0)
    var = keras.Variable(np.ones(3, np.float32))
    opt.apply([keras.ops.ones(3)], [var])
    np.testing.assert_allclose(var.numpy(), 1 - 1e-2, rtol=1e-4)  # Adam's first step: -lr


def test_class_weights_errors():
    with pytest.raises(ValueError, match="class_weights must be"):
        cw.compute_class_weights(HIST, "bogus")
    with pytest.raises(ValueError, match="no labelled pixels"):
        cw.compute_class_weights(np.zeros((2, 3)), "inverse")


def test_slice_counts_of_selected_subjects(tiny_data_dir):
    from tfrecords_tools.schema import read_meta
    meta = read_meta(tiny_data_dir)
    counts = cw.read_slice_counts(tiny_data_dir, "train", "mask", meta, ["train001", "train003"])
    assert counts.shape == (6, 2)
    assert (counts.sum(1) == 32 * 32).all()
    assert len(cw.read_slice_counts(tiny_data_dir, "train", "tissue", meta)) == 12


def _pre(tiny_data_dir, tmp_path, **kw):
    return cfg.PretrainConfig(data_dir=tiny_data_dir, model_dir=str(tmp_path), **kw)


@pytest.mark.parametrize("kw,message", [
    ({"task": "depth"}, "--task='depth'"),
    ({"strategy": "tpu"}, "--strategy"),
    ({"lr_boundaries": (10,), "lr_values": (1e-4,)}, "--lr_values needs"),
    ({"image_size": 64}, "--image_size=64"),
    ({"batch_size": 0}, "--batch_size"),
    ({"strategy": "multi_worker"}, "TF_CONFIG"),
    ({"data_dir": "/nonexistent/data"}, "no dataset.json"),
])
def test_invalid_pretrain_flags_fail_early(tiny_data_dir, tmp_path, monkeypatch, kw, message):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    c = dataclasses.replace(_pre(tiny_data_dir, tmp_path), **kw)
    with pytest.raises(cfg.ConfigError, match=message.replace("[", r"\[")) as e:
        val.validate_pretrain(c)
    assert "\n" not in str(e.value)


def test_invalid_finetune_flags_fail_early(tiny_data_dir, tmp_path):
    ok = cfg.FinetuneConfig(data_dir=tiny_data_dir, model_dir=str(tmp_path), target="ms")
    assert val.validate_finetune(ok).num_mask_classes == 2
    assert ok.resolved_epochs() == 60
    for kw, message in (({"train_subjects": 5}, "has 4 subjects"),
                        ({"init_from": "/no/such/encoder"}, "does not exist"),
                        ({"eval_split": "holdout"}, "no 'holdout' split")):
        with pytest.raises(cfg.ConfigError, match=message):
            val.validate_finetune(dataclasses.replace(ok, **kw))


def test_flagfile_parsing(tmp_path):
    from absl import flags
    from tl_keras.training.flags import (config_from_flags, define_config_flags,
                                         define_pretrain_flags, pretrain_config_from_flags)
    fv = flags.FlagValues()
    define_pretrain_flags(flag_values=fv)
    flagfile = tmp_path / "run.flags"
    flagfile.write_text("# comment\n--task=autoencoding\n--batch_size=32\n"
                        "--lr_boundaries=80000\n--lr_values=1e-4,1e-5\n--deterministic\n")
    fv(["prog", f"--flagfile={flagfile}", "--batch_size=2", "--data_dir=/d"])
    c = pretrain_config_from_flags(flag_values=fv)
    assert (c.task, c.batch_size, c.data_dir, c.deterministic) == ("autoencoding", 2, "/d", True)
    assert c.lr_boundaries == (80000,) and c.lr_values == (1e-4, 1e-5)
    assert c.weight_decay == 2e-6 and c.task_options.disc_start_step == 26000
    fv2 = flags.FlagValues()
    define_config_flags(cfg.FinetuneConfig, flag_values=fv2)
    fv2(["prog", "--target=anatomy"])
    f = config_from_flags(cfg.FinetuneConfig, flag_values=fv2)
    assert (f.weight_decay, f.resolved_epochs(), f.init_from) == (2e-4, 300, "scratch")


def test_experiment_flagfiles_parse():
    from absl import flags
    from tl_keras.training.flags import (config_from_flags, define_config_flags,
                                         define_pretrain_flags, pretrain_config_from_flags)
    root = os.path.join(ROOT, "experiments")
    fv = flags.FlagValues()
    define_pretrain_flags(flag_values=fv)
    fv(["prog", f"--flagfile={os.path.join(root, 'pretrain_natural_autoencoding.flags')}"])
    assert pretrain_config_from_flags(flag_values=fv).task_options.disc_start_step == 25000
    fv = flags.FlagValues()
    define_config_flags(cfg.FinetuneConfig, flag_values=fv)
    fv(["prog", f"--flagfile={os.path.join(root, 'finetune_stroke.flags')}"])
    config_from_flags(cfg.FinetuneConfig, flag_values=fv)


def test_pretrained_weights_only_without_checkpoint(tmp_path, capsys):
    import keras
    from tl_keras.training.checkpointing import RunCheckpoint
    calls = []
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    ckpt = RunCheckpoint(str(tmp_path), {"model": model})
    assert ckpt.restore_or_initialize(lambda: calls.append(1)) == 0 and calls == [1]
    ckpt.step.assign(7)
    ckpt.save()
    again = RunCheckpoint(str(tmp_path), {"model": model})
    assert again.restore_or_initialize(lambda: calls.append(2)) == 7 and calls == [1]
    assert "Resumed from step 7" in capsys.readouterr().out


def test_sweep_grid_split_and_slurm_defaults(tmp_path, monkeypatch):
    from tl_keras.studies import sweeps
    config = sweeps.SweepConfig(
        out_dir=str(tmp_path), sources=sweeps.parse_sources(["a=scratch", "/x/enc_b/"]),
        set_sizes=(2, 0), repeats=3, finetune=cfg.FinetuneConfig())
    cells = sweeps.grid(config)
    assert len(cells) == 12 and cells[0].run_dir.endswith(os.path.join("a", "n2", "r0"))
    assert cells[-1].source == "enc_b" and cells[-1].run_dir.endswith(os.path.join("nall", "r2"))
    parts = [sweeps.job_cells(dataclasses.replace(config, job_index=i, num_jobs=5))
             for i in range(5)]
    assert sorted(c.run_dir for p in parts for c in p) == sorted(c.run_dir for c in cells)
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "4")
    monkeypatch.setenv("SLURM_ARRAY_TASK_MIN", "1")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "5")
    assert sweeps.slurm_job(-1, 0) == (3, 5)
    assert sweeps.slurm_job(1, 2) == (1, 2)
    with pytest.raises(cfg.ConfigError):
        sweeps.slurm_job(5, 5)
