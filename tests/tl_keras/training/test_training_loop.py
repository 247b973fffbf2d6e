"""The training loop with small stand-in networks (tl_keras.models.presets): each
source task overfits a fixed batch, the GAN schedule, deterministic resume,
fine-tuning end to end, and resumable, splittable sweeps."""
import dataclasses
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from tl_keras.training import losses, steps
from tl_keras.training.config import FinetuneConfig, PretrainConfig
from tl_keras.training.tasks.autoencoding import AutoencodingOptions
from tl_keras.training.optimizers import make_discriminator_optimizer, make_generator_optimizer
from tl_keras.models.presets import build_tiny_models
from tl_keras.models.small import tiny_task_models

LOSSES = {"segmentation": losses.weighted_cross_entropy, "autoencoding": losses.l1_loss,
          "classification": losses.multilabel_cross_entropy}


def _batch(data_dir, task):
    from tl_keras.data.dataset import build_dataset
    return next(iter(build_dataset(data_dir, "train", task, 2, training=False)))


@pytest.mark.parametrize("task", ["segmentation", "autoencoding", "classification"])
def test_each_source_task_overfits_a_fixed_batch(tiny_data_dir, task):
    import keras
    keras.utils.set_random_seed(0)
    x, y = _batch(tiny_data_dir, task)
    tm = tiny_task_models(task, 32, 3, {"segmentation": 4, "classification": 16}.get(task))
    opt = make_generator_optimizer(1e-2, 2e-6)
    step = steps.distribute(steps.make_supervised_step(tm.model, opt, LOSSES[task], 2),
                            tf.distribute.get_strategy())
    history = [float(step(x, y)["loss"]) for _ in range(60)]
    assert min(history[-5:]) < 0.5 * history[0], history[::10]


def test_discriminator_untouched_before_start_and_trained_after(tiny_data_dir):
    import keras
    keras.utils.set_random_seed(0)
    x, y = _batch(tiny_data_dir, "autoencoding")
    tm = tiny_task_models("autoencoding", 32, 3)
    g_opt, d_opt = make_generator_optimizer(1e-3, 2e-6), make_discriminator_optimizer(1e-1)
    strategy = tf.distribute.get_strategy()
    l1 = steps.distribute(steps.make_supervised_step(tm.model, g_opt, losses.l1_loss, 2),
                          strategy)
    gan = steps.distribute(steps.make_gan_step(tm.model, tm.discriminator, g_opt, d_opt, 2),
                           strategy)
    step_for = lambda s: gan if s >= 2 else l1  # noqa: E731 (disc_start_step = 2)
    d0 = [w.numpy().copy() for w in tm.discriminator.weights]
    g0 = [w.numpy().copy() for w in tm.model.trainable_weights]
    for s in range(2):
        assert set(step_for(s)(x, y)) == {"loss"}
    assert all(np.array_equal(a, b.numpy()) for a, b in zip(d0, tm.discriminator.weights))
    assert not all(np.array_equal(a, b.numpy()) for a, b in zip(g0, tm.model.trainable_weights))
    logs = step_for(2)(x, y)
    assert {"l1", "adversarial", "d_loss", "d_real", "d_fake"} <= set(logs)
    np.testing.assert_allclose(float(logs["loss"]),
                               0.996 * float(logs["l1"]) + 0.004 * float(logs["adversarial"]),
                               rtol=1e-5)
    assert not all(np.array_equal(a, b.numpy()) for a, b in zip(d0, tm.discriminator.weights))


def _checkpoint_weights(model_dir):
    reader = tf.train.load_checkpoint(os.path.join(model_dir, "checkpoints"))
    # Model weights (trainable ones are stored under the optimizer) and optimizer state.
    return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()
            if k.startswith(("model/", "optimizer/", "discriminator/", "d_optimizer/", "step/"))}


