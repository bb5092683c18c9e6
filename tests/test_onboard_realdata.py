"""The onboarding evaluation end to end on MMLU-Pro (slow: trains 2 reduced models)."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch")


@pytest.mark.slow
def test_onboard_experiment_quick(mmlu_pro_dir, tmp_path):
    from training.experiments.__main__ import main

    assert (
        main(
            [
                "onboard",
                "--data",
                str(mmlu_pro_dir),
                "--out",
                str(tmp_path),
                "--quick",
                "--folds",
                "2",
            ]
        )
        == 0
    )
    res = json.loads((tmp_path / "result.json").read_text())
    agg = res["aggregate"]
    assert (tmp_path / "onboard_error_vs_k.png").stat().st_size > 0
    assert "| floor" in (tmp_path / "report.md").read_text()
    assert len(res["floors"]) == 29  # every LLM held out once
    for s in ("random", "stratified", "adaptive"):
        # more answers help, and the floor (all ~9,600 answers) beats 5 answers
        assert agg["by"][f"{s}|50"]["mae"] < agg["by"][f"{s}|5"]["mae"]
        assert agg["floor"]["mae"] < agg["by"][f"{s}|5"]["mae"]
        cov = agg["by"][f"{s}|50"]["coverage"]
        assert 0.6 <= cov <= 1.0, (s, cov)
    assert np.isfinite(agg["saving"]["k_equiv"])
