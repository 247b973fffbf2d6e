"""Training run directories: one run at a time (real processes), and only with its
own flags unless --overwrite (docs/training.md, "Reliability")."""
import dataclasses
import json
import os
import subprocess
import sys

import pytest

from tests.helpers import ROOT
from tl_keras.training import rundir
from tl_keras.training.config import ConfigError, FinetuneConfig
from tl_common import lock

# A tiny fine-tuning run that never ends by itself (killed by the test).
_RUN_FOREVER = """
import sys
from tl_keras.training import FinetuneConfig, run_finetune
from tl_keras.models.presets import build_tiny_models
c = FinetuneConfig(data_dir=sys.argv[1], model_dir=sys.argv[2], batch_size=2,
                   max_steps=10 ** 6, evaluate=False, validate=False, class_weights="none",
                   checkpoint_every=10 ** 6, seed=0)
run_finetune(c, build_tiny_models)
"""


def _finetune_cli(data_dir, model_dir, *args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, "-m", "tl_keras.finetune", f"--data_dir={data_dir}",
                           f"--model_dir={model_dir}", "--max_steps=1", "--noevaluate",
                           "--novalidate", *args],
                          capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)


def _error_line(proc) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("tl_keras.finetune: error:")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_second_finetune_refused_then_stale_lock_and_other_seed(tiny_data_dir, tmp_path):
    """The issue's two finetunes (seeds 0 and 1) into one --model_dir: while the first
    runs the second is refused; after kill -9 of the first its lock is taken over,
    and seed 1 is still refused because the folder holds seed 0's run."""
    run = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "-c", _RUN_FOREVER, tiny_data_dir, str(run)],
                             cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
    try:
        for line in first.stdout:  # the loop prints once training runs
            if "step" in line:
                break
        assert first.poll() is None
        # This test's process is the second run (the CLI's path is checked below).
        from tl_keras.training import run_finetune
        with pytest.raises(ConfigError, match=f"in use by pid {first.pid} on "):
            run_finetune(_config(tiny_data_dir, run, seed=1))
    finally:
        first.kill()
        first.wait()
    proc = _finetune_cli(tiny_data_dir, run, "--seed=1")
    assert proc.returncode == 1
    assert f"taking over the lock left by pid {first.pid}" in proc.stderr
    line = _error_line(proc)
    assert "holds a run with other flags" in line and "--seed: 0 -> 1" in line
    assert json.load(open(run / "flags.json"))["flags"]["seed"] == 0
    assert not os.path.exists(run / lock.LOCK_NAME)


def _config(data_dir, model_dir, **kw):
    return FinetuneConfig(data_dir=data_dir, model_dir=str(model_dir), batch_size=2,
                          max_steps=1, evaluate=False, validate=False, class_weights="none",
                          **kw)


def test_other_flags_refused_unless_overwrite(tiny_data_dir, tmp_path):
    from tl_keras.training import run_finetune
    from tl_keras.models.presets import build_tiny_models
    c = _config(tiny_data_dir, tmp_path / "run")
    run_finetune(c, build_tiny_models)
    # Resume flags (logging, run length) may change; a finished run stays finished.
    same = dataclasses.replace(c, log_every=7, checkpoint_every=3, max_steps=2)
    with rundir.claim_run_dir(same):
        pass
    other = dataclasses.replace(c, learning_rate=1e-3, init_from="scratch", seed=2)
    with pytest.raises(ConfigError, match=r"--learning_rate: 0.0001 -> 0.001; --seed: 0 -> 2"):
        run_finetune(other, build_tiny_models)
    assert os.path.exists(os.path.join(c.model_dir, "result.json"))
    run_finetune(dataclasses.replace(other, overwrite=True), build_tiny_models)
    assert json.load(open(os.path.join(c.model_dir, "flags.json")))["flags"]["seed"] == 2


def test_model_dir_that_is_a_file(tiny_data_dir, tmp_path):
    target = tmp_path / "afile"
    target.write_text("x")
    with pytest.raises(ConfigError, match="is an existing file, not a folder"):
        with rundir.claim_run_dir(_config(tiny_data_dir, target)):
            pass


def test_same_sweep_job_twice_is_refused(tiny_data_dir, tmp_path):
    from tl_keras.studies import sweeps
    config = sweeps.SweepConfig(out_dir=str(tmp_path), sources=(("scratch", "scratch"),),
                                set_sizes=(2,), repeats=1, finetune=_config(tiny_data_dir, ""))
    with lock.acquire(str(tmp_path), name=".lock-job0of1"):
        with pytest.raises(ConfigError, match=r"sweep job 1/1\) is in use by pid"):
            sweeps.run_sweep(config)


def test_non_chief_workers_do_not_take_the_lock(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", json.dumps({
        "cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}))
    assert not rundir.is_chief_from_env()
    monkeypatch.setenv("TF_CONFIG", json.dumps({
        "cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 0}}))
    assert rundir.is_chief_from_env()


def test_task_options_compare_as_flags_of_their_own():
    """A task's options are compared field by field, also against a flags.json written
    before they moved out of PretrainConfig (top-level ``disc_start_step``)."""
    from tl_keras.training.config import PretrainConfig
    from tl_keras.training.tasks.autoencoding import AutoencodingOptions
    config = PretrainConfig(task="autoencoding", task_options=AutoencodingOptions())
    old = {**dataclasses.asdict(config), "disc_start_step": 26000, "disc_learning_rate": 1e-5}
    del old["task_options"]
    assert rundir.flag_differences(old, config) == []
    changed = dataclasses.replace(config, task_options=AutoencodingOptions(disc_start_step=5))
    assert rundir.flag_differences(old, changed) == ["--disc_start_step: 26000 -> 5"]
