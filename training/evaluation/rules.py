"""The evaluation's routing decision rules (training.evaluation.decision, each fitted on
validation and applied to test, per training seed) and its accuracy-against-cost section."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from training.evaluation import baselines, decision
from training.metrics import MISSING, correctness_metrics, route_choices


def decision_rules(
    Ps: list[np.ndarray], Pvs: list[np.ndarray], Yte: np.ndarray, Yva: np.ndarray,
    prior: np.ndarray, rank: np.ndarray, sb: float, orc: float,
) -> dict[str, Any]:  # fmt: skip
    """Each rule fitted on validation and applied to test, per training seed; accuracies are
    means over seeds."""
    per_seed = []
    for P, Pv in zip(Ps, Pvs, strict=True):
        sh = decision.fit_shrink(Pv, Yva, prior)
        sw = decision.fit_switch(Pv, Yva, rank)
        pl = decision.fit_platt(Pv, Yva, per_llm=True)
        obs = Yte != MISSING
        per_seed.append({
            "argmax": decision.routing_accuracy(route_choices(P, Yte), Yte),
            "shrink": decision.routing_accuracy(decision.route_shrink(P, Yte, prior, sh["w"]), Yte),
            "switch": decision.routing_accuracy(decision.route_switch(P, Yte, rank, sw["delta"]), Yte),
            "platt": decision.routing_accuracy(decision.route_platt(P, Yte, pl), Yte),
            "shrink_w": sh["w"],
            "switch_delta": sw["delta"],
            "ece_after_platt": float(
                correctness_metrics(Yte[obs], decision.apply_platt(P, pl)[obs])["ece"]
            ),
            "platt_a": pl["a"].tolist(),
            "platt_b": pl["b"].tolist(),
            "val_shrink_scores": sh["val_scores"],
            "val_switch_scores": sw["val_scores"],
        })  # fmt: skip
    rules = ("argmax", "shrink", "switch", "platt")
    out: dict[str, Any] = {k: float(np.mean([s[k] for s in per_seed])) for k in rules}
    out["shrink_w"] = [s["shrink_w"] for s in per_seed]
    out["switch_delta"] = [s["switch_delta"] for s in per_seed]
    out["ece_after_platt"] = float(np.mean([s["ece_after_platt"] for s in per_seed]))
    out["gap_closed"] = {k: decision.gap_closed(out[k], sb, orc) for k in rules}
    out["per_seed"] = per_seed
    return out


BUDGET_FRACTIONS = (0.1, 0.25, 0.5, 1.0)


def cost_section(
    costs: np.ndarray, cost_file: Path, entries: dict[str, dict[str, Any]], Yte: np.ndarray,
    rank: np.ndarray,
) -> dict[str, Any]:  # fmt: skip
    """Accuracy against mean cost per query for every method with predictions, the fixed-LLM
    points, the single-best LLM and the cost-aware oracle."""
    grid = decision.lambda_grid(costs)
    curves: dict[str, list[dict[str, float]]] = {}
    for name, e in entries.items():
        if e.get("P") is None or name == "prior":
            continue
        per_seed = [decision.cost_curve(P, Yte, costs, grid) for P in e["P"]]
        curves[name] = [
            {"lam": float(grid[i]),
             "cost": float(np.mean([c[i]["cost"] for c in per_seed])),
             "accuracy": float(np.mean([c[i]["accuracy"] for c in per_seed]))}
            for i in range(len(grid))
        ]  # fmt: skip
    best = int(np.argmax(rank))
    fixed = decision.fixed_llm_points(Yte, costs)
    sb_choice = baselines.single_best_choices(rank, Yte)
    sb = {"llm": best, "cost": decision.mean_cost(sb_choice, costs),
          "accuracy": decision.routing_accuracy(sb_choice, Yte)}  # fmt: skip
    oc = decision.cheapest_correct(Yte, costs)
    budgets = []
    for frac in BUDGET_FRACTIONS:
        b = frac * sb["cost"]
        budgets.append({"fraction": frac, "budget": b,
                        "accuracy": {n: decision.accuracy_at_budget(c, b) for n, c in curves.items()}})  # fmt: skip
    return {
        "file": str(cost_file),
        "costs": costs.tolist(),
        "n_lambdas": len(grid),
        "curves": curves,
        "fixed_llms": fixed,
        "single_best": sb,
        "oracle_cheapest": {
            "cost": decision.mean_cost(oc, costs),
            "accuracy": decision.routing_accuracy(oc, Yte),
        },  # fmt: skip
        "budgets": budgets,
    }
