r"""Evaluate an exported fine-tuned model on a split of a converted data set.

    python -m tl_keras.evaluate --model_dir runs/stroke_t1seg_n100_r0 \
        --data_dir data/atlas --split test --out_dir results/stroke_t1seg_n100_r0

Writes per_slice / per_subject / per_lesion / detection / presets / summary
CSVs and examples.npz into --out_dir (see docs/evaluation.md).
"""
from __future__ import annotations

import sys

from absl import flags

from tl_common import cli

FLAGS = flags.FlagValues()
_F = {"flag_values": FLAGS}
flags.DEFINE_string("model_dir", None, "Fine-tuning run directory holding export/.", **_F)
flags.DEFINE_string("data_dir", None, "Converted data set (shards + dataset.json).", **_F)
flags.DEFINE_string("split", "test", "Split to evaluate.", **_F)
flags.DEFINE_string("out_dir", None, "Output directory for the CSVs.", **_F)
flags.DEFINE_integer("batch_size", 8, "Slices per forward pass.", **_F)
flags.DEFINE_enum("empty_policy", "skip_both_empty",
                  ["skip_both_empty", "one_both_empty", "skip_gt_empty"],
                  "Score of slices (classes) without ground truth: skip_both_empty leaves out "
                  "slices empty in both (paper default), one_both_empty scores them 1, "
                  "skip_gt_empty leaves out every slice without ground truth.", **_F)
flags.DEFINE_bool("include_background", False, "Average the background class in mIoU.", **_F)
flags.DEFINE_enum("connectivity", "8", ["4", "8", "6", "18", "26"],
                  "Lesion connectivity: 4 / 8 per axial slice, 6 / 18 / 26 in 3D.", **_F)
flags.DEFINE_list("overlap_cutoffs", ["0", "0.2"],
                  "A lesion is detected when more than this fraction is predicted.", **_F)
flags.DEFINE_list("volume_cutoffs_ml", ["0", "1", "2"],
                  "Lesions smaller than the cutoff (mL) are not counted.", **_F)
flags.DEFINE_list("presets", ["paper", "isles22", "atlas2", "wmh", "msseg_anima"],
                  "Challenge detection presets to report.", **_F)
flags.DEFINE_enum("space", "template", ["template", "native"],
                  "Grid of the volume metrics (volume Dice, volumes, lesions, detection, "
                  "presets): template = the pre-processed MNI grid the network sees; native = "
                  "each scan's own grid and label files, as the challenges score (binary "
                  "targets; needs the conversion's transforms). Per-slice Dice is always on "
                  "the template grid.", **_F)
flags.DEFINE_integer("num_examples", 4, "Slices saved to examples.npz for figures.", **_F)
flags.DEFINE_bool("overwrite", False, "Recompute even if this evaluation is already done.",
                  **_F)
flags.DEFINE_bool("verbose", True, "Progress lines on stderr.", **_F)
flags.mark_flags_as_required(["model_dir", "data_dir", "out_dir"], **_F)


def run(f: flags.FlagValues, args) -> None:
    """Evaluate --model_dir on --split of --data_dir into --out_dir."""
    from tl_keras.evaluation.evaluate import EvalConfig, evaluate_model_dir
    config = EvalConfig(
        split=f.split, batch_size=f.batch_size, empty_policy=f.empty_policy,
        include_background=f.include_background, connectivity=int(f.connectivity),
        overlap_cutoffs=cli.floats(f.overlap_cutoffs),
        volume_cutoffs_ml=cli.floats(f.volume_cutoffs_ml),
        presets=tuple(f.presets), num_examples=f.num_examples, space=f.space,
        overwrite=f.overwrite, verbose=f.verbose)
    out = evaluate_model_dir(f.model_dir, f.data_dir, f.split, f.out_dir, config)
    summary = out["summary"].iloc[0]
    metric = summary["metric"]
    print(f"{f.out_dir}: {metric} {summary[metric]:.4f} "
          f"(sd {summary[metric + '_sd']:.4f}) over {summary['n_slices']} slices of "
          f"{summary['n_subjects']} subjects")


# KeyError: a field missing from a JSON or CSV input.
main = cli.make_main("tl_keras.evaluate", FLAGS, __doc__, run, tensorflow=True,
                     expected=(KeyError,))

if __name__ == "__main__":
    sys.exit(main())
