"""Progress of a long loop on stderr: a tqdm bar on a terminal, log lines elsewhere.

On a terminal the bar shows count, rate, ETA and a status (e.g. the current losses).
When stderr is not a terminal (a SLURM log, a pipe, a CI job) a bar would write
hundreds of carriage-return frames, so one plain line is written every ``interval``
seconds instead. The status is a callable, evaluated only when something is shown:
reading a loss from the device is a host sync, which the training loop must not pay
on every step.
"""
from __future__ import annotations

import math
import sys
import time
from typing import Callable

from tqdm import tqdm

#: Seconds between log lines when stderr is not a terminal.
LOG_INTERVAL = 30.0
#: Seconds between status refreshes of a terminal bar.
BAR_INTERVAL = 1.0


def format_duration(seconds: float) -> str:
    """``h:mm:ss`` (``?`` when unknown)."""
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class Progress:
    """Count ``update`` calls towards ``total`` and show them (module docstring).

    Args:
      total: items expected (None if unknown: no percentage or ETA).
      desc: what is counted, e.g. ``epoch 2/30`` or ``evaluate``.
      unit: the item name, e.g. ``step``, ``slice``, ``scan``.
      initial: items already done (a resumed epoch).
      enabled: False shows nothing.
      interval: seconds between log lines when not on a terminal.
      stream: where to write (stderr).
      clock: time source (tests pass a fake one).
    """

    def __init__(self, total: int | None, desc: str, unit: str = "it", *, initial: int = 0,
                 enabled: bool = True, interval: float = LOG_INTERVAL, stream=None,
                 clock: Callable[[], float] = time.monotonic):
        self.total, self.desc, self.unit = total, desc, unit
        self.done, self.enabled, self.interval = initial, enabled, interval
        self.stream = stream if stream is not None else sys.stderr
        self.clock = clock
        self.start_count, self.t0 = initial, clock()
        self.next_show = self.t0 + (BAR_INTERVAL if self._tty() else interval)
        self.bar = None
        if enabled and self._tty():
            self.bar = tqdm(total=total, desc=desc, unit=unit, initial=initial,
                            file=self.stream, dynamic_ncols=True, leave=False)

    def _tty(self) -> bool:
        isatty = getattr(self.stream, "isatty", None)
        return bool(isatty and isatty())

    def update(self, n: int = 1, status: Callable[[], str] | None = None) -> None:
        """Count ``n`` more items; ``status()`` is called only if it will be shown."""
        self.done += n
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(n)
        now = self.clock()
        if now < self.next_show:
            return
        text = status() if status is not None else ""
        if self.bar is not None:
            self.next_show = now + BAR_INTERVAL
            self.bar.set_postfix_str(text)  # and redraw
            return
        self.next_show = now + self.interval
        print(self.line(now, text), file=self.stream, flush=True)

    def line(self, now: float, status: str = "") -> str:
        """``desc: done/total unit (pct %) | rate unit/s | ETA h:mm:ss | status``."""
        rate = (self.done - self.start_count) / max(now - self.t0, 1e-9)
        parts = [f"{self.desc}: {self.done}/{self.total or '?'} {self.unit}"]
        if self.total:
            parts[0] += f" ({100 * self.done / self.total:.0f} %)"
        parts.append(f"{rate:.2f} {self.unit}/s")
        if self.total:
            eta = (self.total - self.done) / rate if rate > 0 else float("inf")
            parts.append(f"ETA {format_duration(eta)}")
        if status:
            parts.append(status)
        return " | ".join(parts)

    def close(self) -> None:
        """Remove the bar (the caller prints its own summary line)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
