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
            "--skip-ood", "--skip-interpret", "--skip-newllm",
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
    assert set(methods) == {"irtnet", "mlp", "mf", "jeirt", "knn", "prior", "single_best", "oracle"}
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
        for k in ("argmax", "shrink", "margin", "platt"):
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
