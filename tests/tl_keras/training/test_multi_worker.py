"""Two worker processes (MultiWorkerMirroredStrategy over TF_CONFIG on 127.0.0.1) fine-tune
to the weights of one process with the same global batch.

Each worker reads its own shards, so the two set-ups see different batches unless every
training slice is the same: the data set here repeats one slice, which makes the global
batches equal and leaves everything else to check (gradient all-reduce across processes,
loss averaging over the global batch, the chief's checkpoint, batch norm).
"""
import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import ROOT, make_tiny_dataset
from tfrecords_tools import schema
from tfrecords_tools.shards import writer as shards

WORKER = textwrap.dedent("""
    import sys
    from tl_keras.training import FinetuneConfig, run_finetune
    from tl_keras.models.presets import build_tiny_models
    config = FinetuneConfig(**{**__import__("json").loads(sys.argv[1]),
                               "strategy": "multi_worker"})
    run_finetune(config, build_tiny_models)
""")


def _one_slice_dataset(out_dir) -> None:
    """The tiny data set with every training slice replaced by the first one."""
    meta = make_tiny_dataset(out_dir)
    n = meta.splits["train"].shards
    first = next(iter(tf.data.TFRecordDataset(
        os.path.join(out_dir, schema.shard_name("train", 0, n))))).numpy()
    per_shard = meta.splits["train"].slices // n
    for i in range(n):
        shards.write_shard(os.path.join(out_dir, schema.shard_name("train", i, n)),
                           [first] * per_shard)


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _weights(model_dir):
    reader = tf.train.load_checkpoint(os.path.join(model_dir, "checkpoints"))
    return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()
            if k.startswith(("model/", "optimizer/"))}


@pytest.mark.slow
def test_two_workers_match_one_process(tmp_path):
    from tl_keras.training import FinetuneConfig, run_finetune
    from tl_keras.models.presets import build_tiny_models
    data = str(tmp_path / "data")
    _one_slice_dataset(data)
    common = dict(data_dir=data, batch_size=4, max_steps=3, learning_rate=1e-2, seed=3,
                  class_weights="none", validate=False, evaluate=False,
                  mixed_precision="none", keep_checkpoints_after_done=True)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(2)]}
    args = json.dumps({**common, "model_dir": str(tmp_path / "two")})
    procs = []
    for index in range(2):
        env = dict(os.environ, PYTHONPATH=ROOT, CUDA_VISIBLE_DEVICES="",
                   TF_CONFIG=json.dumps({"cluster": cluster,
                                         "task": {"type": "worker", "index": index}}))
        procs.append(subprocess.Popen([sys.executable, "-c", WORKER, args], cwd=ROOT, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True))
    try:
        outputs = [p.communicate(timeout=600) for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, (_, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-3000:]

    one = FinetuneConfig(**common, model_dir=str(tmp_path / "one"))
    run_finetune(one, build_tiny_models)
    a, b = _weights(one.model_dir), _weights(str(tmp_path / "two"))
    assert a.keys() == b.keys()
    assert sum("_trainable_variables" in k for k in a) >= 20  # every trainable weight
    moved = max(float(np.max(np.abs(v))) for k, v in a.items() if "moving_mean" in k)
    assert moved > 0  # batch norm ran in training mode
    diff = {k: float(np.max(np.abs(a[k] - b[k]))) for k in a}
    assert max(diff.values()) < 1e-5, diff
    # The chief wrote the run; the other worker only its private scratch copy.
    assert os.path.isdir(tmp_path / "two" / ".workers" / "worker_1")
