"""``python -m training.evaluate``: the evaluation suite (training/evaluation/) together with the
studies it reports on (training/experiments/: accuracy on benchmarks left out of training, and
interpretability).

This module is the one place that joins the two rooms: training.evaluation never imports
training.experiments, so the suite takes the studies from here. Every flag is the suite's
(``python -m training.evaluate --help``); ``--skip-NAME`` leaves a study out.
"""

from __future__ import annotations

import os

from training.evaluation.evaluate import main as run_suite
from training.experiments import interpret, ood

STUDIES = {"ood": ood.run, "interpret": interpret.run}


def main(argv: list[str] | None = None) -> int:
    """Run the suite with the studies in ``STUDIES``.

    Args:
        argv: the command-line arguments (default ``sys.argv[1:]``).

    Returns:
        The exit status (0).
    """
    return run_suite(argv, STUDIES)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    raise SystemExit(main())
