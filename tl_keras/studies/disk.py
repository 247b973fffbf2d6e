"""What a sweep keeps on disk: the estimate printed before it starts, and pruning.

A finished cell holds its export (``export/segmentation.keras``: every weight of the
network, float32, about 155 MB for the Taskonomy ResNet-50 U-Net and 1.8 MB for the
quickstart's compact network), its evaluation folder, ``result.json`` and a few small
files; its checkpoints are removed when training ends. So the export is the cost:
about 170 GB for the stroke sweep's 1,100 cells on the ResNet-50.

``KEEP_EXPORTS`` (``--keep_exports``) says which cells keep it once they are evaluated:
- ``all``: every cell (re-evaluate or predict with any of them);
- ``first``: repeat 0 of every source and set size (one model of each to predict
  with or to re-evaluate; the report needs none of them);
- ``none``: no cell; the report, the merge and a rerun (which skips evaluated
  cells) read ``result.json`` and the evaluation folder only.
``export/model.json`` (the run record) always stays. A cell that is not evaluated
(``--noevaluate``) keeps its export whatever the option: evaluating needs it.
"""
from __future__ import annotations

import os
import shutil

from tl_keras.models.export import EXPORT_DIR, MODEL_FILE

KEEP_EXPORTS = ("all", "first", "none")


def size_text(n: float) -> str:
    """Bytes with 3 significant digits and a decimal unit: "141 kB", "1.76 MB", "170 GB"."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{int(n)} B"


def folder_bytes(path: str) -> int:
    """Bytes of the files below ``path`` (0 when it does not exist)."""
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(folder, name))
            except OSError:  # removed meanwhile (another job pruning)
                pass
    return total


def keeps_export(keep: str, repeat: int) -> bool:
    """Whether a cell of ``repeat`` keeps its export under ``keep``."""
    if keep not in KEEP_EXPORTS:
        raise ValueError(f"keep_exports must be one of {KEEP_EXPORTS}, got {keep!r}")
    return keep == "all" or (keep == "first" and repeat == 0)


def prune_export(run_dir: str) -> int:
    """Delete the export's model file of an evaluated cell; returns the bytes freed."""
    path = os.path.join(run_dir, EXPORT_DIR, MODEL_FILE)
    if not os.path.exists(path):
        return 0
    size = os.path.getsize(path)
    os.remove(path)
    return size


def estimate_text(cells: list, cell_bytes: int, export_bytes: int, keep: str,
                  out_dir: str, measured: bool) -> str:
    """One paragraph: what the cells will take on disk, and the free space there.

    Args:
      cells: the cells to run (with ``repeat``).
      cell_bytes: bytes of one finished cell with its export.
      export_bytes: bytes of the export's model file (the part ``keep`` prunes).
      keep: the ``KEEP_EXPORTS`` option.
      out_dir: the sweep folder (for the free space).
      measured: ``cell_bytes`` was measured on a finished cell (else estimated from the
        network's parameter count).
    """
    kept = sum(keeps_export(keep, c.repeat) for c in cells)
    total = len(cells) * (cell_bytes - export_bytes) + kept * export_bytes
    everything = len(cells) * cell_bytes
    os.makedirs(out_dir, exist_ok=True)
    free = shutil.disk_usage(out_dir).free
    how = "measured on a finished cell" if measured else "from the network's parameters"
    text = (f"disk: {len(cells)} cells of ~{size_text(cell_bytes)} each ({how}; the export "
            f"~{size_text(export_bytes)} of it): ~{size_text(total)} kept with "
            f"--keep_exports={keep}")
    if keep != "all":
        text += f" (~{size_text(everything)} with all)"
    text += f"; {size_text(free)} free in {out_dir}"
    if total > free:
        text += ". NOT ENOUGH FREE SPACE: use --keep_exports=first or none"
    elif keep == "all" and everything > 1e9:
        text += ". --keep_exports=first or none keeps less"
    return text
