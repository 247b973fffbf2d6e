"""Fine-tuning set-size sweeps (Fig. 2.3): sources x set sizes x repeats.

Each cell is an ordinary fine-tuning run in ``out_dir/<source>/n<K>/r<r>``, evaluated
on ``--eval_split`` (``evaluated_run``); a cell is complete when its ``result.json``
exists (with the evaluation, under ``--evaluate``), so reruns skip finished cells
and resume unfinished ones from their checkpoints. Cells are dealt round-robin
to ``num_jobs`` jobs (e.g. a SLURM array), and every job re-merges all complete
cells into ``out_dir/sweep_results.csv``. Before the first cell, each job prints what its
cells will take on disk; ``keep_exports`` prunes the exports of evaluated cells
(``disk``).
"""
from __future__ import annotations

import dataclasses
import os
import re
import traceback
from typing import Callable

from tl_keras.models.presets import build_taskonomy_models
from tl_keras.studies import disk
from tl_keras.studies.evaluated_run import finetune_and_evaluate, is_complete
from tl_keras.training import tasks
from tl_keras.training.config import ConfigError, FinetuneConfig
from tl_keras.training.validation import validate_finetune
from tl_keras.training.results import RecordError, read_finetune_result
from tl_keras.training.rundir import claim_run_dir, refuse_input_overlap
from tl_common import lock
from tl_common.cli import expected_error
from tl_common.io import write_csv_atomic
from tl_keras.weights.load_report import WeightLoadError
from tl_keras.weights.spec import InitSpec, checkpoint_task

RESULTS_CSV = "sweep_results.csv"
LEAD_COLUMNS = ["source", "init_from", "train_subjects", "repeat", "subset_seed", "target",
                "seed", "run_dir"]


#: Fine-tuning modes a ``--sources`` entry can carry (``SPEC+frozen`` ...): mode -> the
#: FinetuneConfig fields it sets, from its ``:VALUE`` (None without one).
SOURCE_MODES = {
    "frozen": lambda v: {"freeze_encoder": True, "freeze_epochs": int(v or 0)},
    "enc_lr": lambda v: {"encoder_lr_multiplier": float(v)},
    "decoder": lambda v: {"init_decoder": True},
}
MODE_FIELDS = ("freeze_encoder", "freeze_epochs", "encoder_lr_multiplier", "init_decoder")
_MODE = re.compile(r"^(frozen(:\d+)?|enc_lr:[0-9.eE+-]+|decoder)$")


@dataclasses.dataclass(frozen=True)
class SweepConfig:
    """A sweep: ``sources`` ((name, init spec[, mode]), ...), ``set_sizes`` (0 = all
    subjects), ``repeats`` subsets per size (subset_seed = repeat index), and the
    fine-tuning options shared by every cell (its model_dir / init_from / train_subjects /
    subset_seed are set per cell; a source's mode, a dict of the ``MODE_FIELDS`` from
    :func:`parse_sources`, sets those for its cells, the shared flags otherwise). ``keep_exports``: which
    evaluated cells keep their export (``disk.KEEP_EXPORTS``)."""

    out_dir: str
    sources: tuple
    set_sizes: tuple
    repeats: int
    finetune: FinetuneConfig
    job_index: int = 0
    num_jobs: int = 1
    keep_exports: str = "all"


@dataclasses.dataclass(frozen=True)
class Cell:
    source: str
    init_from: str
    train_subjects: int
    repeat: int
    run_dir: str
    mode: tuple = ()  # (field, value) pairs of the source's fine-tuning mode


def slurm_job(job_index: int, num_jobs: int) -> tuple[int, int]:
    """Resolve ``-1`` / ``0`` defaults from ``SLURM_ARRAY_TASK_ID`` / ``_COUNT`` (else 0 / 1)."""
    env = os.environ
    if job_index < 0:
        job_index = (int(env.get("SLURM_ARRAY_TASK_ID", 0))
                     - int(env.get("SLURM_ARRAY_TASK_MIN", 0)))
    if num_jobs <= 0:
        num_jobs = int(env.get("SLURM_ARRAY_TASK_COUNT", 1))
    if not 0 <= job_index < num_jobs:
        raise ConfigError(f"--job_index={job_index} must be in 0..{num_jobs - 1}")
    return job_index, num_jobs


