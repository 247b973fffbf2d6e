"""Worker processes of the quickstart: logs, progress, failure, the in-process path."""
import os

import pytest

from tl_keras.studies import parallel


def _job(out_dir, name, fail=False):
    """Writes out_dir/name.done with the worker's TF thread settings, prints one line."""
    print(f"job {name} running", flush=True)
    if fail:
        raise ValueError(f"job {name} was told to fail")
    threads = ",".join(os.environ.get(v, "unset") for v in parallel.THREAD_VARIABLES)
    with open(os.path.join(out_dir, f"{name}.done"), "w") as f:
        f.write(threads)


def _done(out_dir):
    return lambda: sum(n.endswith(".done") for n in os.listdir(out_dir))


def test_jobs_run_in_single_threaded_workers_with_one_log_each(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    before = {name: os.environ.get(name) for name in parallel.THREAD_VARIABLES}
    jobs = [(_job, (str(out), f"j{i}")) for i in range(3)]
    parallel.run_jobs(jobs, 2, str(tmp_path / "logs"), "test jobs", "job", _done(str(out)))
    assert sorted(os.listdir(out)) == ["j0.done", "j1.done", "j2.done"]
    assert (out / "j1.done").read_text() == "1,1,1"  # every thread variable set in the worker
    for i in range(3):
        assert f"job j{i} running" in (tmp_path / "logs" / f"job{i}.log").read_text()
    shown = capsys.readouterr()
    assert "job j0 running" not in shown.out  # the console shows progress, not the jobs
    assert "3 jobs in 2 processes" in shown.out
    assert {name: os.environ.get(name) for name in parallel.THREAD_VARIABLES} == before


def test_a_failed_job_names_its_log_and_the_others_finish(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    jobs = [(_job, (str(out), "ok0")), (_job, (str(out), "bad", True)),
            (_job, (str(out), "ok2"))]
    with pytest.raises(parallel.JobsFailed, match=r"1 of 3 jobs failed.*was told to fail.*job1\.log"):
        parallel.run_jobs(jobs, 2, str(tmp_path / "logs"), "test jobs", "job",
                          _done(str(out)))
    assert sorted(os.listdir(out)) == ["ok0.done", "ok2.done"]


def test_one_worker_runs_in_this_process(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    parallel.run_jobs([(_job, (str(out), "a"))], 1, str(tmp_path / "logs"), "x", "job",
                      _done(str(out)))
    assert (out / "a.done").exists()
    assert "job a running" in capsys.readouterr().out
    assert not (tmp_path / "logs").exists()


def test_worker_threads_are_a_cpu_setting(monkeypatch):
    """A mocked GPU: workers keep TensorFlow's threads and let GPU memory grow."""
    from tl_keras.models import machine
    monkeypatch.setattr(machine, "gpus", lambda: [])
    assert parallel.worker_environment() == {name: "1" for name in parallel.THREAD_VARIABLES}
    monkeypatch.setattr(machine, "gpus", lambda: [("NVIDIA A100", (8, 0))])
    assert parallel.worker_environment() == {"TF_FORCE_GPU_ALLOW_GROWTH": "true"}
