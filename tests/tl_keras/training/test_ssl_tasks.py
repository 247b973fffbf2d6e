"""The self-supervised source tasks (restoration, masked_modeling, simsiam): each learns
on a tiny fixed batch, pre-trains through the public path, exports an encoder that
fine-tuning loads, resumes exactly, and refuses label-only flags with one line."""
import numpy as np
import pytest
import tensorflow as tf

from tl_keras.training import losses, tasks
from tl_keras.training.config import PretrainConfig

RECONSTRUCTING = ("restoration", "masked_modeling")


def _task_step(data_dir, name, batch_size, learning_rate):
    """(train step of task ``name`` on tiny networks, its models, a fixed batch)."""
    from tfrecords_tools import schema
    from tl_keras.data.dataset import build_dataset
    from tl_keras.models.presets import build_tiny_models
    from tl_keras.training.runs import make_optimizer
    from tl_keras.training.validation import with_task_options
    task = tasks.get(name)
    config = with_task_options(PretrainConfig(data_dir=data_dir, model_dir="unused", task=name,
                                              batch_size=batch_size,
                                              learning_rate=learning_rate, seed=1))
    tf.keras.utils.set_random_seed(1)  # the networks' initial weights
    tm = build_tiny_models(config, schema.read_meta(data_dir), network=task.network,
                           num_outputs=None)
    ctx = tasks.StepContext(config, tm, make_optimizer(config), {}, task.loss(config, None),
                            tf.distribute.get_strategy())
    ds = build_dataset(data_dir, "train", "autoencoding", batch_size, training=False,
                       input_channels=3)
    return task.steps(ctx)(0), tm, next(iter(ds))[0]


@pytest.mark.parametrize("name", RECONSTRUCTING)
def test_reconstruction_loss_decreases_on_a_tiny_fixed_batch(tiny_data_dir, name):
    train, _, x = _task_step(tiny_data_dir, name, 4, 1e-3)
    logs = [float(train(x, x)["loss"]) for _ in range(30)]  # new corruptions every step
    assert np.isfinite(logs).all()
    assert np.mean(logs[-6:]) < 0.8 * np.mean(logs[:6]), logs


def test_simsiam_learns_to_predict_one_view_from_the_other(tiny_data_dir):
    from tl_keras.data.corruptions import simsiam_view
    train, tm, x = _task_step(tiny_data_dir, "simsiam", 8, 1e-2)
    v1, v2 = (simsiam_view(x, tf.constant([5, k], tf.int64)) for k in (6, 7))

    def held_out_views():
        (z1, p1), (z2, p2) = tm.model(v1, training=True), tm.model(v2, training=True)
        return float(tf.reduce_mean(losses.simsiam_loss(p1, p2, z1, z2)))
    before = held_out_views()
    steps = [train(x, x) for _ in range(40)]
    logs = [float(step["loss"]) for step in steps]
    assert np.isfinite(logs).all() and -1.0 <= min(logs) and max(logs) <= 1.0
    assert held_out_views() < before - 0.2, (before, logs)
    # Not collapsed: the projections still spread (0 when every slice maps to one vector).
    assert float(steps[-1]["z_std"]) > 0.2 / np.sqrt(256)


def _checkpoint(model_dir):
    import os
    reader = tf.train.load_checkpoint(os.path.join(model_dir, "checkpoints"))
    return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()
            if k.startswith(("model/", "optimizer/"))}


