"""Recipe choices that depend on the data's shape, each recorded with the reason it was made.

The paper's recipe was tuned on one shape (29 LLMs × 12,032 questions, 150 steps per epoch).
On a leaderboard (thousands of LLMs × about a thousand questions) the same recipe takes ~11
optimiser steps per epoch, validation accuracy barely moves, the plateau schedule cuts the
learning rate and early stopping ends the run at the per-LLM prior. The choices:

- **learning rate** from the number of optimiser steps per epoch, so that an epoch moves the
  weights about as far whatever the shape: ``lr = 3e-4 · 150 / steps_per_epoch``, clipped to
  [3e-4, 3e-3]. At MMLU-Pro's 151 steps it is 3e-4 (the rate ``training.evaluate`` already
  used); at 700 training questions (11 steps) it is 3e-3. (The first rule, 3e-4·√(150/steps),
  gave 1.1e-3 there; on leaderboard-shaped synthetic data with other seeds than the reported
  one, 3e-3 had lower test log-loss at 1,000 and 6,000 LLMs, and at 11 LLMs × 3,000 questions
  the linear rule was level: docs/training.md, "How the recipe adapts to the data".)
- **epochs** (the cap; early stopping ends the run): at least the optimiser steps of 30
  MMLU-Pro epochs, ``epochs = ceil(30 · 150 / steps_per_epoch)`` clipped to [30, 300]. At 11
  steps per epoch 30 epochs were 330 steps and the run was still improving when it ended.
- **early stopping and the plateau schedule on validation log-loss**: accuracy at threshold 0.5
  moves in coarse steps when most LLMs sit far from 0.5 (weak LLMs near chance), so a flat
  accuracy cut the learning rate while the predictions were still improving.
- **patience** of early stopping (5 epochs on MMLU-Pro) and of the plateau schedule (2) in
  optimiser steps too: ``ceil(5 · 150 / steps)`` clipped to [5, 30] and ``ceil(2 · 150 /
  steps)`` clipped to [2, 12]. At 11 steps per epoch, 5 epochs stopped runs at points set by
  the noise of a 100-question validation split (best epochs 16 to 40 for the same data).
- **no weight decay on θ and the per-LLM offsets**: weight decay on the mean loss is a prior
  of precision ``weight_decay`` against each LLM's 1/n_llms share of the data; at 6,000 LLMs
  it outweighed the data, pulled every LLM's offset toward 0 and kept MF at the per-LLM prior.
  θ keeps its own prior (``theta_prior_std``, scaled by the number of pairs); the item network
  keeps its weight decay.
- **item-network size from the number of training questions**: the paper's 21M-parameter
  mixture below 5,000 training questions has ~4,000 parameters per question; below that the
  ``reduced`` preset (d = 64, 1 + 7 experts of 256 → 128).

``old_recipe()`` gives the paper's fixed choices (lr 1e-4, accuracy stopping, paper sizes),
for comparisons (``training.fit --old-recipe``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

REF_STEPS = 150  # optimiser steps per epoch on MMLU-Pro (9,625 questions / 64 per batch)
REF_LR = 3e-4
LR_RANGE = (3e-4, 3e-3)
REF_EPOCHS = 30  # the epoch cap on MMLU-Pro
EPOCH_RANGE = (30, 300)
REF_PATIENCE, PATIENCE_RANGE = 5, (5, 30)  # early stopping, in epochs
REF_LR_PATIENCE, LR_PATIENCE_RANGE = 2, (2, 12)  # the plateau schedule, in epochs
PAPER_MIN_QUESTIONS = 5000
STOP_METRICS = ("logloss", "accuracy")


@dataclass(frozen=True)
class Choice:
    """One recipe decision: its value, where it came from (``"data"``, ``"user"`` or
    ``"old-recipe"``) and why."""

    value: Any
    source: str
    why: str


@dataclass(frozen=True)
class Shape:
    """What the choices look at."""

    n_train_queries: int
    n_llms: int
    n_train_pairs: int
    batch_queries: int = 64

    @property
    def steps_per_epoch(self) -> int:
        return max(1, math.ceil(self.n_train_queries / self.batch_queries))

    @property
    def observed_fraction(self) -> float:
        cells = self.n_train_queries * self.n_llms
        return self.n_train_pairs / cells if cells else 0.0


def choose_lr(shape: Shape) -> Choice:
    steps = shape.steps_per_epoch
    lr = REF_LR * REF_STEPS / steps
    lr = float(min(max(lr, LR_RANGE[0]), LR_RANGE[1]))
    return Choice(
        float(f"{lr:.3g}"),
        "data",
        f"{steps} optimiser steps per epoch ({shape.n_train_queries} training questions / "
        f"{shape.batch_queries} per batch): lr = {REF_LR:g} * {REF_STEPS} / {steps}, "
        f"clipped to [{LR_RANGE[0]:g}, {LR_RANGE[1]:g}]",
    )


def choose_epochs(shape: Shape) -> Choice:
    steps = shape.steps_per_epoch
    epochs = _in_steps(shape, REF_EPOCHS, EPOCH_RANGE)
    return Choice(
        epochs,
        "data",
        f"at most {epochs} epochs (early stopping ends the run sooner): ceil({REF_EPOCHS} * "
        f"{REF_STEPS} / {steps} steps per epoch), clipped to [{EPOCH_RANGE[0]}, {EPOCH_RANGE[1]}], "
        f"so a run may take as many optimiser steps as {REF_EPOCHS} epochs on MMLU-Pro",
    )


def choose_preset(shape: Shape) -> Choice:
    if shape.n_train_queries >= PAPER_MIN_QUESTIONS:
        return Choice(
            "paper",
            "data",
            f"{shape.n_train_queries} training questions >= {PAPER_MIN_QUESTIONS}: the paper's "
            "sizes (d 232, 1 + 39 experts of 512 -> 256)",
        )
    return Choice(
        "reduced",
        "data",
        f"{shape.n_train_queries} training questions < {PAPER_MIN_QUESTIONS}: the reduced "
        "item network (d 64, 1 + 7 experts of 256 -> 128) instead of the paper's 21M parameters",
    )


def _in_steps(shape: Shape, ref: int, bounds: tuple[int, int]) -> int:
    """``ref`` MMLU-Pro epochs as epochs of this shape (same optimiser steps), clipped."""
    n = math.ceil(ref * REF_STEPS / shape.steps_per_epoch)
    return int(min(max(n, bounds[0]), bounds[1]))


def _patience(shape: Shape, what: str, ref: int, bounds: tuple[int, int], why: str = "") -> Choice:
    """``what`` after n epochs without a better validation score, n = ``ref`` MMLU-Pro epochs
    in optimiser steps (``_in_steps``)."""
    n = _in_steps(shape, ref, bounds)
    return Choice(
        n,
        "data",
        f"{what} after {n} epochs without a better validation score: {ref} MMLU-Pro epochs in "
        f"optimiser steps ({REF_STEPS} per epoch there, {shape.steps_per_epoch} here), clipped to "
        f"[{bounds[0]}, {bounds[1]}]{why}",
    )


def choose_patience(shape: Shape) -> Choice:
    why = (
        "; at 11 steps per epoch 5 epochs stopped at points set by the noise of a small "
        "validation split"
    )
    return _patience(shape, "stop", REF_PATIENCE, PATIENCE_RANGE, why)


def choose_lr_patience(shape: Shape) -> Choice:
    return _patience(shape, "cut the lr", REF_LR_PATIENCE, LR_PATIENCE_RANGE)


def choose_stop_metric(shape: Shape) -> Choice:
    return Choice(
        "logloss",
        "data",
        "early stopping and the plateau schedule follow validation log-loss: accuracy at 0.5 "
        "is coarse and stays flat while predictions still improve",
    )


def choose_llm_decay(shape: Shape) -> Choice:
    return Choice(
        False,
        "data",
        "no weight decay on θ and the per-LLM offsets (their prior is theta_prior_std): decay on "
        f"the mean loss weighs against each LLM's 1/{shape.n_llms} share of the data, and at "
        "thousands of LLMs it outweighed the data",
    )


def choose(shape: Shape) -> dict[str, Choice]:
    """The data-dependent recipe for ``shape``."""
    return {
        "lr": choose_lr(shape),
        "epochs": choose_epochs(shape),
        "patience": choose_patience(shape),
        "lr_patience": choose_lr_patience(shape),
        "stop_metric": choose_stop_metric(shape),
        "llm_decay": choose_llm_decay(shape),
        "preset": choose_preset(shape),
    }


def old_recipe() -> dict[str, Choice]:
    """The paper's fixed recipe, whatever the data (before the choices above existed)."""
    why = "--old-recipe: the paper's fixed recipe, not chosen from the data"
    return {
        "lr": Choice(1e-4, "old-recipe", why),
        "epochs": Choice(REF_EPOCHS, "old-recipe", why),
        "patience": Choice(REF_PATIENCE, "old-recipe", why),
        "lr_patience": Choice(REF_LR_PATIENCE, "old-recipe", why),
        "llm_decay": Choice(True, "old-recipe", why),
        "stop_metric": Choice("accuracy", "old-recipe", why),
        "preset": Choice("paper", "old-recipe", why),
    }


def resolve(shape: Shape, *, old: bool = False, **user: Any) -> dict[str, Choice]:
    """The recipe: the data's (or the old) choices, with every non-None ``user`` value (from a
    flag) taking precedence and recorded as such."""
    out = old_recipe() if old else choose(shape)
    for key, value in user.items():
        if value is None:
            continue
        if key not in out:
            raise ValueError(f"unknown recipe choice {key!r}; known: {sorted(out)}")
        if key == "stop_metric" and value not in STOP_METRICS:
            raise ValueError(f"stop_metric must be one of {STOP_METRICS}, got {value!r}")
        out[key] = Choice(value, "user", "set by the user")
    return out


def record(choices: dict[str, Choice], shape: Shape) -> dict[str, Any]:
    """The JSON record of a recipe (for metrics.json and the weights metadata)."""
    return {
        "shape": {**asdict(shape), "steps_per_epoch": shape.steps_per_epoch},
        "choices": {k: asdict(c) for k, c in choices.items()},
    }
