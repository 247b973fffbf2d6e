r"""Segment new T1 scans with an exported model; results in each scan's native space.

    python -m tl_keras.predict --model_dir runs/stroke_t1seg --input scan.nii.gz \
        --output mask.nii.gz [--probabilities prob.nii.gz]
    python -m tl_keras.predict --model_dir runs/stroke_t1seg --input_dir scans/ \
        --output_dir masks/ [--save_probabilities]
    python -m tl_keras.predict --model_dir runs/stroke_t1seg --manifest scans.csv \
        --output_dir masks/

The training pre-processing is rebuilt from the model's dataset.json; a model
whose pre-processing cannot be reproduced is refused with a one-line message.
"""
from __future__ import annotations

import sys

from absl import flags

from tl_common import cli
from tl_keras.evaluation import predict as lib

FLAGS = flags.FlagValues()
_F = {"flag_values": FLAGS}
flags.DEFINE_string("model_dir", None, "Fine-tuning run directory holding export/.", **_F)
flags.DEFINE_string("input", None, "One T1 scan (.nii / .nii.gz).", **_F)
flags.DEFINE_string("output", None, "Label map to write for --input (.nii.gz).", **_F)
flags.DEFINE_string("probabilities", None,
                    "Optional class-probability map (4D, one volume per class) for --input.",
                    **_F)
flags.DEFINE_string("input_dir", None, "Batch mode: segment every .nii / .nii.gz here.", **_F)
flags.DEFINE_string("manifest", None, "Batch mode: CSV with subject_id,image columns.", **_F)
flags.DEFINE_string("output_dir", None,
                    "Batch mode output: <name>_seg.nii.gz (and <name>_prob.nii.gz).", **_F)
flags.DEFINE_bool("save_probabilities", False, "Batch mode: also write probability maps.",
                  **_F)
flags.DEFINE_integer("batch_size", 8, "Slices per forward pass.", **_F)
flags.DEFINE_bool("overwrite", False, "Redo scans whose outputs already exist.", **_F)
flags.DEFINE_bool("verbose", True, "A progress line per scan on stderr.", **_F)
flags.mark_flag_as_required("model_dir", **_F)


def _jobs(f: flags.FlagValues):
    modes = [m for m in ("input", "input_dir", "manifest") if getattr(f, m)]
    if len(modes) != 1:
        raise cli.FlagError("give exactly one of --input, --input_dir, --manifest")
    if f.input:
        if not f.output:
            raise cli.FlagError("--input needs --output")
        return [lib.PredictJob(f.input, f.output, f.probabilities)]
    if not f.output_dir:
        raise cli.FlagError(f"--{modes[0]} needs --output_dir")
    make = lib.jobs_from_dir if f.input_dir else lib.jobs_from_manifest
    return make(f.input_dir or f.manifest, f.output_dir, f.save_probabilities)


def run(f: flags.FlagValues, args) -> None:
    """Segment the scans the flags name."""
    written = lib.predict_scans(f.model_dir, _jobs(f), batch_size=f.batch_size,
                            overwrite=f.overwrite, verbose=f.verbose)
    print(f"predict: {len(written)} label map(s) in native space, e.g. {written[0]}")


main = cli.make_main("tl_keras.predict", FLAGS, __doc__, run, tensorflow=True,
                     expected=(KeyError,))

if __name__ == "__main__":
    sys.exit(main())
