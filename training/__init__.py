"""PyTorch training for irt_fast, in three rooms (imports go one way: down this list):

- ``training.experiments``: one-off studies, each a module with its command
  (``python -m training.experiments NAME`` or ``python -m training.experiments.MODULE``);
  they may import the two rooms below.
- ``training.evaluation``: the evaluation suite behind ``python -m training.evaluate``
  (phases, statistics, routing rules, baselines, 2PL, report, plots); it may import the front.
- the training front, the modules at this level: ``python -m training.fit`` and what it needs
  (model, loop, data, pairs, configs, presets, defaults, metrics, export, rundir).

``training/evaluate.py`` is the one module outside the rooms: the command that hands the studies
to the suite. tests/test_imports.py checks the direction.
"""
