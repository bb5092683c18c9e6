"""The leaderboard comparison end to end: on a small leaderboard-shaped matrix (slow: trains
three networks) and, fast, with the other generator."""

from __future__ import annotations

import json

import pytest

from training.experiments import leaderboard_eval


@pytest.mark.slow
def test_leaderboard_comparison_runs_and_orders_sensibly(tmp_path):
    out = tmp_path / "lb"
    argv = ["--out", str(out), "--n-llms", "400", "--n-queries", "400", "--epochs", "8",
            "--n-boot", "100", "--threads", "1"]  # fmt: skip
    assert leaderboard_eval.main(argv) == 0
    res = json.loads((out / "results.json").read_text())
    assert (out / "report.md").exists() and (out / "comparison.png").stat().st_size > 0
    m = res["methods"]
    assert set(leaderboard_eval.DEFAULT_METHODS) <= set(m) and {"single_best", "oracle"} <= set(m)
    est = {k: v["estimate"] for k, v in m.items()}
    # every learned method beats the per-LLM prior on held-out questions
    for k in ("irtnet", "knn", "irt2pl"):
        assert est[k]["auc"] > est["prior"]["auc"] + 0.02
        assert est[k]["logloss"] < est["prior"]["logloss"]
    # the data-chosen recipe fits better than the old one at the same epoch budget
    assert est["irtnet"]["logloss"] < est["irtnet_old"]["logloss"]
    ch = res["info"]["irtnet"]["recipe"]["choices"]
    assert ch["stop_metric"]["value"] == "logloss" and ch["preset"]["value"] == "reduced"
    assert res["info"]["irtnet_old"]["recipe"]["choices"]["lr"]["value"] == 1e-4
    assert est["oracle"]["route"] >= max(v.get("route", 0) for v in est.values())
    lo, hi = m["irtnet"]["diff_vs_knn"]["accuracy"]["ci"]
    assert lo <= m["irtnet"]["diff_vs_knn"]["accuracy"]["estimate"] <= hi


def test_other_generator_and_old_mf_run(tmp_path):
    """--generator synthetic (few LLMs, many questions) with the
    old-recipe MF: the report holds what was asked and the true probabilities' row."""
    out = tmp_path / "syn"
    argv = ["--out", str(out), "--generator", "synthetic", "--n-llms", "5", "--n-queries", "150",
            "--epochs", "2", "--n-boot", "20", "--threads", "1", "--methods", "mf_old,knn,prior"]  # fmt: skip
    assert leaderboard_eval.main(argv) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["setup"]["data"].startswith("synthetic(n_llms=5, n_queries=150")
    assert {"mf_old", "knn", "prior", "truth"} <= set(res["methods"])
    ch = res["info"]["mf_old"]["recipe"]["choices"]
    assert ch["lr"]["value"] == 1e-4 and ch["llm_decay"]["value"] is True
    assert "MF (EmbedLLM), old recipe" in (out / "report.md").read_text()
