"""Run a tiny pre-training or fine-tuning the way the CLIs do, in a subprocess.

    python -m tests.train_driver pretrain|finetune CONFIG_JSON [KILL]

CONFIG_JSON holds the config fields; the networks are the tiny stand-ins
(tl_keras.models.presets). Errors go through the CLIs' one-line handler. KILL,
``module:attr:N:before|after``, sends this process SIGKILL just before or just
after the N-th call of ``module.attr`` (``attr`` may be ``Class.method``): a real
kill -9 at a chosen point of the run.
"""
import functools
import importlib
import json
import os
import signal
import sys


def _arm_kill(spec: str) -> None:
    module_name, attr, nth, when = spec.split(":")
    owner = importlib.import_module(module_name)
    *path, name = attr.split(".")
    for part in path:
        owner = getattr(owner, part)
    original, calls = getattr(owner, name), [0]

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        calls[0] += 1
        if when == "before" and calls[0] == int(nth):
            os.kill(os.getpid(), signal.SIGKILL)
        result = original(*args, **kwargs)
        if when == "after" and calls[0] == int(nth):
            os.kill(os.getpid(), signal.SIGKILL)
        return result
    setattr(owner, name, wrapper)


def main(kind: str, config_json: str, kill: str | None = None) -> None:
    from tl_keras.studies import finetune_and_evaluate
    from tl_keras.training import FinetuneConfig, PretrainConfig, run_pretrain
    from tl_common.cli import run_cli
    from tl_keras.models.presets import build_tiny_models
    if kill:
        _arm_kill(kill)
    cls, run = ((PretrainConfig, run_pretrain) if kind == "pretrain"
                else (FinetuneConfig, finetune_and_evaluate))
    config = cls(**json.loads(config_json))
    run_cli(f"tl_keras.{kind}", lambda: print(f"done: {run(config, build_tiny_models)}"))


if __name__ == "__main__":
    main(*sys.argv[1:])
