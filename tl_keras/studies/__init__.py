"""Studies: fine-tuning runs with their evaluation, and set-size sweeps of them.

The layer above ``training`` and ``evaluation``: training never calls evaluation;
this package trains (``tl_keras.training``), then evaluates (``tl_keras.evaluation``).
"""
