"""MirroredStrategy over two logical CPU devices gives the single-device result.

Logical devices must be configured before TensorFlow initialises, so the runs
happen in a fresh subprocess. Everything (global-batch loss scaling, gradient
all-reduce, decoupled decay, and batch norm, whose moments are all-reduced over the
replicas) must agree, with and without batch normalisation.
"""
import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests.helpers import ROOT

SCRIPT = textwrap.dedent("""
    import functools, json, os, sys
    from tl_keras.training.strategy import split_logical_cpus
    split_logical_cpus(2)
    import numpy as np
    import tensorflow as tf
    from tl_keras.training import PretrainConfig, run_pretrain
    from tl_keras.models.presets import build_tiny_models
    data_dir, out = sys.argv[1], sys.argv[2]
    bn = sys.argv[3] == "bn"
    build = functools.partial(build_tiny_models, batch_norm=bn)
    weights, logs = {}, {}
    for strategy in ("default", "mirrored"):
        c = PretrainConfig(data_dir=data_dir, model_dir=os.path.join(out, strategy),
                           batch_size=2, max_steps=3, strategy=strategy, validate=False,
                           learning_rate=1e-3, seed=1, mixed_precision="none")
        logs[strategy] = run_pretrain(c, build)["final_loss"]
        reader = tf.train.load_checkpoint(os.path.join(c.model_dir, "checkpoints"))
        weights[strategy] = {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()
                             if k.startswith(("model/", "optimizer/"))}
    a, b = weights["default"], weights["mirrored"]
    diff = max(float(np.max(np.abs(a[k] - b[k]))) for k in a)
    moved = max(float(np.max(np.abs(a[k]))) for k in a if "_trainable_variables" in k)
    print(json.dumps({"keys_equal": a.keys() == b.keys(), "max_abs_diff": diff,
                      "replicas": len(tf.config.list_logical_devices("CPU")),
                      "loss": logs, "moved": moved}))
""")


@pytest.mark.parametrize("bn", ["no_bn", "bn"])
def test_mirrored_two_cpus_matches_one_device(tiny_data_dir, tmp_path, bn):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, "-c", SCRIPT, tiny_data_dir, str(tmp_path), bn],
                          capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2 and result["keys_equal"] and result["moved"] > 0
    assert result["max_abs_diff"] < 1e-5, result
    assert abs(result["loss"]["default"] - result["loss"]["mirrored"]) < 1e-5, result
