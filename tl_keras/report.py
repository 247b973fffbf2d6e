"""Tables and figures of the paper from evaluation results.

    python -m tl_keras.report --results results/ --out_dir report/
    python -m tl_keras.report --results sweep_merged.csv,results/ --out_dir report/

--results takes evaluate output directories (or trees of them) and CSVs (a
sweep's merged CSV, summary.csv or detection.csv files). Writes table.csv /
table.md (Table 2.1 / 2.2 style), curve.csv / curve.png (metric against
fine-tuning set size), detection.csv / detection.png (detection rate against
lesion-volume cutoff at 0 % and 20 % overlap) and examples.png (Fig. 2.5 style).
"""
from __future__ import annotations

from absl import app, flags

from tl_keras.evaluation.cli import fail_cleanly

flags.DEFINE_list("results", None, "Result directories and/or CSV files (comma-separated).")
flags.DEFINE_string("out_dir", None, "Output directory of the report.")
flags.DEFINE_bool("verbose", True, "Print what was written.")
flags.mark_flags_as_required(["results", "out_dir"])
FLAGS = flags.FLAGS


def main(argv):
    from tl_keras.evaluation.report import load_results, write_report
    paths = list(FLAGS.results) + list(argv[1:])
    fail_cleanly("tl_keras.report",
                 lambda: write_report(load_results(paths), FLAGS.out_dir, FLAGS.verbose))


if __name__ == "__main__":
    app.run(main)
