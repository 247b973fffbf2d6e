"""What a weight load did: matched, skipped, missing, unexpected and mis-shaped tensors."""
from __future__ import annotations

import dataclasses

from tl_common.cli import UserError


class WeightLoadError(UserError, ValueError):
    """A weight source does not fit the target model (strict mode) or cannot be read."""


def _listing(names, limit: int = 8) -> str:
    names = list(names)
    shown = ", ".join(str(n) for n in names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


@dataclasses.dataclass
class LoadReport:
    """Outcome of loading weights from ``source`` into Keras models.

    Attributes:
      source: the file or spec the weights came from.
      matched: ``(source tensor, target variable path)`` pairs that were assigned.
      skipped: source tensor -> reason (optimizer slots, ``global_step``, parts not
        requested, the ImageNet classifier ...): deliberately not used.
      missing: target weights (checkpoint-style names) that no source tensor provides.
      unexpected: source tensors of a requested part that match no target weight.
      mismatched: ``(name, source shape, target shape)`` for tensors of the wrong shape.
      left_random: target weights the source cannot provide by design (e.g. ``compress1``
        from ImageNet); they keep their initialisation and never fail strict mode.
      notes: human-readable remarks (adaptations such as summing conv1 over RGB).
      adapted: ``(name, source shape, target shape)`` of tensors loaded after an
        adaptation (the first convolution's RGB kernels summed for one input channel).
      reinitialised: ``(name, reason)`` of target weights a partial load left at their
        fresh initialisation (another shape, or absent from the source).
    """

    source: str
    matched: list = dataclasses.field(default_factory=list)
    skipped: dict = dataclasses.field(default_factory=dict)
    missing: list = dataclasses.field(default_factory=list)
    unexpected: list = dataclasses.field(default_factory=list)
    mismatched: list = dataclasses.field(default_factory=list)
    left_random: list = dataclasses.field(default_factory=list)
    notes: list = dataclasses.field(default_factory=list)
    adapted: list = dataclasses.field(default_factory=list)
    reinitialised: list = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing is missing, unexpected or mis-shaped."""
        return not (self.missing or self.unexpected or self.mismatched)

    def problems(self) -> list[str]:
        """One line per kind of problem (empty when :attr:`ok`)."""
        out = []
        if self.missing:
            out.append(f"{len(self.missing)} missing in source: {_listing(self.missing)}")
        if self.unexpected:
            out.append(f"{len(self.unexpected)} unexpected in source: {_listing(self.unexpected)}")
        if self.mismatched:
            out.append(f"{len(self.mismatched)} shape mismatches (source vs model): " + _listing(
                f"{n} {tuple(s)} vs {tuple(t)}" for n, s, t in self.mismatched))
        return out

    def summary(self) -> str:
        """A short multi-line summary for logs."""
        reasons: dict[str, int] = {}
        for reason in self.skipped.values():
            reasons[reason] = reasons.get(reason, 0) + 1
        lines = [f"weights from {self.source}: {len(self.matched)} matched, "
                 f"{len(self.skipped)} skipped, {len(self.missing)} missing, "
                 f"{len(self.unexpected)} unexpected, {len(self.mismatched)} mis-shaped, "
                 f"{len(self.left_random)} left at random initialisation"]
        lines += [f"  skipped {n}: {r}" for r, n in sorted(reasons.items())]
        if self.left_random:
            lines.append(f"  left random: {_listing(self.left_random)}")
        lines += [f"  note: {n}" for n in self.notes]
        lines += [f"  PROBLEM: {p}" for p in self.problems()]
        return "\n".join(lines)

    def table(self) -> str:
        """What happened to every tensor, as a text table: ``loaded`` (counted per layer
        group: the first part of the name), ``adapted``, ``re-initialised``, ``left random``,
        ``skipped`` (one row each, with the reason)."""
        adapted = {name for name, _, _ in self.adapted}
        groups: dict[str, int] = {}
        for name, _ in self.matched:
            if name not in adapted:
                group = name.split("/")[0]
                groups[group] = groups.get(group, 0) + 1
        rows = [("loaded", f"{group}/*", f"{n} tensor{'s' * (n != 1)}")
                for group, n in groups.items()]
        rows += [("adapted", name, f"{tuple(s)} -> {tuple(t)}: RGB kernels summed")
                 for name, s, t in self.adapted]
        rows += [("re-initialised", name, reason) for name, reason in self.reinitialised]
        rows += [("left random", name, "the source has no such tensor by design")
                 for name in self.left_random]
        rows += [("skipped", name, reason) for name, reason in self.skipped.items()]
        width = max([len(r[1]) for r in rows] + [6])
        lines = [f"{'status':<15} {'tensor':<{width}} detail"]
        lines += [f"{s:<15} {n:<{width}} {d}" for s, n, d in rows]
        return "\n".join(lines)

    def raise_if_failed(self) -> None:
        """Raise :class:`WeightLoadError` naming the offending tensors unless :attr:`ok`."""
        if not self.ok:
            raise WeightLoadError(f"{self.source}: " + "; ".join(self.problems()))
