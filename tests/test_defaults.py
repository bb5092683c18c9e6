"""Shape-dependent recipe choices (training.defaults): leaderboard-shaped data gets a different
learning rate and item-network size than MMLU-shaped data, and every choice is recorded."""

from __future__ import annotations

import json

import numpy as np
import pytest

from training import defaults
from training.defaults import Shape

MMLU = Shape(n_train_queries=9625, n_llms=29, n_train_pairs=277_753)
BOARD = Shape(n_train_queries=700, n_llms=6000, n_train_pairs=3_150_000)


def test_mmlu_shape_keeps_the_reference_recipe():
    c = defaults.choose(MMLU)
    assert MMLU.steps_per_epoch == 151
    assert c["lr"].value == pytest.approx(3e-4, rel=0.01)
    assert c["epochs"].value == 30
    assert (c["patience"].value, c["lr_patience"].value) == (5, 2)
    assert c["preset"].value == "paper"
    assert c["stop_metric"].value == "logloss"
    assert all(ch.source == "data" for ch in c.values())


def test_leaderboard_shape_gets_a_larger_lr_and_a_smaller_network():
    c, m = defaults.choose(BOARD), defaults.choose(MMLU)
    assert BOARD.steps_per_epoch == 11
    assert c["lr"].value == pytest.approx(3e-3)  # by hand, 1e-3 beat 1e-4 on this shape
    assert c["lr"].value > 3 * m["lr"].value
    # a cap of at least the optimiser steps of 30 MMLU-Pro epochs: 410 epochs, clipped at 300
    assert c["epochs"].value == 300 > m["epochs"].value
    # patience in optimiser steps too: 5 and 2 MMLU-Pro epochs are 69 and 28 epochs, clipped
    assert (c["patience"].value, c["lr_patience"].value) == (30, 12)
    assert c["preset"].value == "reduced" != m["preset"].value
    assert "11 optimiser steps" in c["lr"].why


def test_lr_is_monotone_and_clipped():
    lrs = [defaults.choose_lr(Shape(n, 100, n * 100)).value for n in (10, 100, 700, 5000, 10**6)]
    assert lrs == sorted(lrs, reverse=True)
    assert lrs[0] == defaults.LR_RANGE[1] and lrs[-1] == defaults.LR_RANGE[0]


def test_epoch_cap_keeps_the_steps_and_is_clipped():
    caps = {n: defaults.choose_epochs(Shape(n, 100, n * 100)).value for n in (10, 2000, 10**6)}
    assert caps[10] == defaults.EPOCH_RANGE[1] and caps[10**6] == defaults.EPOCH_RANGE[0]
    assert caps[2000] == 141  # 32 steps per epoch: ceil(30 * 150 / 32)


def test_user_values_and_old_recipe_are_recorded():
    c = defaults.resolve(BOARD, lr=5e-4)
    assert c["lr"].value == 5e-4 and c["lr"].source == "user"
    assert c["preset"].source == "data"
    old = defaults.resolve(BOARD, old=True)
    assert (old["lr"].value, old["epochs"].value, old["stop_metric"].value) == (
        1e-4,
        30,
        "accuracy",
    )
    assert old["preset"].value == "paper" and old["llm_decay"].value is True
    assert (old["patience"].value, old["lr_patience"].value) == (5, 2)
    assert c["llm_decay"].value is False and c["llm_decay"].source == "data"
    rec = json.loads(json.dumps(defaults.record(c, BOARD)))  # JSON-serialisable
    assert rec["shape"]["steps_per_epoch"] == 11
    assert rec["choices"]["lr"] == {"value": 5e-4, "source": "user", "why": "set by the user"}
    with pytest.raises(ValueError, match="unknown recipe choice"):
        defaults.resolve(BOARD, batch=3)
    with pytest.raises(ValueError, match="stop_metric"):
        defaults.resolve(BOARD, stop_metric="auc")


def _tiny():
    from irt_fast.synthetic import make_synthetic
    from training.data import random_split_matrices
    from training.presets import model_config

    ds, _ = make_synthetic(n_llms=8, n_queries=300, seed=1)
    tr, va, _ = random_split_matrices(ds, (0.7, 0.15), seed=0)
    cfg = model_config("irtnet", "small", embed_dim=ds.embeddings.shape[1], n_llms=8)
    return cfg, tr, va


def test_loop_applies_and_records_the_recipe():
    from training.loop import TrainOptions, fit_model

    cfg, tr, va = _tiny()
    fit = fit_model(cfg, tr, va, TrainOptions(epochs=2, progress=False, device="cpu"))
    ch = fit.recipe["choices"]
    assert ch["stop_metric"]["value"] == "logloss" and ch["lr"]["source"] == "data"
    want = defaults.choose_lr(Shape(tr.n_queries, 8, tr.n_pairs)).value
    assert ch["lr"]["value"] == want and fit.history[0]["lr"] == pytest.approx(want)
    assert fit.recipe["shape"]["n_train_queries"] == tr.n_queries
    assert ch["epochs"] == {**ch["epochs"], "value": 2, "source": "user"}
    capped = fit_model(cfg, tr, va, TrainOptions(patience=1, progress=False, device="cpu"))
    cap = defaults.choose_epochs(Shape(tr.n_queries, 8, tr.n_pairs)).value
    assert capped.recipe["choices"]["epochs"]["value"] == cap > 30
    assert capped.recipe["choices"]["epochs"]["source"] == "data"
    assert len(capped.history) <= cap
    old = fit_model(
        cfg, tr, va, TrainOptions(epochs=1, old_recipe=True, progress=False, device="cpu")
    )
    assert old.recipe["choices"]["lr"]["value"] == 1e-4
    assert old.recipe["choices"]["stop_metric"]["value"] == "accuracy"
    assert old.history[0]["lr"] == pytest.approx(1e-4)
    user = fit_model(cfg, tr, va, TrainOptions(epochs=1, lr=2e-3, progress=False, device="cpu"))
    assert user.recipe["choices"]["lr"] == {
        "value": 2e-3,
        "source": "user",
        "why": "set by the user",
    }


def test_stopping_follows_validation_logloss():
    """The best epoch is the one with the lowest validation log-loss (not accuracy)."""
    from training.loop import TrainOptions, fit_model

    cfg, tr, va = _tiny()
    fit = fit_model(cfg, tr, va, TrainOptions(epochs=6, lr=3e-2, patience=2, progress=False,
                                              device="cpu"))  # fmt: skip
    ll = [r["val_logloss"] for r in fit.history]
    assert fit.best_epoch == 1 + int(np.argmin(ll))
    assert [r["best"] for r in fit.history] == [
        bool(v < min(ll[:i], default=np.inf)) for i, v in enumerate(ll)
    ]