def test_resume_reaches_the_uninterrupted_weights(tiny_data_dir, tmp_path, capsys):
    """Auto-encoding, killed after 4 steps (before the discriminator starts at step 5)
    and restarted to 8 steps: the same generator, discriminator and optimizer state as
    one uninterrupted 8-step run (6 steps per epoch, so the resume also crosses an epoch)."""
    from tl_keras.training import run_pretrain
    base = PretrainConfig(data_dir=tiny_data_dir, model_dir=str(tmp_path / "a"), batch_size=2,
                          task="autoencoding", max_steps=8,
                          task_options=AutoencodingOptions(disc_start_step=5),
                          deterministic=True, validate=False, log_every=2, seed=3)
    logs = run_pretrain(base, build_tiny_models)
    assert {"final_d_loss", "final_adversarial", "final_l1", "final_loss"} <= set(logs)
    killed = dataclasses.replace(base, model_dir=str(tmp_path / "b"), max_steps=4)
    run_pretrain(killed, build_tiny_models)
    out = capsys.readouterr().out
    assert "epoch 1/1 step 4/4" in out and "slices/s" in out and "ETA" in out
    run_pretrain(dataclasses.replace(killed, max_steps=8), build_tiny_models)
    assert "Resumed from step 4" in capsys.readouterr().out
    a, b = _checkpoint_weights(base.model_dir), _checkpoint_weights(killed.model_dir)
    assert a.keys() == b.keys() and any(k.startswith("discriminator/") for k in a)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    record = json.load(open(os.path.join(base.model_dir, "flags.json")))
    assert record["flags"]["max_steps"] == 8 and record["seed"] == 3
    assert os.listdir(os.path.join(base.model_dir, "tensorboard"))
    meta = json.load(open(os.path.join(base.model_dir, "encoder_best", "encoder.json")))
    assert (meta["source_task"], meta["domain"]) == ("autoencoding", "t1")
    assert os.path.exists(os.path.join(base.model_dir, "encoder_last", "encoder.json"))


def test_finetune_exports_evaluates_and_skips_when_done(tiny_data_dir, tmp_path, capsys):
    from tl_keras.models.export import read_exported_meta
    from tl_keras.studies import finetune_and_evaluate
    c = FinetuneConfig(data_dir=tiny_data_dir, model_dir=str(tmp_path), batch_size=2,
                       epochs=2, train_subjects=2, subset_seed=1, class_weights="enet")
    result = finetune_and_evaluate(c, build_tiny_models)
    assert result["train_subjects"] == 2 and result["train_slices"] == 6 and result["steps"] == 6
    meta = read_exported_meta(c.model_dir)
    assert (meta.num_classes, meta.target, meta.init_from) == (2, "stroke", "scratch")
    assert meta.train_subjects == 2 and meta.dataset_meta.num_mask_classes == 2
    assert os.path.isdir(os.path.join(c.model_dir, "eval_test"))
    weights = json.load(open(os.path.join(c.model_dir, "class_weights.json")))
    assert weights["method"] == "enet" and len(weights["weights"]) == 2
    assert finetune_and_evaluate(c, build_tiny_models) == json.load(
        open(os.path.join(c.model_dir, "result.json")))
    assert "already complete" in capsys.readouterr().out


def test_sweep_splits_jobs_resumes_and_merges(tiny_data_dir, tmp_path):
    import pandas as pd
    from tl_keras.studies import sweeps
    ft = FinetuneConfig(data_dir=tiny_data_dir, batch_size=2, max_steps=1, evaluate=False,
                        validate=False, class_weights="none")
    config = sweeps.SweepConfig(out_dir=str(tmp_path), sources=(("scratch", "scratch"),),
                                set_sizes=(2,), repeats=2, finetune=ft, num_jobs=2)
    first = sweeps.run_sweep(config, build_tiny_models)
    assert len(first["ran"]) == 1 and not first["failed"]
    assert len(pd.read_csv(first["csv"])) == 1
    # A complete cell keeps its export and result.json, not its checkpoints.
    assert not os.path.exists(os.path.join(first["ran"][0], "checkpoints"))
    assert os.path.exists(os.path.join(first["ran"][0], "export", "segmentation.keras"))
    again = sweeps.run_sweep(config, build_tiny_models)
    assert again["ran"] == [] and again["skipped"] == first["ran"]
    other = sweeps.run_sweep(dataclasses.replace(config, job_index=1), build_tiny_models)
    assert len(other["ran"]) == 1 and other["ran"] != first["ran"]
    table = pd.read_csv(other["csv"])
    assert list(table.columns[:4]) == ["source", "init_from", "train_subjects", "repeat"]
    assert sorted(zip(table.train_subjects, table.subset_seed)) == [(2, 0), (2, 1)]
    assert table["final_loss"].notna().all()


def test_jit_and_bfloat16_steps_match_the_plain_step(tiny_data_dir):
    import keras
    from tl_keras.training.strategy import set_precision
    x, y = _batch(tiny_data_dir, "segmentation")
    results = {}
    try:
        for precision, jit in (("none", False), ("none", True), ("bfloat16", False)):
            set_precision(precision)
            keras.utils.set_random_seed(0)
            tm = tiny_task_models("segmentation", 32, 3, 4)
            step = steps.distribute(steps.make_supervised_step(
                tm.model, make_generator_optimizer(1e-3, 2e-6), losses.weighted_cross_entropy,
                2, jit_compile=jit), tf.distribute.get_strategy())
            results[precision, jit] = [float(step(x, y)["loss"]) for _ in range(3)]
    finally:
        set_precision("none")
    plain = results["none", False]
    np.testing.assert_allclose(results["none", True], plain, rtol=1e-4)
    np.testing.assert_allclose(results["bfloat16", False], plain, rtol=3e-2)
