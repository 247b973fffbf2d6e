"""The training precision: ``--mixed_precision`` forced, or ``auto`` chosen by measurement.

Whether bfloat16 trains faster than float32 is not a property a CPU flag can tell: on one
AVX-512 BF16 Xeon without AMX bfloat16 was 27 % slower than float32, on an AMD EPYC with
the same flags 1.44x faster, on an AMX Xeon faster again (docs/training.md, "Speed").
So ``auto`` measures, once per machine and network shape:

- the candidates: float32, plus bfloat16 where the devices compute it natively (CPU flags
  ``avx512_bf16`` / ``amx_bf16``, GPUs of compute capability >= 8.0) and float16 on GPUs
  of compute capability >= 7.0 (not with ``--jit_compile``, ``--freeze_encoder`` or
  ``--encoder_lr_multiplier``, which refuse it);
- each candidate's training step of the run's own networks is built and run on one batch
  of the run's data: one untimed step each (tracing), then rounds of one timed step per
  candidate, the order reversed every round, :data:`MIN_ROUNDS` to :data:`MAX_ROUNDS`
  rounds until :data:`BUDGET_SECONDS` of timed steps are spent; the medians (slices/s)
  decide. On a GPU the candidates are measured one after the other instead (its memory
  holds one network at a time); a candidate that cannot run (out of memory) is dropped;
- the choice and the figures are kept in the speed cache (:mod:`tl_keras.models.machine`)
  under the machine and the network key, and in the run's ``flags.json`` (a resumed run
  keeps the precision it started with); one line says what was chosen and why.

Under ``--strategy multi_worker`` the workers cannot share one measurement, so ``auto``
means float32 there (pass ``--mixed_precision`` explicitly).
"""
from __future__ import annotations

import dataclasses
import json
import os
import statistics
import sys
import time
from typing import Callable

from tl_keras.models import machine

#: ``--mixed_precision`` value -> Keras dtype policy.
POLICIES = {"none": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}
CACHE_SECTION = "precision"
#: Limits the candidates of ``auto`` (comma-separated: none, bfloat16, float16).
ALLOWED_ENV = "TL_KERAS_AUTO_PRECISIONS"
MIN_ROUNDS = 2
MAX_ROUNDS = 5
#: Seconds of timed steps after which no further round starts (once MIN_ROUNDS are done).
BUDGET_SECONDS = 30.0
HOW = ("forced", "measured", "cached", "recorded", "only candidate", "multi_worker")

_now = time.perf_counter  # tests replace it with a fake clock


def name(precision: str) -> str:
    """``none`` -> ``float32``; the others unchanged."""
    return "float32" if precision == "none" else precision


@dataclasses.dataclass(frozen=True)
class PrecisionChoice:
    """The precision a run trains in, how it was chosen, and the figures it rests on.

    Attributes:
      precision: ``none`` (float32), ``bfloat16`` or ``float16``.
      how: one of :data:`HOW`.
      rates: candidate -> training slices/s (medians of the measurement); empty when
        nothing was measured.
      seconds: what the measurement cost (wall time, building and tracing included).
      network: the network key the measurement is filed under.
    """

    precision: str
    how: str
    rates: dict = dataclasses.field(default_factory=dict)
    seconds: float = 0.0
    network: str = ""

    @property
    def policy(self) -> str:
        return POLICIES[self.precision]

    def figures(self) -> str:
        return ", ".join(f"{name(p)} {r:.2f}" for p, r in
                         sorted(self.rates.items(), key=lambda kv: -kv[1])) + " slices/s"

    def line(self) -> str:
        """The one line a run prints about ``--mixed_precision auto``."""
        head = f"--mixed_precision auto: {self.policy}"
        if self.how == "measured":
            return (f"{head}, the faster here (measured: {self.figures()}; the measurement "
                    f"took {self.seconds:.0f} s, kept in {machine.cache_path()})")
        if self.how == "cached":
            return (f"{head}, the faster here (measured earlier on this machine for this "
                    f"network: {self.figures()}; {machine.cache_path()})")
        if self.how == "recorded":
            return f"{head}, as chosen when this run started (flags.json)"
        if self.how == "only candidate":
            return (f"{head} (the only candidate: no native bfloat16 or float16 here, or "
                    f"{ALLOWED_ENV} rules them out)")
        if self.how == "multi_worker":
            return (f"{head} (--strategy multi_worker: the workers cannot share one "
                    "measurement; pass --mixed_precision bfloat16 to train in bfloat16)")
        return head

    def to_dict(self) -> dict:
        return {"precision": self.precision, "policy": self.policy, "how": self.how,
                "rates": dict(self.rates), "seconds": round(self.seconds, 1),
                "network": self.network}

    @classmethod
    def from_dict(cls, data) -> "PrecisionChoice | None":
        """The choice of a record, or None when it is not a valid one."""
        try:
            choice = cls(str(data["precision"]), str(data["how"]),
                         {str(k): float(v) for k, v in dict(data.get("rates") or {}).items()},
                         float(data.get("seconds") or 0.0), str(data.get("network") or ""))
        except (KeyError, TypeError, ValueError, AttributeError):
            return None
        return choice if choice.precision in POLICIES and choice.how in HOW else None


