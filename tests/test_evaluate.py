"""End-to-end: ``python -m training.evaluate --quick`` on a tiny synthetic dataset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("matplotlib")


def test_evaluate_quick_end_to_end(tmp_path: Path) -> None:
    from irt_fast.data import write_dataset
    from irt_fast.synthetic import make_synthetic
    from training.evaluate import main

    ds, _ = make_synthetic(n_llms=6, n_queries=300, n_benchmarks=3, observed=0.8, seed=0)
    write_dataset(ds, tmp_path / "data")
    out = tmp_path / "out"
    rc = main(
        [
            "--data", str(tmp_path / "data"), "--out", str(out), "--quick", "--epochs", "2",
            "--n-boot", "50", "--curve-sizes", "100,full", "--quiet",
            "--skip-ood", "--skip-interpret",
        ]
    )  # fmt: skip
    assert rc == 0
    for f in ("report.md", "results.json", "split.csv", "reliability.png", "routing.png",
              "curve.png"):  # fmt: skip
        assert (out / f).stat().st_size > 0, f
    for m in ("irtnet", "mlp", "mf", "jeirt"):
        assert (out / "models" / f"{m}.safetensors").exists()
    res = json.loads((out / "results.json").read_text())
    methods = res["methods"]
    assert set(methods) == {
        "irtnet",
        "mlp",
        "mf",
        "jeirt",
        "knn",
        "irt2pl",
        "prior",
        "single_best",
        "oracle",
    }
    n_test = res["setup"]["sizes"]["test"]["queries"]
    for name, m in methods.items():
        t = m["test"]
        assert 0.0 <= t["route_micro"] <= 1.0 and 0.0 <= t["route_macro"] <= 1.0
        assert t["route_micro"] <= methods["oracle"]["test"]["route_micro"] + 1e-12, name
        assert m["n_queries"] + m["n_queries_dropped"] == n_test
        lo, hi = m["ci"]["route_micro"]
        assert lo <= t["route_micro"] + 1e-12 and t["route_micro"] <= hi + 1e-12
        if name not in ("single_best", "oracle"):
            assert 0.0 <= t["accuracy"] <= 1.0 and 0.0 <= t["auc"] <= 1.0
            assert 0.0 <= t["ece"] <= 1.0 and t["logloss"] > 0
            assert m["n_pairs"] == res["setup"]["sizes"]["test"]["pairs"]
    assert methods["oracle"]["test"]["route_micro"] >= methods["single_best"]["test"]["route_micro"]
    # the engine serves every exported model, matching torch
    for m, tr in res["training"].items():
        assert tr["engine"]["ok"], (m, tr["engine"])
        assert tr["engine"]["max_abs_diff"] < 1e-4
    # the prior's routing is the single-best router's
    assert methods["prior"]["test"]["route_micro"] == methods["single_best"]["test"]["route_micro"]
    # decision rules: accuracies in range and consistent gap-closed fractions
    sb, orc = res["reference"]["single_best"], res["reference"]["oracle"]
    for d in res["decision_rules"].values():
        for k in ("argmax", "shrink", "switch", "platt"):
            assert 0.0 <= d[k] <= 1.0
            if orc > sb:
                assert d["gap_closed"][k] == pytest.approx((d[k] - sb) / (orc - sb))
    assert res["knn"]["k"] in (5, 10, 20, 50, 100)
    curve = res["training_size_curve"]
    assert set(curve) == {"irtnet", "mf"} and "100" in curve["irtnet"]
    report = (out / "report.md").read_text()
    assert "IrtNet" in report and "single-best" in report and "not run (--skip-ood)" in report
    split = (out / "split.csv").read_text().splitlines()
    assert len(split) == 1 + 300
    assert np.isfinite(res["methods"]["irtnet"]["test"]["auc"])


def test_evaluate_two_seeds_costs_and_curve_reuse(tmp_path: Path) -> None:
    import polars as pl

    from irt_fast.data import write_dataset
    from irt_fast.synthetic import make_synthetic
    from training.evaluate import main

    ds, _ = make_synthetic(n_llms=5, n_queries=250, n_benchmarks=2, observed=0.9, seed=1)
    write_dataset(ds, tmp_path / "data")
    costs = tmp_path / "costs.csv"
    pl.DataFrame({"model": list(ds.llm_names), "cost": [1.0, 2.0, 4.0, 8.0, 16.0]}).write_csv(costs)
    out = tmp_path / "out"
    rc = main(
        [
            "--data", str(tmp_path / "data"), "--out", str(out), "--quick", "--epochs", "2",
            "--seeds", "2", "--curve-seeds", "2", "--n-boot", "30", "--curve-sizes", "80,full",
            "--methods", "irtnet,mf", "--costs", str(costs), "--quiet",
            "--skip-ood", "--skip-interpret",
        ]
    )  # fmt: skip
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    assert res["setup"]["train_seeds"] == [0, 1]
    for name in ("irtnet", "mf"):
        m = res["methods"][name]
        assert m["n_seeds"] == 2 and len(m["per_seed"]) == 2
        assert len(res["training"][name]["seeds"]) == 2
        for k in ("accuracy", "route_micro"):
            vals = [s[k] for s in m["per_seed"]]
            assert m["test"][k] == pytest.approx(np.mean(vals))
            assert m["seed_sd"][k] == pytest.approx(np.std(vals))
        # the curve's full-size point is the headline runs themselves, seed by seed
        full = res["training_size_curve"][name][str(res["setup"]["sizes"]["train"]["queries"])]
        assert [r["accuracy"] for r in full] == pytest.approx(
            [s["accuracy"] for s in m["per_seed"]]
        )
        assert len(res["training_size_curve"][name]["80"]) == 2
    cc = res["cost_curve"]
    assert set(cc["curves"]) == {"irtnet", "mf", "knn", "irt2pl"}
    for pts in cc["curves"].values():
        assert pts[0]["lam"] == 0.0
        assert pts[-1]["cost"] <= pts[0]["cost"]
        # the last λ routes to the cheapest observed LLM: cost near 1 (LLM 0 answers 90%)
        assert pts[-1]["cost"] < 2.0
    assert cc["oracle_cheapest"]["accuracy"] == pytest.approx(res["reference"]["oracle"])
    assert (out / "cost_curve.png").stat().st_size > 1000
    assert "Accuracy against cost" in (out / "report.md").read_text()


def test_evaluate_on_the_embedllm_layout_with_its_shipped_split(tmp_path: Path) -> None:
    import polars as pl
    import torch

    from irt_fast.splits import read_split_file
    from irt_fast.synthetic import make_synthetic
    from training.evaluate import main

    ds, _ = make_synthetic(n_llms=4, n_queries=150, n_benchmarks=2, observed=0.9, seed=2)
    qid = ds.queries["query_id"].to_numpy()
    assert (np.sort(qid) == np.arange(len(qid))).all()  # EmbedLLM: row i = prompt_id i
    part = np.array(["train"] * 100 + ["val"] * 25 + ["test"] * 25)[
        np.random.default_rng(0).permutation(150)
    ]
    q = ds.queries.with_columns(pl.Series("part", part[np.argsort(np.argsort(qid))]))
    rows = ds.responses.join(q, on="query_id").select(
        pl.col("model").str.replace("llm_", "").cast(pl.Int64).alias("model_id"),
        pl.col("query_id").alias("prompt_id"),
        pl.col("correct").alias("label"),
        pl.col("text").alias("prompt"),
        pl.col("benchmark").alias("category"),
        "part",
    )
    d = tmp_path / "embedllm"
    d.mkdir()
    for name in ("train", "val", "test"):
        rows.filter(pl.col("part") == name).drop("part").write_csv(d / f"{name}.csv")
    emb = np.zeros_like(ds.embeddings)
    emb[qid] = ds.embeddings
    torch.save(torch.from_numpy(emb), d / "question_embeddings.pth")
    out = tmp_path / "out"
    rc = main(
        [
            "--data", str(d), "--out", str(out), "--quick", "--epochs", "1", "--n-boot", "20",
            "--split", "embedllm", "--methods", "mf", "--skip-curve", "--quiet",
            "--skip-ood", "--skip-interpret",
        ]
    )  # fmt: skip
    assert rc == 0
    used = read_split_file(out / "split.csv")
    for name in ("train", "val", "test"):
        want = np.sort(q.filter(pl.col("part") == name)["query_id"].to_numpy())
        assert np.array_equal(used[name], want), name
    res = json.loads((out / "results.json").read_text())
    assert res["setup"]["sizes"]["test"]["queries"] == 25
    # a shipped split with an empty part is refused by name
    (d / "val.csv").unlink()
    with pytest.raises(SystemExit, match="no val questions"):
        main(["--data", str(d), "--out", str(tmp_path / "o2"), "--quick", "--split", "embedllm",
              "--quiet"])  # fmt: skip
