"""The CLIs fail before training, with one line on stderr and a non-zero exit."""
import os
import subprocess
import sys

import pytest

from tests.helpers import ROOT


def _cli(module, *args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True,
                          text=True, timeout=120, cwd=ROOT, env=env)


@pytest.mark.parametrize("module,args,message", [
    ("tl_keras.pretrain", ["--data_dir=/no/such/dir", "--model_dir=M"], "no dataset.json"),
    ("tl_keras.pretrain", ["--task=depth"], "--task='depth'"),
    ("tl_keras.pretrain", ["--lr_boundaries=10", "--lr_values=1e-4"], "--lr_values needs"),
    ("tl_keras.pretrain", ["--lr_boundaries=x", "--lr_values=1,2"], "not a list of numbers"),
    ("tl_keras.finetune", ["--target=brain"], "--target='brain'"),
    ("tl_keras.finetune", ["--train_subjects=9", "--model_dir=M"], "has 4 subjects"),
    ("tl_keras.sweep", ["--out_dir=O", "--set_sizes=ten"], "not integers"),
])
def test_invalid_flags_fail_early_with_one_line(tiny_data_dir, tmp_path, module, args, message):
    base = [f"--data_dir={tiny_data_dir}", f"--model_dir={tmp_path / 'run'}"]
    proc = _cli(module, *base, *args)
    assert proc.returncode == 1, proc.stderr
    lines = [l for l in proc.stderr.splitlines() if l.startswith(f"{module}: error:")]
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not os.path.exists(tmp_path / "run")  # nothing written before validation