def candidates(float16: bool = True) -> tuple[str, ...]:
    """The precisions worth measuring on this machine (module docstring), limited to those
    named in ``$TL_KERAS_AUTO_PRECISIONS`` when it is set (e.g. ``none`` keeps ``auto`` at
    float32 without measuring, as the tests do); float32 is always one."""
    found = machine.gpus()
    if not found:
        out = ["none"] + (["bfloat16"] if machine.native_bfloat16() else [])
    else:
        out = ["none"]
        if float16 and all(cc >= (7, 0) for _, cc in found):
            out.append("float16")
        if all(cc >= (8, 0) for _, cc in found):
            out.append("bfloat16")
    allowed = os.environ.get(ALLOWED_ENV, "").strip()
    if allowed:
        names = {p.strip() for p in allowed.split(",")}
        out = [p for p in out if p == "none" or p in names]
    return tuple(out)


def recorded(model_dir: str) -> PrecisionChoice | None:
    """The choice recorded in ``model_dir/flags.json`` by an earlier start of the run."""
    try:
        with open(os.path.join(model_dir, "flags.json")) as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    return PrecisionChoice.from_dict(record.get("precision")) if isinstance(record, dict) \
        else None


def choose(requested: str, network: str, measure: Callable[[tuple], dict] | None,
           *, model_dir: str = "", multi_worker: bool = False,
           float16: bool = True) -> PrecisionChoice:
    """The precision of a run.

    Args:
      requested: ``--mixed_precision`` (``auto`` | ``none`` | ``bfloat16`` | ``float16``).
      network: the network key (what shapes the step: task, network, image, batch...).
      measure: ``candidates -> {candidate: slices/s}``, e.g. :func:`time_steps` over the
        run's own step; called only when nothing is forced, recorded or cached.
      model_dir: the run directory (a choice recorded there by an earlier start wins).
      multi_worker: ``--strategy multi_worker`` (module docstring).
      float16: whether float16 may be a candidate (not with ``--jit_compile`` or split
        optimizers, which refuse it).
    """
    if requested != "auto":
        return PrecisionChoice(requested, "forced", network=network)
    earlier = recorded(model_dir) if model_dir else None
    if earlier is not None:
        return dataclasses.replace(earlier, how="recorded")
    if multi_worker:
        return PrecisionChoice("none", "multi_worker", network=network)
    options = candidates(float16)
    if len(options) == 1:
        return PrecisionChoice(options[0], "only candidate", network=network)
    key = f"{network} | candidates {','.join(options)}"
    entry = PrecisionChoice.from_dict(machine.cached(CACHE_SECTION, key))
    if entry is not None:
        return dataclasses.replace(entry, how="cached")
    t0 = _now()
    rates = measure(options)
    best = max(options, key=lambda p: rates[p])
    choice = PrecisionChoice(best, "measured", {p: rates[p] for p in options}, _now() - t0,
                             network)
    machine.store(CACHE_SECTION, key, choice.to_dict())
    return choice


def time_steps(make_run: Callable[[str], Callable[[], object]], options: tuple,
               slices_per_step: int, together: bool = True) -> dict[str, float]:
    """Training slices/s of each candidate (module docstring: warm-up, alternating rounds,
    medians).

    A candidate other than the first (float32) whose networks cannot be built or run (e.g.
    out of memory) gets rate 0, with a warning; the first's errors propagate.

    Args:
      make_run: candidate -> ``run()``, one training step that returns when it is done
        (builds the candidate's networks and step; called once per candidate).
      options: the candidates, float32 first.
      slices_per_step: the step's batch.
      together: all candidates' networks alive at once, their steps alternating (the
        CPU: a shared machine's load weighs on all alike); False: one candidate after the
        other, each built, timed and dropped (a GPU's memory holds one at a time).
    """
    if not together:
        rates = {}
        for p in options:
            rates.update(time_steps(make_run, (p,), slices_per_step)
                         if p == options[0] else _tolerant(make_run, p, slices_per_step))
        return rates
    runs, rates = {}, {}
    for p in options:
        try:
            runs[p] = make_run(p)
            runs[p]()
        except Exception as e:  # noqa: BLE001 (any failure drops the candidate)
            if p == options[0]:
                raise
            _warn(p, e)
            runs.pop(p, None)
            rates[p] = 0.0
    seconds = {p: [] for p in runs}
    order, spent, rounds = tuple(runs), 0.0, 0
    while rounds < MIN_ROUNDS or (rounds < MAX_ROUNDS and spent < BUDGET_SECONDS):
        for p in (order if rounds % 2 == 0 else order[::-1]):
            t0 = _now()
            runs[p]()
            seconds[p].append(_now() - t0)
            spent += seconds[p][-1]
        rounds += 1
    rates.update({p: slices_per_step / max(statistics.median(s), 1e-9)
                  for p, s in seconds.items()})
    return rates


def _tolerant(make_run, candidate: str, slices_per_step: int) -> dict[str, float]:
    try:
        return time_steps(make_run, (candidate,), slices_per_step)
    except Exception as e:  # noqa: BLE001
        _warn(candidate, e)
        return {candidate: 0.0}


def _warn(candidate: str, error: Exception) -> None:
    first = (str(error).strip().splitlines() or [""])[0][:200]
    print(f"warning: --mixed_precision auto: {name(candidate)} could not be measured "
          f"({type(error).__name__}: {first}); not a candidate", file=sys.stderr, flush=True)
