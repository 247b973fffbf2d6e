"""The whole transfer-learning study, end to end, on data built offline.

    python -m tl_keras.quickstart --workdir qs           # <= 15 min on 2 cores (README)
    python -m tl_keras.quickstart --workdir qs --tiny    # ~2 min: the pipeline check

Stages (each resumes when rerun on the same ``--workdir``):
  1. SYNTHETIC phantom cohorts (``tfrecords_tools.phantoms``): a source cohort
     (tissue / structure labels) and a stroke-like target cohort, converted to
     64 px shards (registration to MNI152 at 4 mm included).
  2. Natural-image shards from scikit-image's bundled photographs.
  3. Pre-training of the chosen sources (``--sources``, ``SOURCES``; by default
     ``DEFAULT_SOURCES``: T1 segmentation, T1 auto-encoding (L1 + GAN), T1
     classification, natural-image segmentation).
  4. A fine-tuning sweep on the lesion target: each source and scratch x set
     sizes x repeats (by default 10 subsets of 4 subjects), each cell evaluated
     on the test split. Fine-tuning uses the skip-connected decoder
     (``--decoder_variant unet``, default; ``paper`` for the /16-latent one) and
     cross-entropy (lesion weight 20) + soft Dice; these, the step count, the set
     size and the repeats were chosen on the validation split (docs/decoders.md,
     docs/study.md).
  5. The report: tables (CSV, Markdown) and figures (PNG); ``summary.md`` opens
     with ``SYNTHETIC_NOTE``.

Networks (``--network``): ``compact`` (default; a small conv encoder, /16
latent of ``latent_channels``, with the same interfaces as the Taskonomy
networks), ``tiny`` (the same 4x narrower; ``--tiny`` uses it) and ``taskonomy``
(the ResNet-50 networks: tracing and training them costs ~100 s per fine-tuning
run on 2 CPU cores, so the full study takes hours there). ``--tiny`` also uses
fewer subjects, steps and cells: it checks the machinery, its numbers mean nothing.
"""
from __future__ import annotations

import dataclasses
import os
import sys
import time

from absl import flags

from tfrecords_tools.dataset_meta import DATASET_JSON, read_dataset_meta
from tfrecords_tools.scans.config import PreprocessConfig
from tl_common import cli
from tl_common.io import write_csv_atomic
from tl_common.runinfo import record_run
from tl_keras.models import presets
from tl_keras.studies import parallel
from tl_keras.studies.parallel import JobsFailed
from tl_keras.training.config import ConfigError, FinetuneConfig, PretrainConfig
from tl_keras.training.tasks.autoencoding import AutoencodingOptions

NETWORKS = tuple(presets.NETWORKS)  # the fixed networks of the one registry


@dataclasses.dataclass(frozen=True)
class Source:
    """A source the quickstart can fine-tune from (``--sources``).

    Attributes:
      name: its name (the sweep's cell folder).
      init_from: a fixed ``--init_from`` spec (``scratch``, ``random``), or empty when
        the quickstart pre-trains the encoder itself:
      data: which of its data sets it pre-trains on (``build_data``'s names),
      task: the pre-training task,
      domain: the source domain.
      mode: a fine-tuning mode of the sweep's ``--sources`` grammar (``frozen``: the
        encoder stays as loaded), or empty.
    """

    name: str
    init_from: str = ""
    data: str = ""
    task: str = ""
    domain: str = ""
    mode: str = ""


