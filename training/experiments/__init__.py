"""One-off studies, each a module with its command. ``python -m training.experiments NAME``
runs ood, interpret or onboard on their own; leaderboard_eval, onboard_synthetic, text_path and
time_epoch run as ``python -m training.experiments.MODULE``. They may import the training front
and ``training.evaluation``; nothing imports them except ``training.evaluate``."""