def _split_modes(item: str) -> tuple[str, dict, str]:
    """``"spec+frozen:5+enc_lr:0.1"`` -> (spec, the mode's config fields, name suffix)."""
    modes, rest = [], item
    while "+" in rest:
        head, _, tail = rest.rpartition("+")
        if not _MODE.match(tail):
            break
        modes.insert(0, tail)
        rest = head
    if not modes:
        return item, {}, ""
    fields = {f: FinetuneConfig.__dataclass_fields__[f].default for f in MODE_FIELDS}
    for mode in modes:
        kind, _, value = mode.partition(":")
        try:
            fields.update(SOURCE_MODES[kind](value or None))
        except ValueError:
            raise ConfigError(f"--sources entry {item!r}: bad value in +{mode}") from None
    suffix = "_" + "_".join(m.replace(":", "") for m in modes)
    return rest, fields, suffix


def parse_sources(items) -> tuple:
    """``["name=spec", "spec", "spec+frozen", ...]`` -> ((name, spec, mode), ...); a bare
    spec is named after its last path part, a bare Taskonomy checkpoint
    ``taskonomy_<task>``, with its modes appended (``random+frozen`` -> ``random_frozen``);
    ``mode`` is a dict of the ``MODE_FIELDS`` or None (``tl_keras.sweep --sources``)."""
    out = []
    for item in items:
        name, sep, spec = item.partition("=")
        if not sep:
            name, spec = "", item
        spec, mode, suffix = _split_modes(spec)
        name = name or (_default_name(spec) + suffix if spec else "")
        if not spec or not name:
            raise ConfigError(f"--sources entry {item!r} must be NAME=SPEC or SPEC")
        out.append((name.replace(":", "_").replace("/", "_"), spec, mode or None))
    if len({n for n, *_ in out}) != len(out):
        raise ConfigError(f"--sources names must be unique: {[n for n, *_ in out]}")
    return tuple(out)


def _default_name(spec: str) -> str:
    try:
        parsed = InitSpec.parse(spec)
    except WeightLoadError as e:
        raise ConfigError(f"--sources: {e}") from None
    if parsed.kind == "taskonomy":
        return f"taskonomy_{parsed.task or checkpoint_task(parsed.path)}"
    return os.path.basename(spec.rstrip("/")) or spec


def grid(config: SweepConfig) -> list[Cell]:
    """Every cell of the sweep in a fixed order (source, set size, repeat)."""
    return [Cell(name, spec, int(k), r,
                 os.path.join(config.out_dir, name, f"n{int(k) or 'all'}", f"r{r}"),
                 tuple(sorted(((mode[0] if mode else None) or {}).items())))
            for name, spec, *mode in config.sources for k in config.set_sizes
            for r in range(config.repeats)]


def job_cells(config: SweepConfig) -> list[Cell]:
    """The cells of job ``job_index`` out of ``num_jobs`` (round-robin)."""
    return grid(config)[config.job_index::config.num_jobs]


def cell_config(config: SweepConfig, cell: Cell) -> FinetuneConfig:
    """The fine-tuning config of ``cell``. The sweep's ``--network`` is the network of the
    sources that carry none (``scratch``, ``random``); a source that carries one (an encoder
    directory, ``keras_hub:``, ``taskonomy:``, ``imagenet:``) fine-tunes its own, so one
    sweep compares encoders of different architectures."""
    c = dataclasses.replace(config.finetune, model_dir=cell.run_dir, init_from=cell.init_from,
                            train_subjects=cell.train_subjects, subset_seed=cell.repeat,
                            **dict(cell.mode))
    try:
        implied = InitSpec.parse(cell.init_from).network()
    except WeightLoadError:  # refused with its own message by the validation
        implied = None
    return dataclasses.replace(c, network=implied) if implied else c


def merge_results(config: SweepConfig) -> str:
    """Collect ``result.json`` of every complete cell into ``sweep_results.csv``.

    Raises:
      RecordError: a cell's ``result.json`` is damaged (names the file and key).
    """
    import pandas as pd
    rows = []
    for cell in grid(config):
        result = read_finetune_result(cell.run_dir)
        if result is not None:
            rows.append({**result.to_dict(), "source": cell.source, "init_from": cell.init_from,
                         "repeat": cell.repeat, "run_dir": cell.run_dir})
    frame = pd.DataFrame(rows)
    lead = [c for c in LEAD_COLUMNS if c in frame.columns]
    frame = frame[lead + sorted(c for c in frame.columns if c not in lead)]
    path = os.path.join(config.out_dir, RESULTS_CSV)
    write_csv_atomic(path, frame)
    return path


