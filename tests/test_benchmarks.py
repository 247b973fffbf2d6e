"""The data benchmarks run end to end on a tiny cohort (their figures are not checked here:
speed targets are the benchmarks' business, docs/conversion.md and docs/preprocessing.md).

They build their own synthetic scans, so a change to the conversion's input checks can
break them without any other test noticing.
"""
import json
import os
import subprocess
import sys

import pytest

from tests.helpers import ROOT


def _bench(script, tmp_path, *args):
    out = tmp_path / "figures.json"
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", script),
                           f"--work_dir={tmp_path / 'work'}", f"--out_json={out}", *args],
                          capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.mark.slow
def test_input_pipeline_benchmark_converts_its_cohort_and_reads_it(tmp_path):
    figures = _bench("bench_input_pipeline.py", tmp_path, "--subjects=1", "--epochs=1",
                     "--workers=1", "--batch_size=8")
    assert figures["slices_per_epoch"] == 160  # 189 axial slices minus the 29 cropped
    for key in ("parse_batch", "nifti_slice_pad", "training_input", "nifti_training_input"):
        assert figures[f"{key}_slices_per_s"] > 0, key


@pytest.mark.slow
def test_convert_benchmark_preprocesses_a_phantom(tmp_path):
    figures = _bench("bench_convert.py", tmp_path, "--subjects=1")
    assert figures["subjects"] == 1 and figures["slices"] > 0
    assert figures["registration_s"] > 0 and figures["rest_s"] > 0
    assert 0 < figures["bytes_per_slice"] <= figures["bytes_per_slice_max"]


def test_gpu_benchmark_without_a_gpu_says_so_in_one_line_and_succeeds():
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "bench_gpu.py")],
                          capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.splitlines() == [
        "bench_gpu: no GPU visible to TensorFlow; nothing to measure here "
        "(--estimate prints the expected figures)"]
