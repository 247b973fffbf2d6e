"""Run a fine-tuning sweep: sources x set sizes x repeats, resumable, splittable.

Usage: ``python -m tl_keras.sweep --flagfile experiments/sweep_stroke.flags``; in a
SLURM array job (``sbatch --array=0-9``) each task takes its share of the cells.
Every fine-tuning flag of ``tl_keras.finetune`` applies to all cells.
"""
import sys

from absl import flags

from tl_common import cli, console
from tl_keras.training.config import ConfigError, FinetuneConfig
from tl_keras.training.flags import config_from_flags, define_config_flags

SOURCES_HELP = ("[NAME=]SPEC[+MODE...] per source, SPEC as --init_from; MODE: frozen (encoder "
                "frozen for the whole run), frozen:N (the first N epochs), enc_lr:X (encoder "
                "LR multiplier), decoder (--init_decoder); e.g. random+frozen")

FLAGS = flags.FlagValues()
_F = {"flag_values": FLAGS}
flags.DEFINE_string("out_dir", "", "sweep directory: one run directory per cell, "
                    "sweep_results.csv", **_F)
flags.DEFINE_list("sources", ["scratch"], SOURCES_HELP, **_F)
flags.DEFINE_list("set_sizes", ["10", "20", "30", "40", "50", "60", "70", "80", "90", "100"],
                  "fine-tuning set sizes in subjects (0 = all)", **_F)
flags.DEFINE_integer("repeats", 10, "random subsets per set size (subset_seed 0..repeats-1)",
                     **_F)
flags.DEFINE_integer("job_index", -1, "this job's index (default SLURM_ARRAY_TASK_ID or 0)",
                     **_F)
flags.DEFINE_integer("num_jobs", 0, "number of jobs (default SLURM_ARRAY_TASK_COUNT or 1)",
                     **_F)
flags.DEFINE_bool("merge_only", False, "only merge complete cells into sweep_results.csv", **_F)
# All fine-tuning flags, so a sweep flagfile can include a fine-tuning one; --model_dir,
# --init_from, --train_subjects and --subset_seed are set per cell.
define_config_flags(FinetuneConfig, flag_values=FLAGS)


def run(f: flags.FlagValues, args) -> None:
    """Check the sweep flags before TensorFlow loads, then run (or merge) the cells."""
    if not f.out_dir:
        raise ConfigError("--out_dir is required")
    try:
        sizes = tuple(int(k) for k in f.set_sizes)
    except ValueError:
        raise ConfigError(f"--set_sizes={','.join(f.set_sizes)}: not integers") from None
    if f.repeats < 1 or not sizes:
        raise ConfigError("--repeats must be >= 1 and --set_sizes non-empty")
    console.load_tensorflow()
    from tl_keras.studies import sweeps  # loads TensorFlow
    job_index, num_jobs = sweeps.slurm_job(f.job_index, f.num_jobs)
    config = sweeps.SweepConfig(
        out_dir=f.out_dir, sources=sweeps.parse_sources(f.sources), set_sizes=sizes,
        repeats=f.repeats, finetune=config_from_flags(FinetuneConfig, f),
        job_index=job_index, num_jobs=num_jobs)
    if f.merge_only:
        print(f"merged: {sweeps.merge_results(config)}")
        return
    out = sweeps.run_sweep(config)
    print(f"sweep: ran {len(out['ran'])}, skipped {len(out['skipped'])}, "
          f"failed {len(out['failed'])}; results in {out['csv']}")
    if out["failed"]:
        raise ConfigError(f"{len(out['failed'])} cell(s) failed, first: "
                          f"{out['failed'][0][0]}: {out['failed'][0][1]}")


main = cli.make_main("tl_keras.sweep", FLAGS, __doc__, run)

if __name__ == "__main__":
    sys.exit(main())
