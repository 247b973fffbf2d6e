"""Every experiment flagfile parses against the flag definitions of the CLI that runs it."""
import glob
import os
import subprocess
import sys

import pytest

from tests.helpers import ROOT

CLI = {"pretrain": "tl_keras.pretrain", "finetune": "tl_keras.finetune",
       "sweep": "tl_keras.sweep", "detection": "tl_keras.sweep"}
FLAGFILES = sorted(glob.glob(os.path.join(ROOT, "experiments", "*.flags")))


def test_every_paper_experiment_has_a_flagfile():
    names = {os.path.basename(f)[:-len(".flags")] for f in FLAGFILES}
    expected = {f"pretrain_{d}_{t}" for d in ("t1", "natural")
                for t in ("segmentation", "autoencoding", "classification", "restoration",
                          "masked_modeling", "simsiam")}
    expected |= {"finetune_stroke", "finetune_ms", "finetune_anatomy", "sweep_stroke",
                 "sweep_ms", "sweep_anatomy", "detection_stroke"}
    assert expected <= names, sorted(expected - names)
    assert all(n.split("_")[0] in CLI for n in names), names


def _flags_of(path):
    values = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("--") and "=" in line:
                key, value = line[2:].split("=", 1)
                values[key] = value
    return values


@pytest.mark.parametrize("path", FLAGFILES, ids=os.path.basename)
def test_flagfile_parses_with_its_cli_from_any_folder(path, tmp_path):
    """Run from a folder outside the repository: includes resolve beside the flagfile."""
    cli = CLI[os.path.basename(path).split("_")[0]]
    # --only_check_args makes absl parse every flag (unknown names and bad values fail) and exit.
    out = subprocess.run([sys.executable, "-m", cli, f"--flagfile={path}", "--only_check_args"],
                         cwd=tmp_path, env={**os.environ, "PYTHONPATH": ROOT},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"{cli} rejects {path}: {out.stderr[-2000:]}"


def test_flagfile_includes_resolve_beside_the_including_file(tmp_path, monkeypatch):
    from tl_common.cli import FlagfileError, expand_flagfiles
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "base.flags").write_text("# base\n--epochs=3\n--seed=1\n")
    (tmp_path / "sub" / "top.flags").write_text("--flagfile=base.flags\n  --seed=2\n")
    (tmp_path / "loop.flags").write_text(f"--flagfile={tmp_path / 'loop.flags'}\n")
    monkeypatch.chdir(ROOT)
    argv = expand_flagfiles(["prog", "--flagfile", str(tmp_path / "sub" / "top.flags"),
                             "--seed=3", "--", "--flagfile=x"])
    assert argv == ["prog", "--epochs=3", "--seed=1", "--seed=2", "--seed=3", "--",
                    "--flagfile=x"]
    # absl's rule (relative to the working folder) still works for existing flagfiles
    (tmp_path / "old.flags").write_text("--flagfile=experiments/finetune_ms.flags\n")
    assert "--target=ms" in expand_flagfiles(["prog", f"--flagfile={tmp_path / 'old.flags'}"])
    with pytest.raises(FlagfileError, match="includes itself"):
        expand_flagfiles(["prog", f"--flagfile={tmp_path / 'loop.flags'}"])
    (tmp_path / "bad.flags").write_text("--flagfile=absent.flags\n")
    with pytest.raises(FlagfileError, match=r"absent.flags \(included from .*bad.flags\)"):
        expand_flagfiles(["prog", f"--flagfile={tmp_path / 'bad.flags'}"])


def test_classification_sources_use_class_wise_bce():
    """The paper trains both classification sources with class-wise binary cross-entropy."""
    for path in FLAGFILES:
        values = _flags_of(path)
        if values.get("task") == "classification":
            with open(path) as f:
                lines = [line.strip() for line in f]
            assert not any(line.startswith("--classification_softmax") for line in lines), path


def test_the_check_fails_on_a_bad_flagfile(tmp_path):
    bad = tmp_path / "bad.flags"
    bad.write_text("--flagfile=experiments/finetune_stroke.flags\n--no_such_flag_xyz=1\n")
    out = subprocess.run([sys.executable, "-m", "tl_keras.finetune", f"--flagfile={bad}",
                          "--only_check_args"], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode != 0 and "no_such_flag_xyz" in out.stderr


def test_sweep_sources_are_well_formed():
    from tl_keras.studies.sweeps import parse_sources
    for path in FLAGFILES:
        values = _flags_of(path)
        if "sources" in values:
            sources = dict(parse_sources(values["sources"].split(",")))
            assert "scratch" in sources and any(s.startswith("taskonomy:")
                                                for s in sources.values()), path
            assert any(s.startswith("imagenet:") for s in sources.values()), path
