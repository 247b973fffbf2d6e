"""Validation under MirroredStrategy weighs every validation slice once, as one device does.

The validation split has 9 slices and the global batch is 4 (2 per replica on two logical
CPU devices): its per-replica batches are 2, 2 | 2, 2 | 1 and an empty one. Each task
trains one epoch with ``--strategy mirrored`` and with ``default``; their validation
losses must agree (the mirrored run used to fail on the empty batch).

The self-supervised corruptions and views are drawn per replica by design
(:mod:`tl_keras.training.ssl_steps`), so for the comparison they are replaced by fixed
functions of the image.
"""
import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests.helpers import ROOT, make_tiny_dataset

#: One task per eval-step builder: the plain one (``steps.make_eval_step``: target
#: fine-tuning, as the segmentation source task), on prepared inputs
#: (``ssl_steps.make_prepared_eval_step``: masked modelling, as restoration; its loss
#: weighs masked pixels only) and on two views (``ssl_steps.make_siamese_eval_step``).
TASKS = ("target", "masked_modeling", "simsiam")

SCRIPT = textwrap.dedent("""
    import json, sys
    from tl_keras.training.strategy import split_logical_cpus
    split_logical_cpus(2)
    import tensorflow as tf
    from tl_keras.data import corruptions
    from tl_keras.models.presets import build_tiny_models
    from tl_keras.training import FinetuneConfig, PretrainConfig, run_finetune, run_pretrain
    data_dir, out, task = sys.argv[1:4]

    def left_half_masked(x, seed, patch, ratio):
        width = tf.shape(x)[2]
        mask = tf.cast(tf.range(width) < width // 2, tf.float32)[None, None, :, None]
        mask = tf.broadcast_to(mask, tf.concat([tf.shape(x)[:3], [1]], 0))
        return x * (1.0 - mask), mask

    # Fixed functions of the image instead of the corruptions and views drawn per replica.
    corruptions.genesis_corrupt = lambda x, seed: tf.reverse(x, [2])
    corruptions.mask_patches = left_half_masked
    corruptions.simsiam_view = lambda x, seed: tf.reverse(x, [1])

    losses = {}
    for strategy in ("default", "mirrored"):
        common = dict(data_dir=data_dir, model_dir=f"{out}/{strategy}", batch_size=4, epochs=1,
                      strategy=strategy, seed=1, learning_rate=1e-3, mixed_precision="none")
        result = (run_finetune(FinetuneConfig(**common), build_tiny_models) if task == "target"
                  else run_pretrain(PretrainConfig(task=task, **common), build_tiny_models))
        losses[strategy] = result["final_val_loss"]
    print(json.dumps({"loss": losses, "replicas": len(tf.config.list_logical_devices("CPU"))}))
""")


@pytest.fixture(scope="module")
def val_data(tmp_path_factory):
    """The tiny data set with 9 validation slices."""
    data = str(tmp_path_factory.mktemp("mirrored_validation"))
    make_tiny_dataset(data, splits={"train": 4, "val": 3, "test": 1})
    return data


@pytest.mark.parametrize("task", TASKS)
def test_mirrored_validation_equals_one_device(val_data, tmp_path, task):
    """In a fresh subprocess per task: logical devices are configured before TensorFlow
    initialises, and a second MirroredStrategy in one process can collide with the
    first one's collective ops."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, "-c", SCRIPT, val_data, str(tmp_path), task],
                          capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2
    losses = result["loss"]
    assert losses["default"] == pytest.approx(losses["mirrored"], rel=1e-4, abs=1e-5), losses


def test_an_empty_batch_is_not_evaluated():
    """The guard of every distributed eval step: an empty batch gives zero loss and count
    without running the step; a partial one runs as it is."""
    import tensorflow as tf
    from tl_keras.training import steps
    calls = []

    def step(x, y):
        calls.append(1)
        return {"loss_sum": tf.reduce_sum(x), "count": tf.cast(tf.shape(x)[0], tf.float32)}
    guarded = steps._real_batches_only(step)
    empty = guarded(tf.zeros([0, 4, 4, 3]), tf.zeros([0]))
    partial = guarded(tf.ones([3, 4, 4, 3]), tf.zeros([3]))
    assert float(empty["loss_sum"]) == 0.0 and float(empty["count"]) == 0.0
    assert float(partial["loss_sum"]) == 144.0 and float(partial["count"]) == 3.0