#: Every source ``--sources`` can pick, in the sweep's order.
SOURCES = {s.name: s for s in (
    Source("t1_segmentation", data="t1_source", task="segmentation", domain="t1"),
    Source("t1_autoencoding", data="t1_source", task="autoencoding", domain="t1"),
    Source("t1_classification", data="t1_source", task="classification", domain="t1"),
    Source("natural_segmentation", data="natural", task="segmentation", domain="natural"),
    # Self-supervised sources (docs/sources.md): they pre-train on the images alone.
    Source("t1_restoration", data="t1_source", task="restoration", domain="t1"),
    Source("t1_masked_modeling", data="t1_source", task="masked_modeling", domain="t1"),
    Source("t1_simsiam", data="t1_source", task="simsiam", domain="t1"),
    Source("natural_restoration", data="natural", task="restoration", domain="natural"),
    Source("scratch", init_from="scratch"),
    # The control: a seeded random encoder kept frozen (only the decoder learns), so a
    # source's gain over it is what its pre-trained features add (docs/study.md).
    Source("random_frozen", init_from="random", mode="frozen"),
)}
REFERENCE_SOURCE = "scratch"  # every report compares with it, so every study has it
#: The default study's sources. Its cost grows with their number: each costs
#: ``repeats`` fine-tuning runs per set size (~17 CPU-s each on the compact network,
#: docs/study.md), plus its pre-training.
#: The paper's T1 segmentation and auto-encoding and natural segmentation, the cheapest
#: self-supervised source (Models Genesis restoration) and the frozen random encoder; the
#: others (t1_classification, masked modelling, SimSiam, ...) are one ``--sources`` away.
DEFAULT_SOURCES = ("t1_segmentation", "t1_autoencoding", "t1_restoration",
                   "natural_segmentation", "random_frozen", "scratch")

#: The first paragraph of the quickstart's summary.md.
SYNTHETIC_NOTE = ("**These results come from SYNTHETIC phantom cohorts** (deformed MNI "
                  "templates with painted lesions, built by the quickstart), not from patients: "
                  "they check that the toolkit measures transfer, and they are no evidence about "
                  "what transfers on real scans.")


@dataclasses.dataclass(frozen=True)
class QuickstartConfig:
    """Sizes of the quickstart study (see ``plan``)."""

    workdir: str
    network: str = "compact"
    decoder_variant: str = "unet"  # fine-tuning decoder; "paper" = the /16-latent decoder
    loss: str = "cross_entropy_dice"
    class_weights: str = "foreground"  # background 1, lesion foreground_weight
    foreground_weight: float = 20.0    # chosen on the val split (docs/decoders.md)
    # float32 on every machine, so the study's numbers do not depend on the CPU's bfloat16 units
    mixed_precision: str = "none"
    source_subjects: int = 12
    target_subjects: int = 27      # split into train / val / test below
    test_subjects: int = 6
    val_subjects: int = 4          # settings are chosen on these (docs/decoders.md)
    natural_images: int = 48
    resolution: float = 4.0        # mm; the 4 mm MNI grid pads to 64 px slices
    pretrain_steps: int = 300
    # Fine-tuning length in epochs, as in the paper (steps grow with the set size: 100 steps
    # at 4 subjects); chosen on the val split: 5 epochs did as well as 8 or 12 there at 2/3
    # or less of the cost (docs/study.md).
    finetune_epochs: int = 5
    finetune_steps: int = 0        # > 0: this many steps instead (--tiny)
    # The per-epoch validation loss costs ~10-20 % of a fine-tuning run here and chooses
    # nothing (the last weights are evaluated), so the sweep's runs skip it.
    finetune_validate: bool = False
    learning_rate: float = 3e-3    # the paper's 1e-4 barely moves weights in so few steps
    disc_start_step: int = 150
    batch_size: int = 8
    # One small set size, 10 subsets: every source gets 10 pairs with scratch, enough for
    # Holm's correction over the report's comparisons (docs/study.md has the budget).
    set_sizes: tuple = (4,)
    repeats: int = 10
    sources: tuple = DEFAULT_SOURCES
    workers: int = 2               # conversion worker processes
    # Training processes, each with one TensorFlow thread: a 64 px network keeps two cores
    # busier as two single-threaded runs than as one two-threaded run (docs/decoders.md).
    train_workers: int = 2
    seed: int = 0


def plan(workdir: str, tiny: bool, network: str | None = None, **overrides) -> QuickstartConfig:
    """The default study, or the ``--tiny`` one."""
    if tiny:
        base = QuickstartConfig(workdir, network="tiny", source_subjects=3, target_subjects=7,
                                test_subjects=2, val_subjects=1, natural_images=8,
                                pretrain_steps=6, finetune_steps=4, disc_start_step=3, batch_size=2,
                                set_sizes=(2, 4), repeats=2, workers=1)
    else:
        base = QuickstartConfig(workdir)
    if network:
        overrides["network"] = network
    return dataclasses.replace(base, **overrides)


