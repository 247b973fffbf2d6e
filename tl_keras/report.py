r"""Tables and figures of the paper from evaluation results.

    python -m tl_keras.report --results results/ --out_dir report/
    python -m tl_keras.report --results sweep_results.csv,results/ --out_dir report/

--results takes evaluate output directories (or trees of them) and CSVs (a
sweep's merged CSV, summary.csv or detection.csv files). Writes table.csv /
table.md (Table 2.1 / 2.2 style, per set size, with the lesion-wise precision
and F1 of the target's detection preset and each source's paired difference to
scratch, its 95 % bootstrap CI, the Wilcoxon p raw and Holm-adjusted over the
whole report, and the verdict), summary.md (what transferred, a paragraph per
target), curve.csv / curve.png (metric against fine-tuning set size with 95 %
CI bands, and the paired differences), detection.csv / detection.png
(detection rate and lesion-wise precision against lesion-volume cutoff at 0 %
and 20 % overlap) and examples.png (Fig. 2.5 style; examples_<target>.png per
target when there are several). The statistics and the rule for "better than
scratch" are in docs/evaluation.md.
"""
from __future__ import annotations

import sys

from absl import flags

from tl_common import cli

FLAGS = flags.FlagValues()
_F = {"flag_values": FLAGS}
flags.DEFINE_list("results", None, "Result directories and/or CSV files (comma-separated).",
                  **_F)
flags.DEFINE_string("out_dir", None, "Output directory of the report.", **_F)
flags.DEFINE_bool("verbose", True, "Print what was written.", **_F)
flags.mark_flags_as_required(["results", "out_dir"], **_F)


def run(f: flags.FlagValues, args) -> None:
    """Write the report of --results (and positional paths) into --out_dir."""
    from tl_keras.evaluation.study_report import load_results, write_report
    write_report(load_results(list(f.results) + list(args)), f.out_dir, f.verbose)


main = cli.make_main("tl_keras.report", FLAGS, __doc__, run, positional=True,
                     expected=(KeyError,))

if __name__ == "__main__":
    sys.exit(main())
