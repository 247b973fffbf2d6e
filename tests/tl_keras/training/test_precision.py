"""``--mixed_precision auto``: measured, cached per machine and network, recorded per run
(tl_keras.training.precision); timings are mocked with a fake clock except in the last test."""
import json
import os

import pytest

from tl_keras.models import machine
from tl_keras.training import precision
from tl_keras.training.precision import PrecisionChoice, choose



class FakeClock:
    """``precision._now``: a step of candidate p advances it by ``seconds[p]``."""

    def __init__(self, seconds):
        self.t, self.seconds, self.order = 0.0, seconds, []

    def now(self):
        return self.t

    def make_run(self, candidate):
        def run():
            self.order.append(candidate)
            self.t += self.seconds[candidate]
        return run


def _measured_choice(monkeypatch, seconds, network="net"):
    clock = FakeClock(seconds)
    monkeypatch.setattr(precision, "_now", clock.now)
    monkeypatch.setattr(precision, "candidates", lambda *a, **k: ("none", "bfloat16"))
    measure = lambda options: precision.time_steps(clock.make_run, options, 8)  # noqa: E731
    return choose("auto", network, measure), clock


@pytest.mark.parametrize("seconds,expected", [({"none": 1.0, "bfloat16": 1.5}, "none"),
                                              ({"none": 2.0, "bfloat16": 1.0}, "bfloat16")])
def test_auto_picks_the_faster_and_caches_it(monkeypatch, seconds, expected):
    choice, clock = _measured_choice(monkeypatch, seconds)
    assert (choice.precision, choice.how) == (expected, "measured")
    assert choice.rates == {p: pytest.approx(8 / s) for p, s in seconds.items()}
    # one warm-up step each, then rounds alternating the order, at least MIN_ROUNDS
    assert clock.order[:6] == ["none", "bfloat16", "none", "bfloat16", "bfloat16", "none"]
    assert "the faster here (measured: " in choice.line()
    cached = choose("auto", "net", measure=None)  # measuring now would fail
    assert (cached.precision, cached.how, cached.rates) == (expected, "cached", choice.rates)
    with open(machine.cache_path()) as f:
        (entry,) = json.load(f).values()
    assert entry["precision"]["net | candidates none,bfloat16"]["precision"] == expected


def test_measurement_is_bounded_in_rounds_and_time(monkeypatch):
    _, slow = _measured_choice(monkeypatch, {"none": 40.0, "bfloat16": 30.0}, "slow")
    assert len(slow.order) == 2 * (1 + precision.MIN_ROUNDS)  # over budget after two
    _, fast = _measured_choice(monkeypatch, {"none": 0.1, "bfloat16": 0.2}, "fast")
    assert len(fast.order) == 2 * (1 + precision.MAX_ROUNDS)


def test_forced_recorded_multi_worker_and_single_candidate_measure_nothing(monkeypatch,
                                                                           tmp_path):
    monkeypatch.setattr(precision, "candidates", lambda *a, **k: ("none", "bfloat16"))
    forced = choose("bfloat16", "net", measure=None)
    assert (forced.precision, forced.how, forced.policy) == ("bfloat16", "forced",
                                                             "mixed_bfloat16")
    assert choose("none", "net", measure=None).policy == "float32"
    assert choose("auto", "net", None, multi_worker=True).precision == "none"
    record = PrecisionChoice("bfloat16", "measured", {"none": 2.0, "bfloat16": 3.0}, 12.0)
    (tmp_path / "flags.json").write_text(json.dumps({"precision": record.to_dict()}))
    again = choose("auto", "net", None, model_dir=str(tmp_path))
    assert (again.precision, again.how) == ("bfloat16", "recorded")
    (tmp_path / "flags.json").write_text(json.dumps({"precision": {"precision": "fp8"}}))
    monkeypatch.setattr(precision, "candidates", lambda *a, **k: ("none",))
    only = choose("auto", "net", None, model_dir=str(tmp_path))  # a bad record is ignored
    assert (only.precision, only.how) == ("none", "only candidate")


def test_candidates_follow_the_devices(monkeypatch, tmp_path):
    monkeypatch.delenv(precision.ALLOWED_ENV)  # conftest: float32 only
    monkeypatch.setattr(machine, "gpus", lambda: [("NVIDIA A100", (8, 0))])
    assert precision.candidates() == ("none", "float16", "bfloat16")
    assert precision.candidates(float16=False) == ("none", "bfloat16")
    monkeypatch.setattr(machine, "gpus", lambda: [("Tesla T4", (7, 5)), ("A100", (8, 0))])
    assert precision.candidates() == ("none", "float16")
    monkeypatch.setattr(machine, "gpus", lambda: [])
    monkeypatch.setattr(machine, "native_bfloat16", lambda: True)
    assert precision.candidates() == ("none", "bfloat16")
    monkeypatch.setattr(machine, "native_bfloat16", lambda: False)
    assert precision.candidates() == ("none",)
    monkeypatch.setattr(machine, "gpus", lambda: [("NVIDIA A100", (8, 0))])
    monkeypatch.setenv(precision.ALLOWED_ENV, "none,bfloat16")
    assert precision.candidates() == ("none", "bfloat16")