def _log(msg: str) -> None:
    print(f"[quickstart {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _cohort(out_dir: str, n: int, seed: int, resolution: float, test: int, val: int) -> str:
    """A phantom cohort whose manifest has ``test`` test and ``val`` validation subjects
    (fewer when n is small: at least two stay for training), the rest train."""
    import pandas as pd
    from tfrecords_tools.synthetic import phantoms
    path = phantoms.make_cohort(out_dir, n, lesions="stroke", seed=seed, resolution=resolution)
    frame = pd.read_csv(path)
    splits = ["test"] * test + ["val"] * max(min(val, n - test - 2), 0)
    frame["split"] = splits + ["train"] * (len(frame) - len(splits))
    out = os.path.join(out_dir, "quickstart_manifest.csv")
    write_csv_atomic(out, frame)
    return out


def build_data(c: QuickstartConfig) -> dict[str, str]:
    """Stages 1-2: phantom cohorts and natural images to shards; returns data dirs."""
    from tfrecords_tools.conversion import pipeline as conv
    from tfrecords_tools.synthetic.natural_samples import convert_skimage_samples
    data = os.path.join(c.workdir, "data")
    dirs = {}
    # Slice cropping: the paper's BAHC (source) and stroke (target) defaults.
    for name, n, seed, test, val, crop in (
            ("t1_source", c.source_subjects, c.seed + 1, 0, 1, 61),
            ("stroke_target", c.target_subjects, c.seed + 2, c.test_subjects, c.val_subjects,
             29)):
        pre = PreprocessConfig.for_resolution(c.resolution, crop_top=crop)
        out = os.path.join(data, name)
        if not _complete(out):
            _log(f"phantom cohort '{name}': {n} SYNTHETIC subjects, converting to shards")
            manifest = _cohort(os.path.join(data, f"{name}_nifti"), n, seed, c.resolution, test,
                               val)
            conv.convert(manifest, out, pre, workers=c.workers, num_shards=2,
                         split_seed=c.seed)
        dirs[name] = out
    natural = os.path.join(data, "natural")
    if not os.path.exists(os.path.join(natural, DATASET_JSON)):
        _log(f"natural images: {c.natural_images} crops of scikit-image's photographs")
        convert_skimage_samples(natural, num_images=c.natural_images,
                                image_size=pre.slice_size, seed=c.seed, num_shards=2)
    dirs["natural"] = natural
    return dirs


def _complete(out_dir: str) -> bool:
    """True when ``out_dir`` holds a finished conversion (dataset.json says complete)."""
    if not os.path.exists(os.path.join(out_dir, DATASET_JSON)):
        return False
    return read_dataset_meta(out_dir).complete


def check_sources(names) -> tuple:
    """``names`` of ``SOURCES``, checked: known, unique, with the reference (scratch).

    Raises:
      ConfigError: naming the flag and the problem.
    """
    names = tuple(names)
    unknown = [n for n in names if n not in SOURCES]
    if unknown:
        raise ConfigError(f"--sources: unknown {', '.join(unknown)}; known: "
                          f"{', '.join(SOURCES)}")
    if len(set(names)) != len(names):
        raise ConfigError(f"--sources: a source is named twice: {','.join(names)}")
    if REFERENCE_SOURCE not in names:
        raise ConfigError(f"--sources must include {REFERENCE_SOURCE}: every source is "
                          f"compared with it")
    return names


def pretrain_all(c: QuickstartConfig, dirs: dict[str, str]) -> dict[str, str]:
    """Stage 3: pre-train each chosen source that needs it (``train_workers`` at a time);
    returns source name -> ``--init_from`` spec (the encoder directory, or the fixed spec)."""
    from tl_keras.training.pretraining import ENCODER_BEST, ENCODER_LAST
    chosen = [SOURCES[n] for n in c.sources]
    encoders, configs = {}, []
    for source in chosen:
        if source.init_from:
            continue
        name, data, task, domain = source.name, source.data, source.task, source.domain
        model_dir = os.path.join(c.workdir, "pretrain", name)
        configs.append(PretrainConfig(data_dir=dirs[data], model_dir=model_dir, task=task,
                                      domain=domain, batch_size=c.batch_size,
                                      max_steps=c.pretrain_steps, epochs=1,
                                      learning_rate=c.learning_rate,
                                      mixed_precision=c.mixed_precision,
                                      task_options=_task_options(task, c), seed=c.seed,
                                      network=c.network,
                                      log_every=max(c.pretrain_steps // 4, 1),
                                      checkpoint_every=c.pretrain_steps))
        encoders[name] = model_dir
    fixed = {s.name: s.init_from for s in chosen if s.init_from}
    if not configs:
        return fixed
    _log(f"pre-training {len(configs)} sources ({c.pretrain_steps} steps each): "
         + ", ".join(encoders))
    # Longest first (natural images: 75 short epochs, each validated and saved), so two
    # workers finish together.
    jobs = [(_pretrain_job, (config,))
            for config in sorted(configs, key=lambda config: config.domain != "natural")]
    done = lambda: sum(os.path.isdir(os.path.join(d, ENCODER_LAST))  # noqa: E731
                       for d in encoders.values())
    parallel.run_jobs(jobs, c.train_workers, os.path.join(c.workdir, "logs", "pretrain"),
                      "pre-training", "run", done)
    for name, model_dir in encoders.items():
        best = os.path.join(model_dir, ENCODER_BEST)
        encoders[name] = best if os.path.isdir(best) else os.path.join(model_dir, ENCODER_LAST)
    return {s.name: encoders.get(s.name) or fixed[s.name] for s in chosen}


def _task_options(task: str, c: QuickstartConfig):
    """The study's options of ``task`` (the GAN starts at ``disc_start_step``), else None:
    the task's defaults."""
    if task == "autoencoding":
        return AutoencodingOptions(disc_start_step=c.disc_start_step)
    return None


def _pretrain_job(config) -> None:
    from tl_keras.training import run_pretrain
    run_pretrain(config)


def sweep_sources(encoders: dict[str, str]) -> tuple:
    """The sweep's sources (``sweeps.parse_sources``) of ``{name: init spec}``, with each
    source's fine-tuning mode."""
    from tl_keras.studies.sweeps import parse_sources
    return parse_sources([f"{name}={spec}" + (f"+{SOURCES[name].mode}" if SOURCES[name].mode
                                             else "") for name, spec in encoders.items()])


def sweep(c: QuickstartConfig, dirs: dict[str, str], encoders: dict[str, str]) -> str:
    """Stage 4: the fine-tuning sweep; returns the merged results CSV."""
    from tl_keras.studies.sweeps import SweepConfig, grid, merge_results
    from tl_keras.training.runs import RESULT_FILE
    sources = sweep_sources(encoders)
    finetune = FinetuneConfig(data_dir=dirs["stroke_target"], target="stroke",
                              batch_size=c.batch_size, max_steps=c.finetune_steps,
                              epochs=c.finetune_epochs, validate=c.finetune_validate,
                              learning_rate=c.learning_rate,
                              decoder_variant=c.decoder_variant, loss=c.loss,
                              network=c.network,
                              class_weights=c.class_weights,
                              foreground_weight=c.foreground_weight,
                              mixed_precision=c.mixed_precision,
                              seed=c.seed, log_every=50, checkpoint_every=1000)
    base = SweepConfig(out_dir=os.path.join(c.workdir, "sweep"), sources=sources,
                       set_sizes=tuple(c.set_sizes), repeats=c.repeats, finetune=finetune)
    cells = grid(base)
    _log(f"fine-tuning sweep: {len(sources)} sources x sizes {list(c.set_sizes)} x "
         f"{c.repeats} repeats = {len(cells)} runs")
    jobs = min(c.train_workers, len(cells))
    configs = [dataclasses.replace(base, job_index=i, num_jobs=jobs) for i in range(jobs)]
    done = lambda: sum(os.path.exists(os.path.join(cell.run_dir, RESULT_FILE))  # noqa: E731
                       for cell in cells)
    parallel.run_jobs([(_sweep_job, (config,)) for config in configs], jobs,
                      os.path.join(c.workdir, "logs", "sweep"), "fine-tuning", "run", done,
                      total=len(cells))
    return merge_results(base)


def _sweep_job(config) -> None:
    """One sweep job (its share of the cells); a failed cell fails the quickstart."""
    from tl_keras.studies.sweeps import run_sweep
    result = run_sweep(config)
    if result["failed"]:
        raise JobsFailed(f"{len(result['failed'])} sweep cells failed, first: "
                         f"{result['failed'][0][0]}: {result['failed'][0][1]}")


def report(c: QuickstartConfig) -> dict[str, str]:
    """Stage 5: tables and figures from every cell's evaluation."""
    from tl_keras.evaluation.study_report import load_results, write_report
    out = os.path.join(c.workdir, "report")
    return write_report(load_results([os.path.join(c.workdir, "sweep")]), out,
                        preamble=SYNTHETIC_NOTE)


def run_quickstart(c: QuickstartConfig) -> dict[str, str]:
    """Run every stage; returns the report outputs (name -> path)."""
    if c.network not in NETWORKS:
        raise ConfigError(f"--network must be one of {NETWORKS}, got {c.network!r}")
    check_sources(c.sources)
    t0 = time.time()
    os.makedirs(c.workdir, exist_ok=True)
    record_run(c.workdir, c, seed=c.seed, name="quickstart.json")
    dirs = build_data(c)
    encoders = pretrain_all(c, dirs)
    sweep_csv = sweep(c, dirs, encoders)
    written = report(c)
    written["sweep_results"] = sweep_csv
    _log(f"done in {time.time() - t0:.0f} s. Results:")
    for name, path in sorted(written.items()):
        print(f"  {name:14s} {path}")
    return written


def define_flags(flag_values: flags.FlagValues) -> None:
    """Define the absl flags of the CLI on ``flag_values``."""
    fv = {"flag_values": flag_values}
    flags.DEFINE_string("workdir", None, "Output folder (a rerun resumes).", **fv)
    flags.DEFINE_bool("tiny", False, "Tiny study with the tiny network: a ~2 min check.", **fv)
    flags.DEFINE_enum("network", None, list(NETWORKS),
                      "compact (default), tiny (default with --tiny) or taskonomy (ResNet-50).",
                      **fv)
    flags.DEFINE_enum("decoder_variant", "unet", ["unet", "paper"],
                      "Fine-tuning decoder: unet (skip-connected, default) or paper (the "
                      "/16-latent decoder of the paper's experiments).", **fv)
    flags.DEFINE_integer("seed", 0, "Seed of the cohorts, splits and training.", **fv)
    flags.DEFINE_integer("repeats", None, "Random training subsets per set size (default 10; "
                         "2 with --tiny). The report's verdicts need at least 6, and more "
                         "the more sources and set sizes it compares (docs/study.md).", **fv)
    flags.DEFINE_list("sources", list(DEFAULT_SOURCES),
                      f"Sources to fine-tune from, of {', '.join(SOURCES)}; must include "
                      f"{REFERENCE_SOURCE}. Each adds its pre-training and `repeats` runs per "
                      f"set size.", **fv)
    flags.DEFINE_list("set_sizes", None, "Fine-tuning set sizes in subjects (default 4; 2,4 "
                      "with --tiny).", **fv)
    flags.DEFINE_integer("workers", None,
                         "Conversion worker processes (default 2; 1 with --tiny).", **fv)
    flags.DEFINE_integer("train_workers", None,
                         "Pre-training / fine-tuning processes at once, each with one "
                         "TensorFlow thread (default 2; 1 runs them in this process).", **fv)
    flags.mark_flag_as_required("workdir", **fv)


def run(f: flags.FlagValues, args) -> None:
    """Plan the study from the flags and run every stage."""
    overrides = {"seed": f.seed, "decoder_variant": f.decoder_variant,
                 "sources": check_sources(f.sources)}
    for name in ("workers", "repeats", "train_workers"):
        if f[name].value:
            overrides[name] = f[name].value
    if f.set_sizes:
        try:
            overrides["set_sizes"] = tuple(int(k) for k in f.set_sizes)
        except ValueError:
            raise ConfigError(f"--set_sizes={','.join(f.set_sizes)}: not integers") from None
    run_quickstart(plan(f.workdir, f.tiny, f.network, **overrides))


FLAGS = flags.FlagValues()
define_flags(FLAGS)
main = cli.make_main("quickstart", FLAGS, __doc__, run, tensorflow=True)

if __name__ == "__main__":
    sys.exit(main())
