"""The conversion pipeline: output folder claim, worker processes, per-subject cache."""
