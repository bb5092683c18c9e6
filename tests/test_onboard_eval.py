"""The onboarding evaluation's plumbing on synthetic known truth (fast): every method runs, the
paired ratios and coverage are computed, the report and its plot are written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from training.experiments import onboard_report as rep
from training.experiments.onboard_core import METHODS, ridge_predict, run_cases
from training.experiments.onboard_synthetic import synthetic_cases

pytest.importorskip("matplotlib")


@pytest.fixture(scope="module")
def result():
    cases = synthetic_cases(n_llms=300, n_onboard=12, seed=2, d=4, n_queries=1200)
    methods = tuple(m for m in METHODS if not m.startswith("anchors") and "calibrated" not in m)
    rows, floors = run_cases(cases, (10, 50), [0, 1], methods=methods, log=lambda m: None)
    return rows, floors, methods


def test_every_method_and_k_has_one_row_per_llm_and_seed(result) -> None:
    rows, floors, methods = result
    for m in methods:
        for k in (10, 50):
            sel = [r for r in rows if r["method"] == m and r["k"] == k]
            assert len(sel) == 24, (m, k)
            assert all(np.isfinite(r["est"]) and 0 <= r["est"] <= 1 for r in sel)
    assert {f["method"] for f in floors} == {"floor_model", "floor_aipw"} and len(floors) == 24


def test_aggregate_ratios_are_paired_and_the_report_is_written(result, tmp_path: Path) -> None:
    rows, floors, _ = result
    agg = rep.aggregate(rows, floors)
    e = agg["by"]["random_model|50"]
    base = agg["by"]["random_mean|50"]
    assert e["ratio"] == pytest.approx(e["mae"] / base["mae"])
    assert e["ratio_ci"][0] <= e["ratio"] <= e["ratio_ci"][1]
    assert 0 <= e["coverage"] <= 1 and np.isnan(base["coverage"])
    # the fit from 50 answers beats the plain mean of 50 answers when the model is exact
    assert e["ratio"] < 1.0
    # more answers help; the all-answers floor is below every k
    assert agg["by"]["random_model|50"]["mae"] < agg["by"]["random_model|10"]["mae"]
    assert agg["floors"]["floor_model"]["mae"] < e["mae"]
    md = rep.report({"random": {"aggregate": agg, "info": {
        "folds": [{"trained": 288, "onboarded": 12}], "seeds": [0, 1], "minutes": 0.1}}},
        "synthetic", tmp_path)  # fmt: skip
    assert "| mean of k random answers |" in md and "floor: model" in md
    assert (tmp_path / "synthetic_random.png").stat().st_size > 0


def test_ridge_recovers_a_linear_map() -> None:
    rng = np.random.default_rng(0)
    x = rng.random((200, 5))
    w = np.array([0.1, 0.2, 0.0, 0.3, 0.4])
    y = 0.1 + x @ w
    assert ridge_predict(x, y, np.full(5, 0.5)) == pytest.approx(0.1 + 0.5 * w.sum(), abs=0.01)
    x[3, 2] = np.nan  # a missing answer takes its column mean
    assert np.isfinite(ridge_predict(x, y, np.full(5, 0.5)))
