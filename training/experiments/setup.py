"""The setup the studies share (ood, interpret and onboard_eval in training.experiments): one
reduced model configuration and recipe, so no study imports another's script.

On real data (≥ 5000 queries) the ``reduced`` preset (1 shared + 7 routed experts of
256 → 128, d = 64), lr 3e-4, 8 epochs (``quick``: 2); on small data (e.g. synthetic) the
``small`` preset (3 routed experts of 64 → 32, d = 8), lr 3e-3, 15 epochs (``quick``: 6).
"""

from __future__ import annotations

import os
from typing import Any

from training.data import PairMatrix
from training.loop import TrainOptions, fit_model
from training.model import IrtModel, IrtNetConfig
from training.presets import model_config

SMALL_DATA = 5000  # queries: below this, the small-data configuration


def experiment_setup(
    ds: Any, quick: bool, seed: int, method: str = "irtnet"
) -> tuple[IrtNetConfig, TrainOptions]:
    """The reduced configuration shared by the experiments (see the module docstring)."""
    small = ds.n_queries < SMALL_DATA
    cfg = model_config(
        method,
        "small" if small else "reduced",
        embed_dim=int(ds.embeddings.shape[1]),
        n_llms=ds.n_llms,
        top_k=0,
    )
    if small:
        epochs = 6 if quick else 15
    else:
        epochs = 2 if quick else 8
    opts = TrainOptions(
        epochs=epochs,
        lr=3e-3 if small else 3e-4,
        patience=3,
        seed=seed,
        device="cpu",
        progress=bool(os.environ.get("IRT_PROGRESS")),
    )
    return cfg, opts


def train_on(
    ds: Any,
    mats: dict[str, PairMatrix],
    quick: bool,
    seed: int,
    method: str = "irtnet",
) -> IrtModel:
    """Train ``method`` with the experiments' setup on ``mats`` (validation when it has pairs)."""
    cfg, opts = experiment_setup(ds, quick, seed, method)
    val = mats["val"] if mats["val"].n_pairs > 0 else None
    return fit_model(cfg, mats["train"], val, opts).model
