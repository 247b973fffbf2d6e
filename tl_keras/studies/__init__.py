"""Studies: fine-tuning runs with their evaluation, and set-size sweeps of them.

The layer above ``training`` and ``evaluation``: training never calls evaluation;
this package trains (``tl_keras.training``), then evaluates (``tl_keras.evaluation``).
Entry points: :func:`finetune_and_evaluate` (``tl_keras.finetune``) and
:func:`tl_keras.studies.sweeps.run_sweep` (``tl_keras.sweep``).
"""


def finetune_and_evaluate(config, build_models=None):
    """:func:`tl_keras.studies.evaluated_run.finetune_and_evaluate` (imported lazily:
    it loads TensorFlow)."""
    from tl_keras.studies.evaluated_run import finetune_and_evaluate as run
    return run(config, build_models)


__all__ = ["finetune_and_evaluate"]
