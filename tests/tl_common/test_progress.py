"""In-epoch progress: log lines at an interval when stderr is not a terminal, a tqdm bar
when it is, and statuses (device reads) evaluated only when shown; the training loop's
epoch means read from device sums."""
import io

import numpy as np
import tensorflow as tf

from tfrecords_tools import schema
from tl_keras.training.checkpointing import RunCheckpoint
from tl_keras.training.loop import DataSpec, LoopSpec, fit
from tl_common.progress import Progress


class _Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_not_a_terminal_logs_a_line_per_interval_and_reads_status_only_then():
    clock, out, calls = _Clock(), io.StringIO(), []

    def status():
        calls.append(clock.now)
        return f"loss {len(calls)}"

    p = Progress(100, "epoch 1/3", "step", initial=10, interval=10.0, stream=out, clock=clock)
    for t in (1, 5, 9.9, 10, 12, 19, 21, 25):
        clock.now = 100.0 + t
        p.update(2, status)
    p.close()
    lines = out.getvalue().splitlines()
    assert calls == [110.0, 121.0]  # not once per step
    assert len(lines) == 2 and "\r" not in out.getvalue()
    # 18 steps done after 10 s (the first 10 were a resumed epoch's): 0.8 step/s.
    assert lines[0] == "epoch 1/3: 18/100 step (18 %) | 0.80 step/s | ETA 0:01:42 | loss 1"
    assert lines[1].startswith("epoch 1/3: 24/100 step (24 %)") and lines[1].endswith("loss 2")


def test_unknown_total_and_disabled():
    clock, out = _Clock(), io.StringIO()
    p = Progress(None, "evaluate", "slice", interval=1.0, stream=out, clock=clock)
    clock.now += 2
    p.update(8)
    assert out.getvalue() == "evaluate: 8/? slice | 4.00 slice/s\n"
    quiet = io.StringIO()
    q = Progress(10, "x", enabled=False, interval=0.0, stream=quiet, clock=clock)
    q.update(5, lambda: 1 / 0)
    assert quiet.getvalue() == "" and q.done == 5


def test_terminal_gets_a_tqdm_bar_with_the_status():
    clock, out = _Clock(), _Terminal()
    with Progress(4, "epoch 1/1", "step", stream=out, clock=clock) as p:
        for _ in range(4):
            clock.now += 2
            p.update(1, lambda: "loss 0.5000")
    text = out.getvalue()
    assert "\r" in text and "4/4" in text and "step/s" in text and "loss 0.5000" in text


def test_fit_epoch_means_equal_the_per_step_logs(tiny_data_dir, tmp_path, capsys):
    """The loop sums logs on the device; the means equal a float64 sum of the values."""
    values = {s: np.float32(0.1 * (s + 1) ** 1.5) for s in range(5)}

    def step_for(step):
        def run(x, y):
            return {"loss": tf.constant(values[step]), "half": tf.constant(values[step] / 2)}
        return run

    epoch_logs = []
    loop = LoopSpec(steps_per_epoch=3, total_steps=5, step_for=step_for, validate=None,
                    on_epoch_end=lambda e, logs, best: epoch_logs.append(dict(logs)))
    data = DataSpec(tiny_data_dir, "target", 2, 1, 0, schema.read_meta(tiny_data_dir))
    ckpt = RunCheckpoint(str(tmp_path), {})
    last = fit(tf.distribute.get_strategy(), data, loop, ckpt, str(tmp_path), 0)
    expected = [sum(float(values[s]) for s in steps) / len(steps)
                for steps in ((0, 1, 2), (3, 4))]
    assert [logs["loss"] for logs in epoch_logs] == expected
    assert last == {"loss": expected[1], "half": sum(float(values[s] / 2)
                                                     for s in (3, 4)) / 2}
    assert "epoch 2/2 step 5/5 loss" in capsys.readouterr().out
