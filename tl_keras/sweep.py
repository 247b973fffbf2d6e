"""Run a fine-tuning sweep: sources x set sizes x repeats, resumable, splittable.

Usage: ``python -m tl_keras.sweep --flagfile experiments/sweep_stroke.flags``; in a
SLURM array job (``sbatch --array=0-9``) each task takes its share of the cells.
Every fine-tuning flag of ``tl_keras.finetune`` applies to all cells.
"""
from absl import app, flags

from tl_keras.training.config import FinetuneConfig
from tl_keras.training.flags import config_from_flags, define_config_flags, run_app, run_cli
from tl_keras.utils import console

flags.DEFINE_string("out_dir", "", "sweep directory: one run directory per cell, "
                    "sweep_results.csv")
flags.DEFINE_list("sources", ["scratch"], "NAME=SPEC (or SPEC) per source, SPEC as --init_from")
flags.DEFINE_list("set_sizes", ["10", "20", "30", "40", "50", "60", "70", "80", "90", "100"],
                  "fine-tuning set sizes in subjects (0 = all)")
flags.DEFINE_integer("repeats", 10, "random subsets per set size (subset_seed 0..repeats-1)")
flags.DEFINE_integer("job_index", -1, "this job's index (default SLURM_ARRAY_TASK_ID or 0)")
flags.DEFINE_integer("num_jobs", 0, "number of jobs (default SLURM_ARRAY_TASK_COUNT or 1)")
flags.DEFINE_bool("merge_only", False, "only merge complete cells into sweep_results.csv")
# All fine-tuning flags, so a sweep flagfile can include a fine-tuning one; --model_dir,
# --init_from, --train_subjects and --subset_seed are set per cell.
define_config_flags(FinetuneConfig)
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    verbosity = console.set_verbosity(tensorflow=False)

    def run():
        from tl_keras.training.config import ConfigError
        if not FLAGS.out_dir:
            raise ConfigError("--out_dir is required")
        try:
            sizes = tuple(int(k) for k in FLAGS.set_sizes)
        except ValueError:
            raise ConfigError(f"--set_sizes={','.join(FLAGS.set_sizes)}: not integers") from None
        if FLAGS.repeats < 1 or not sizes:
            raise ConfigError("--repeats must be >= 1 and --set_sizes non-empty")
        console.load_tensorflow(verbosity)
        from tl_keras.studies import sweeps  # loads TensorFlow
        job_index, num_jobs = sweeps.slurm_job(FLAGS.job_index, FLAGS.num_jobs)
        config = sweeps.SweepConfig(
            out_dir=FLAGS.out_dir, sources=sweeps.parse_sources(FLAGS.sources),
            set_sizes=sizes, repeats=FLAGS.repeats,
            finetune=config_from_flags(FinetuneConfig),
            job_index=job_index, num_jobs=num_jobs)
        if FLAGS.merge_only:
            print(f"merged: {sweeps.merge_results(config)}")
            return
        out = sweeps.run_sweep(config)
        print(f"sweep: ran {len(out['ran'])}, skipped {len(out['skipped'])}, "
              f"failed {len(out['failed'])}; results in {out['csv']}")
        if out["failed"]:
            raise ConfigError(f"{len(out['failed'])} cell(s) failed, first: "
                              f"{out['failed'][0][0]}: {out['failed'][0][1]}")
    run_cli(run, "tl_keras.sweep")


if __name__ == "__main__":
    run_app(main)