def test_native_bfloat16_and_machine_key_read_cpuinfo(monkeypatch, tmp_path):
    amd = tmp_path / "amd"
    amd.write_text("model name\t: AMD EPYC 9B14\nflags\t\t: fpu avx2 avx512f avx512_bf16\n")
    old = tmp_path / "old"
    old.write_text("flags\t\t: fpu avx2 avx512f avx512_vnni\n")
    monkeypatch.setattr(machine, "gpus", lambda: [])
    assert machine.native_bfloat16(str(amd)) and not machine.native_bfloat16(str(old))
    assert not machine.native_bfloat16(str(tmp_path / "missing"))
    assert machine.cpu_info(str(amd)) == ("AMD EPYC 9B14", {"fpu", "avx2", "avx512f",
                                                            "avx512_bf16"})
    monkeypatch.setattr(machine, "cpu_info", lambda *a: ("AMD EPYC 9B14", {"avx512_bf16"}))
    monkeypatch.setenv("TF_NUM_INTRAOP_THREADS", "1")
    assert machine.machine_key().startswith("cpu AMD EPYC 9B14 [avx512_bf16] ")
    assert "TF_NUM_INTRAOP_THREADS=1" in machine.machine_key()
    monkeypatch.setattr(machine, "gpus", lambda: [("NVIDIA H100", (9, 0))])
    assert machine.machine_key().startswith("gpu NVIDIA H100 (compute 9.0) | tensorflow ")


def test_unwritable_cache_warns_once_and_the_run_goes_on(monkeypatch, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv(machine.CACHE_ENV, str(blocker / "speed.json"))
    monkeypatch.setattr(machine, "_warned", [])
    choice, _ = _measured_choice(monkeypatch, {"none": 1.0, "bfloat16": 2.0})
    assert choice.precision == "none"
    assert "cannot write the speed cache" in capsys.readouterr().err


def test_auto_run_measures_its_own_step_records_and_reuses(tiny_data_dir, tmp_path,
                                                           monkeypatch, capsys):
    """A real measurement of the tiny network's step in float32 and bfloat16: recorded in
    flags.json and result.json; the next run of the same network takes the cache."""
    from tl_keras.models.presets import build_tiny_models
    from tl_keras.training import run_pretrain
    from tl_keras.training.config import PretrainConfig
    from tl_keras.models import conv
    monkeypatch.setattr(precision, "candidates", lambda *a, **k: ("none", "bfloat16"))
    # A shape an earlier run of this process took: not this run's record.
    earlier = {f"{d} 9x9x9x9 3x3 -> 9": "taps" for d in ("float32", "bfloat16")}
    monkeypatch.setattr(conv, "_taken", dict(earlier))
    config = PretrainConfig(data_dir=tiny_data_dir, model_dir=str(tmp_path), batch_size=2,
                            max_steps=1, validate=False, class_weights="none")
    result = run_pretrain(config, build_tiny_models)
    out = capsys.readouterr().out
    assert "--mixed_precision auto: " in out and "(measured: " in out, out
    with open(os.path.join(config.model_dir, "flags.json")) as f:
        record = json.load(f)["precision"]
    assert record["how"] == "measured" and set(record["rates"]) == {"none", "bfloat16"}
    assert all(rate > 0 for rate in record["rates"].values())
    assert result["precision"] == record["policy"]
    assert "batch 2 " in record["network"] and record["network"].startswith("segmentation ")
    again = choose("auto", record["network"], measure=None)
    assert (again.how, again.precision) == ("cached", record["precision"])
    # The kernel gradients the run's step took, in its own compute dtype only (the
    # measurement traced the other precision's shapes too).
    with open(os.path.join(config.model_dir, "kernel_gradients.json")) as f:
        kernels = json.load(f)
    dtype = "bfloat16" if record["precision"] == "bfloat16" else "float32"
    assert (kernels["compute_dtype"], kernels["mode"], kernels["cpu"]) == (dtype, "rule", True)
    assert kernels["layers"] and all(k.startswith(dtype + " ") for k in kernels["layers"])
    assert not set(earlier) & set(kernels["layers"])
    assert set(kernels["layers"].values()) <= {"tensorflow", "taps", "patches"}


def test_network_key_tells_builders_and_their_arguments_apart():
    import functools
    from tl_keras.models.hub import hub_models_hook
    from tl_keras.models.presets import build_tiny_models
    from tl_keras.training.train import builder_name
    assert builder_name(build_tiny_models) == "tl_keras.models.presets.build_tiny_models"
    assert builder_name(hub_models_hook("a")) != builder_name(hub_models_hook("b"))
    assert builder_name(functools.partial(build_tiny_models, batch_norm=False)).endswith(
        "build_tiny_models(){'batch_norm': False}")


def test_a_candidate_that_cannot_run_is_dropped_and_gpus_measure_one_at_a_time(monkeypatch,
                                                                                capsys):
    clock = FakeClock({"none": 1.0, "bfloat16": 0.5, "float16": 0.4})
    monkeypatch.setattr(precision, "_now", clock.now)

    def make_run(candidate):
        if candidate == "float16":
            raise MemoryError("out of memory")
        return clock.make_run(candidate)
    rates = precision.time_steps(make_run, ("none", "bfloat16", "float16"), 8)
    assert rates == {"none": 8.0, "bfloat16": 16.0, "float16": 0.0}
    assert "float16 could not be measured (MemoryError: out of memory)" in capsys.readouterr().err
    clock.order.clear()
    rates = precision.time_steps(make_run, ("none", "bfloat16", "float16"), 8, together=False)
    assert rates == {"none": 8.0, "bfloat16": 16.0, "float16": 0.0}
    n = 1 + precision.MAX_ROUNDS  # each alone: short steps, all rounds
    assert clock.order == ["none"] * n + ["bfloat16"] * n
    with pytest.raises(MemoryError):
        precision.time_steps(make_run, ("float16", "none"), 8)


def test_split_optimizers_rule_out_float16():
    from tl_keras.training.config import FinetuneConfig
    from tl_keras.training.runs import split_optimizers
    assert not split_optimizers(FinetuneConfig())
    assert split_optimizers(FinetuneConfig(freeze_encoder=True))
    assert split_optimizers(FinetuneConfig(encoder_lr_multiplier=0.1))
