"""Hand-checked cases for the evaluation's cost curve, cost tables, seed aggregation and the
experiments' cluster bootstraps; and the engine agreeing with the evaluation's cost rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from test_engine_fixtures import config, random_tensors, write

import irt_fast
from irt_fast.data import load_costs
from irt_fast.errors import DataError
from training.evaluation import decision
from training.evaluation.stats import bootstrap_all, mean_over_seeds, seed_metrics
from training.experiments.ood import benchmark_bootstrap
from training.metrics import route_choices

M = -1  # missing


# cost-aware routing --------------------------------------------------------------------------


def test_route_cost_trades_probability_against_cost() -> None:
    P = np.array([[0.9, 0.8, 0.3], [0.6, 0.1, 0.55]])
    Y = np.array([[1, 1, 0], [0, M, 1]], dtype=np.int8)
    cost = np.array([10.0, 1.0, 0.0])
    # λ = 0: plain argmax
    assert decision.route_cost(P, Y, cost, 0.0).tolist() == [0, 0]
    # λ = 0.02: q0 scores 0.7, 0.78, 0.3 -> LLM 1; q1 scores 0.4, (missing), 0.55 -> LLM 2
    c = decision.route_cost(P, Y, cost, 0.02)
    assert c.tolist() == [1, 2]
    assert decision.mean_cost(c, cost) == pytest.approx(0.5)
    assert decision.routing_accuracy(c, Y) == pytest.approx(1.0)
    # huge λ: the cheapest *observed* LLM
    assert decision.route_cost(P, Y, cost, 1e6).tolist() == [2, 2]


def test_cost_curve_ends_and_budget() -> None:
    P = np.array([[0.9, 0.8, 0.3], [0.6, 0.1, 0.55]])
    Y = np.array([[1, 1, 0], [0, M, 1]], dtype=np.int8)
    cost = np.array([10.0, 1.0, 0.0])
    curve = decision.cost_curve(P, Y, cost)
    assert curve[0]["lam"] == 0.0 and curve[0]["cost"] == pytest.approx(10.0)
    assert curve[0]["accuracy"] == pytest.approx(0.5)  # argmax: q0 right, q1 wrong
    assert curve[-1]["cost"] == pytest.approx(0.0)  # λ·spread = 10: the cheapest always
    assert curve[-1]["accuracy"] == pytest.approx(0.5)
    assert decision.accuracy_at_budget(curve, 0.5) == pytest.approx(1.0)
    assert decision.accuracy_at_budget(curve, 10.0) == pytest.approx(1.0)
    assert np.isnan(decision.accuracy_at_budget(curve, -1.0))
    # equal costs: one λ (plain argmax) is all there is to trace
    assert decision.lambda_grid(np.ones(3)).tolist() == [0.0]


def test_fixed_llm_points_and_cheapest_correct_oracle() -> None:
    Y = np.array([[1, 1, 0], [0, M, 1], [0, 0, 0], [M, M, M]], dtype=np.int8)
    cost = np.array([10.0, 1.0, 0.5])
    pts = decision.fixed_llm_points(Y, cost)
    assert [p["n_queries"] for p in pts] == [3, 2, 3]
    assert pts[0]["accuracy"] == pytest.approx(1 / 3)
    assert pts[1]["accuracy"] == pytest.approx(1 / 2)
    c = decision.cheapest_correct(Y, cost)
    # q0: LLMs 0 and 1 right -> 1 (cheaper); q1: only 2 right; q2: none right -> cheapest
    # observed (2); q3: nothing observed -> -1
    assert c.tolist() == [1, 2, 2, -1]
    assert decision.routing_accuracy(c, Y) == pytest.approx(2 / 3)


def test_engine_cost_rule_matches_the_evaluation_rule(tmp_path: Path) -> None:
    cfg = config()
    m = irt_fast.load(write(tmp_path / "m.safetensors", cfg, random_tensors(cfg, 3)))
    x = np.random.default_rng(0).standard_normal((64, cfg["embed_dim"])).astype(np.float32)
    P = m.predict_proba(x).astype(np.float64)
    Y = np.zeros(P.shape, dtype=np.int8)  # every LLM observed
    cost = np.array([4.0, 0.5, 2.0, 1.0])
    for lam in (0.0, 0.01, 0.05, 0.3):
        want = decision.route_cost(P, Y, cost, lam)
        got = m.route(x, cost=cost.tolist(), lam=lam).indices
        assert np.array_equal(np.asarray(got), want), lam


# cost tables ---------------------------------------------------------------------------------

NAMES = ["a", "b", "c"]


def test_load_costs_orders_by_model_name(tmp_path: Path) -> None:
    f = tmp_path / "costs.csv"
    f.write_text("model,cost\nc,3\na,1.5\nb,0\n")
    assert load_costs(f, NAMES).tolist() == [1.5, 0.0, 3.0]
    pq = tmp_path / "costs.parquet"
    pl.DataFrame({"model": ["b", "a", "c"], "cost": [2.0, 1.0, 0.5]}).write_parquet(pq)
    assert load_costs(pq, NAMES).tolist() == [1.0, 2.0, 0.5]


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ("model,cost\na,1\nb,x\nc,1\n", r"column 'cost', row 1 \(line 3\): 'x'"),
        ("model,cost\na,1\nb,-2\nc,1\n", r"row 1 .*'-2' is not a finite number >= 0"),
        ("model,cost\na,1\nb,nan\nc,1\n", r"row 1 .*'nan'"),
        ("model,cost\na,1\nb,2\nz,1\nc,1\n", r"column 'model', row 2 .*unknown LLM 'z'"),
        ("model,cost\na,1\nb,2\na,1\nc,1\n", r"row 2 .*'a' given twice"),
        ("model,cost\na,1\nb,2\n", r"no cost for 1 LLM\(s\): c"),
        ("model,price\na,1\n", r"missing column\(s\) 'cost'"),
    ],
)
def test_load_costs_errors_name_file_column_and_row(tmp_path: Path, body: str, match: str) -> None:
    f = tmp_path / "costs.csv"
    f.write_text(body)
    with pytest.raises(DataError, match=match):
        load_costs(f, NAMES)


def test_load_costs_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_costs(tmp_path / "nope.csv", NAMES)


# metrics over training seeds -----------------------------------------------------------------


def _two_seed_entry() -> tuple[dict, np.ndarray, np.ndarray]:
    Y = np.array([[1, 0], [0, 1], [1, 1], [0, 0]], dtype=np.int8)
    bench = np.array(["x", "x", "y", "y"])
    P1 = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.6], [0.3, 0.4]])  # all pairs right
    P2 = np.array([[0.1, 0.9], [0.8, 0.2], [0.4, 0.6], [0.6, 0.3]])  # 2 of 8 pairs right
    e = {"P": [P1, P2], "choices": [route_choices(P, Y) for P in (P1, P2)]}
    return e, Y, bench


def test_seed_metrics_are_per_seed_and_averaged() -> None:
    e, Y, bench = _two_seed_entry()
    per = seed_metrics(e, Y, bench)
    assert [m["accuracy"] for m in per] == pytest.approx([1.0, 0.25])
    # routing: seed 1 picks 0, 1, 0, 1 -> right, right, right, wrong; seed 2 picks 1, 0, 1, 0
    # -> wrong, wrong, right, wrong
    assert [m["route_micro"] for m in per] == pytest.approx([0.75, 0.25])
    # macro: seed 1 = mean(x: 1.0, y: 0.5) = 0.75; seed 2 = mean(x: 0, y: 0.5) = 0.25
    assert [m["route_macro"] for m in per] == pytest.approx([0.75, 0.25])
    mean = mean_over_seeds(per)
    assert mean["accuracy"] == pytest.approx(0.625) and mean["route_micro"] == pytest.approx(0.5)
    # on a subset of queries (rows 0 and 0 again: a bootstrap resample)
    sub = seed_metrics(e, Y, bench, np.array([0, 0]))
    assert [m["route_micro"] for m in sub] == pytest.approx([1.0, 0.0])


def test_bootstrap_of_seed_mean_is_paired_against_the_reference() -> None:
    e, Y, bench = _two_seed_entry()
    entries = {"irtnet": e, "copy": {"P": list(e["P"]), "choices": list(e["choices"])}}
    ci = bootstrap_all(entries, Y, bench, n_boot=200, seed=0)
    lo, hi = ci["irtnet"]["accuracy"]
    assert lo <= 0.625 <= hi
    # the same predictions on the same resamples: the difference is exactly zero
    assert ci["copy"]["accuracy_diff_vs_irtnet"] == [0.0, 0.0]
    assert ci["copy"]["route_micro_diff_vs_irtnet"] == [0.0, 0.0]


# the experiments' cluster bootstraps ---------------------------------------------------------


def test_benchmark_bootstrap_resamples_whole_benchmarks() -> None:
    true = [np.array([0.5, 0.6]), np.array([0.2, 0.3, 0.4])]
    exact = [t.copy() for t in true]
    off = [t + 0.1 for t in true]  # every point off by 0.1: RMSE 0.1 whatever the resample
    ci = benchmark_bootstrap(true, {"irtnet": exact, "mf": off}, n_boot=100, seed=0)
    assert ci["irtnet"] == [0.0, 0.0]
    assert ci["mf"] == pytest.approx([0.1, 0.1])
    assert ci["mf_minus_irtnet"] == pytest.approx([0.1, 0.1])
