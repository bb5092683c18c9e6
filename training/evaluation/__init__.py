"""The evaluation suite: every method head to head on one split, with paired bootstrap CIs,
routing rules, the cost curve, the training-size curve and the report. It may import the
training front (``training.*``), never ``training.experiments``; run it with
``python -m training.evaluate``."""
