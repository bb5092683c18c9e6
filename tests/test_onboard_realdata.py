"""The onboarding evaluation end to end on MMLU-Pro (slow: trains 2 reduced fold models)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")


@pytest.mark.slow
def test_onboard_experiment_quick(mmlu_pro_dir, tmp_path):
    from training.experiments.__main__ import main

    args = ["onboard", "--data", str(mmlu_pro_dir), "--out", str(tmp_path), "--quick"]
    assert main([*args, "--folds", "2"]) == 0
    res = json.loads((tmp_path / "result.json").read_text())
    by, floors = res["aggregate"]["by"], res["aggregate"]["floors"]
    assert "| floor: model" in (tmp_path / "report.md").read_text()
    assert by["random_mean|50"]["n_llms"] == 29  # every LLM held out once
    for m in ("neyman_model", "neyman_blend", "adaptive", "anchors_blend"):
        # more answers help, and the floor (all ~9,600 answers) beats 10 answers
        assert by[f"{m}|50"]["mae"] < by[f"{m}|10"]["mae"], m
        assert floors["floor_model"]["mae"] < by[f"{m}|10"]["mae"]
        assert 0.6 <= by[f"{m}|50"]["coverage"] <= 1.0, m
