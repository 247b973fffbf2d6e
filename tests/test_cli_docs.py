"""Every flag of every CLI is documented, and ``--help`` of the training CLIs lists every
config field with its help (written once, on the field)."""
import dataclasses
import glob
import json
import os
import re

import pytest

from tests.helpers import ROOT, run_module

#: Every ``python -m`` command of the project (the one list; README and docs are checked
#: against it).
CLI_MODULES = (
    "tl_keras.pretrain", "tl_keras.finetune", "tl_keras.sweep", "tl_keras.evaluate",
    "tl_keras.predict", "tl_keras.report", "tl_keras.quickstart",
    "tl_keras.weights.convert", "tl_keras.weights.inspect_checkpoint",
    "tfrecords_tools.convert", "tfrecords_tools.convert_images", "tfrecords_tools.phantoms",
)


def _docs() -> dict:
    paths = [os.path.join(ROOT, "README.md")] + sorted(glob.glob(os.path.join(ROOT, "docs",
                                                                              "*.md")))
    return {os.path.relpath(p, ROOT): open(p, encoding="utf-8").read() for p in paths}


def test_docs_name_exactly_the_listed_clis():
    documented = set()
    for text in _docs().values():
        documented |= set(re.findall(r"python -m ([A-Za-z_][\w.]*)", text))
    documented.discard("pytest")
    assert documented == set(CLI_MODULES), (
        "CLI_MODULES and the `python -m` commands of README.md / docs/*.md differ")


def test_docs_list_every_flag():
    # A fresh process: flags are defined on import, once per process.
    proc = run_module("tests.helpers", ["cli_flags", *CLI_MODULES], timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    defined = json.loads(proc.stdout.splitlines()[-1])
    text = "\n".join(_docs().values())
    missing = {}
    for module, names in defined.items():
        assert names, f"{module}: no flags found (is it still a CLI?)"
        gaps = [n for n in names if not re.search(rf"--(\[no\]|no)?{n}(?![\w-])", text)]
        if gaps:
            missing[module] = gaps
    assert not missing, f"flags not in README.md or docs/*.md: {missing}"


@pytest.mark.parametrize("module,config", [("tl_keras.pretrain", "PretrainConfig"),
                                           ("tl_keras.finetune", "FinetuneConfig"),
                                           ("tl_keras.sweep", "FinetuneConfig")])
def test_help_lists_every_config_field_with_its_help(module, config):
    from tl_keras.training import config as config_module
    from tl_keras.training import tasks
    proc = run_module(module, ["--help"], timeout=120)  # absl's --help exits 1
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    # absl wraps help lines (also at hyphens): compare without whitespace
    out = re.sub(r"\s+", "", proc.stdout)
    fields = list(config_module.flag_fields(getattr(config_module, config)))
    if module == "tl_keras.pretrain":  # and every source task's options
        assert "disc_start_step" in {f.name for cls in tasks.options_classes().values()
                                     for f in dataclasses.fields(cls)}
        fields += [f for cls in tasks.options_classes().values()
                   for f in config_module.flag_fields(cls)]
    for field in fields:
        name = f"--[no]{field.name}" if field.type in ("bool", bool) else f"--{field.name}"
        help_ = field.metadata["help"]
        assert help_ and re.sub(r"\s+", "", f"{name}: {help_}") in out, (module, field.name)


def test_every_config_field_has_help_and_the_flag_carries_it():
    from absl import flags
    from tl_keras.training import config as config_module
    from tl_keras.training.flags import define_config_flags
    for cls in (config_module.PretrainConfig, config_module.FinetuneConfig):
        fv = flags.FlagValues()
        define_config_flags(cls, flag_values=fv)
        assert "task_options" not in fv  # not a flag: built from the task's flags
        for field in config_module.flag_fields(cls):
            assert fv[field.name].help == field.metadata["help"], (cls.__name__, field.name)
            assert fv[field.name].default == (list(field.default) if field.type == "tuple"
                                              else field.default)

    @dataclasses.dataclass(frozen=True)
    class Undocumented:
        x: int = 0
    with pytest.raises(ValueError, match="Undocumented.x has no help text"):
        define_config_flags(Undocumented, flag_values=flags.FlagValues())