def run_sweep(config: SweepConfig, build_models: Callable | None = None) -> dict:
    """Run this job's cells (skipping complete ones), then merge all results.

    Returns:
      ``{"ran": [...], "skipped": [...], "failed": [(run_dir, error)], "csv": path}``.
    """
    mine = job_cells(config)
    if config.keep_exports not in disk.KEEP_EXPORTS:
        raise ConfigError(f"--keep_exports={config.keep_exports}: expected one of "
                          f"{', '.join(disk.KEEP_EXPORTS)}")
    for cell in mine:  # bad flags or missing data fail before any training
        validate_finetune(cell_config(config, cell))
        refuse_input_overlap("--out_dir", config.out_dir, cell_config(config, cell))
    # Jobs of one sweep share out_dir (a SLURM array); the same job twice may not.
    name = f"{lock.LOCK_NAME}-job{config.job_index}of{config.num_jobs}"
    try:
        held = lock.acquire(config.out_dir, name=name, what=f"{config.out_dir} (sweep job "
                            f"{config.job_index + 1}/{config.num_jobs})")
    except lock.LockError as e:
        raise ConfigError(str(e)) from None
    with held:
        return _run_cells(config, mine, build_models)


def _complete(cell: FinetuneConfig, failed: list) -> bool:
    """A finished (and, with ``--evaluate``, evaluated) cell with the same flags; one
    with other flags is refused (appended to ``failed``) or, with ``--overwrite``,
    emptied to run again (rundir.check_flags); so is a damaged ``result.json``."""
    try:
        if not is_complete(cell):
            return False
        with claim_run_dir(cell):
            pass
        return is_complete(cell)
    except (ConfigError, RecordError) as e:
        failed.append((cell.model_dir, f"{type(e).__name__}: {e}"))
        return False


def _run_cells(config: SweepConfig, mine: list[Cell], build_models) -> dict:
    """``run_sweep`` once this job holds its lock."""
    print(f"sweep: job {config.job_index + 1}/{config.num_jobs}: {len(mine)} of "
          f"{len(grid(config))} cells", flush=True)
    if mine:
        print(_disk_estimate(config, mine, build_models), flush=True)
    ran, skipped, failed = [], [], []
    for i, cell in enumerate(mine, 1):
        if _complete(cell_config(config, cell), failed):
            skipped.append(cell.run_dir)
            _prune(config, cell)
            print(f"[{i}/{len(mine)}] {cell.run_dir}: complete, skipped", flush=True)
            continue
        if failed and failed[-1][0] == cell.run_dir:
            print(f"[{i}/{len(mine)}] {cell.run_dir}: FAILED: {failed[-1][1]}", flush=True)
            continue
        print(f"[{i}/{len(mine)}] {cell.run_dir}: fine-tuning from {cell.init_from} on "
              f"{cell.train_subjects or 'all'} subjects (subset {cell.repeat})", flush=True)
        try:
            finetune_and_evaluate(cell_config(config, cell), build_models)
            ran.append(cell.run_dir)
            _prune(config, cell)
        except (ConfigError, OSError, ValueError) as e:
            failed.append((cell.run_dir, f"{type(e).__name__}: {e}"))
            print(f"[{i}/{len(mine)}] {cell.run_dir}: FAILED: {e}", flush=True)
            if not expected_error(e):  # a bug: its traceback
                traceback.print_exc()
    return {"ran": ran, "skipped": skipped, "failed": failed, "csv": merge_results(config)}


def _prune(config: SweepConfig, cell: Cell) -> None:
    """Drop the export of an evaluated cell that ``keep_exports`` does not keep."""
    if config.finetune.evaluate and not disk.keeps_export(config.keep_exports, cell.repeat):
        disk.prune_export(cell.run_dir)


def _disk_estimate(config: SweepConfig, cells: list[Cell], build_models) -> str:
    """``disk.estimate_text`` from a finished cell of the sweep if one still has its
    export, else from the parameters of the first cell's network (built once)."""
    for cell in grid(config):
        model = os.path.join(cell.run_dir, disk.EXPORT_DIR, disk.MODEL_FILE)
        if os.path.exists(model) and is_complete(cell_config(config, cell)):
            return disk.estimate_text(cells, disk.folder_bytes(cell.run_dir),
                                      os.path.getsize(model), config.keep_exports,
                                      config.out_dir, measured=True)
    export = _parameter_bytes(cell_config(config, cells[0]), build_models)
    # a finished cell beside its export: the evaluation CSVs, examples, logs (~0.3 MB)
    return disk.estimate_text(cells, export + 300_000, export, config.keep_exports,
                              config.out_dir, measured=False)


def _parameter_bytes(cell: FinetuneConfig, build_models) -> int:
    """Bytes of the cell's export: its network's float32 weights, ~2 kB of HDF5 per
    weight array (measured on the compact network's export) and the model's config."""
    import keras

    task = tasks.get("target")
    meta = validate_finetune(cell)
    models = (build_models or build_taskonomy_models)(
        cell, meta, network=task.network, num_outputs=task.num_outputs(meta))
    model = models.model
    size = 4 * model.count_params() + 2048 * len(model.weights) + len(model.to_json())
    keras.backend.clear_session()
    return size
