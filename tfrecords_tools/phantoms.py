"""Write a SYNTHETIC phantom cohort (NIfTI + manifest); the CLI of
``tfrecords_tools.synthetic.phantoms`` (docs/preprocessing.md).

    python -m tfrecords_tools.phantoms --out_dir work/phantoms --subjects 8 --lesions stroke
"""
from __future__ import annotations

import sys

from absl import flags

from tfrecords_tools.synthetic.phantoms import make_cohort
from tl_common import cli


def run(f: flags.FlagValues, args) -> None:
    """Write the cohort the flags describe."""
    path = make_cohort(f.out_dir, f.subjects, lesions=f.lesions, seed=f.seed,
                       resolution=f.resolution)
    print(f"wrote SYNTHETIC cohort manifest {path}")


FLAGS = flags.FlagValues()
_F = {"flag_values": FLAGS}
flags.DEFINE_string("out_dir", None, "Output directory of the synthetic cohort.", **_F)
flags.DEFINE_integer("subjects", 6, "Number of synthetic subjects.", **_F)
flags.DEFINE_enum("lesions", "stroke", ["stroke", "ms"], "Lesion type painted in.", **_F)
flags.DEFINE_integer("seed", 0, "Cohort seed (deterministic output).", **_F)
flags.DEFINE_float("resolution", 1.0, "Native voxel size in mm.", **_F)
flags.mark_flag_as_required("out_dir", **_F)
main = cli.make_main("phantoms", FLAGS, __doc__, run)

if __name__ == "__main__":
    sys.exit(main())