@pytest.mark.parametrize("name", ["restoration", "masked_modeling", "simsiam"])
def test_pretraining_resumes_exactly_and_exports_what_finetuning_loads(
        tiny_data_dir, tmp_path, capsys, name):
    """One step, killed, resumed to two: the weights of an uninterrupted two-step run
    (the corruptions / views of step 2 are drawn again identically); then fine-tuning
    loads the exported encoder, every variable matched."""
    import dataclasses
    import json
    import os
    from tl_keras.models.presets import build_tiny_models
    from tl_keras.training import run_finetune, run_pretrain
    from tl_keras.training.config import FinetuneConfig
    base = PretrainConfig(data_dir=tiny_data_dir, model_dir=str(tmp_path / "a"), task=name,
                          batch_size=2, max_steps=2, deterministic=True,
                          log_every=1, seed=5)
    result = run_pretrain(base, build_tiny_models)
    assert result["task"] == name and np.isfinite(result["final_val_loss"])
    killed = dataclasses.replace(base, model_dir=str(tmp_path / "b"), max_steps=1)
    run_pretrain(killed, build_tiny_models)
    run_pretrain(dataclasses.replace(killed, max_steps=2), build_tiny_models)
    a, b = _checkpoint(base.model_dir), _checkpoint(killed.model_dir)
    assert a.keys() == b.keys() and len(a) > 10
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    encoder = os.path.join(base.model_dir, "encoder_last")
    meta = json.load(open(os.path.join(encoder, "encoder.json")))
    assert (meta["source_task"], meta["domain"]) == (name, "t1")
    capsys.readouterr()
    tuned = run_finetune(FinetuneConfig(data_dir=tiny_data_dir, model_dir=str(tmp_path / "ft"),
                                        init_from=encoder, batch_size=2, max_steps=1),
                         build_tiny_models)
    assert tuned["source_label"] == f"t1 {name}"
    loaded = [l for l in capsys.readouterr().out.splitlines() if l.startswith("init_from")]
    assert len(loaded) == 1 and " 0 missing" in loaded[0] and " 0 skipped" in loaded[0]
    assert " 0 matched" not in loaded[0], loaded


@pytest.mark.parametrize("name,args,message", [
    ("restoration", ["--class_weights=inverse"],
     "--class_weights does not apply to --task=restoration, which trains without labels"),
    ("simsiam", ["--class_weights=none"], "--class_weights does not apply to --task=simsiam"),
    ("masked_modeling", ["--foreground_weight=2"],
     "--foreground_weight does not apply to --task=masked_modeling"),
    ("restoration", ["--mask_ratio=0.5"], "--mask_ratio applies only to --task=masked_modeling"),
    ("masked_modeling", ["--mask_patch_size=7"], "--mask_patch_size=7 must divide the image"),
    ("masked_modeling", ["--mask_ratio=0.005"], "--mask_ratio=0.005 must mask at least one"),
    ("restoration", ["--decoder_variant=unet"], "--task=restoration keeps its own decoder"),
    ("simsiam", ["--decoder_variant=unet"], "--task=simsiam has no decoder"),
])
def test_bad_flags_are_refused_with_one_line(tiny_data_dir, tmp_path, capsys, name, args,
                                             message):
    """Label-only flags, another task's options, patches that do not tile the slice, a
    skip decoder: one line naming the flag, exit 1, nothing written."""
    import os
    from tl_keras import pretrain
    run = tmp_path / "run"
    code = pretrain.main(["pretrain", f"--data_dir={tiny_data_dir}", f"--model_dir={run}",
                          f"--task={name}", "--batch_size=2", *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1, err
    assert err[0].startswith("tl_keras.pretrain: error: ") and message in err[0], err
    assert not os.path.exists(run)


MIRRORED = """
import sys
from tl_keras.training.strategy import split_logical_cpus
split_logical_cpus(2)
from tl_keras.models.presets import build_tiny_models
from tl_keras.training import PretrainConfig, run_pretrain
c = PretrainConfig(data_dir=sys.argv[1], model_dir=sys.argv[2], task="simsiam", batch_size=4,
                   max_steps=2, strategy="mirrored", validate=False, mixed_precision="none")
print(run_pretrain(c, build_tiny_models)["final_loss"])
"""


def test_simsiam_trains_on_two_replicas(tiny_data_dir, tmp_path):
    """Both views pass as one batch: the synchronised batch norms of two separate passes
    could start their all-reduces in different orders on the replicas (refused by TF)."""
    import os
    import subprocess
    import sys
    from tests.helpers import ROOT
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, "-c", MIRRORED, tiny_data_dir, str(tmp_path / "m")],
                          capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert -1.0 <= float(proc.stdout.strip().splitlines()[-1]) <= 1.0
