"""The studies of training.experiments (ood, interpret, the experiments' command) on tiny
synthetic data, and the θ-only fit of a new LLM (irt_fast.onboard) over a network's α, β."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from irt_fast.splits import fixed_split
from irt_fast.synthetic import make_synthetic
from training.experiments import interpret, ood
from training.model import IrtNetConfig, build_model


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # Tiny models: thread start-up dominates, and the shared machine is oversubscribed.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def tiny():
    ds, truth = make_synthetic(n_llms=12, n_queries=600, n_benchmarks=4, embed_dim=32, d=4, seed=3)
    split = fixed_split(ds.queries["query_id"].to_numpy(), seed=0)
    return ds, truth, split


def _finite_in(x: float, lo: float, hi: float) -> bool:
    return math.isfinite(x) and lo <= x <= hi


def test_ood_quick(tiny, tmp_path):
    ds, _, split = tiny
    res = ood.run(ds, split, tmp_path, quick=True, seed=0)
    assert len(res["benchmarks"]) == 3
    assert set(res["benchmarks"]) <= {f"bench_{i}" for i in range(4)}
    for r in res["per_benchmark"].values():
        assert r["n_llms"] == ds.n_llms
        for k in ("rmse_irtnet", "rmse_prior", "rmse_mf"):
            assert _finite_in(r[k], 0.0, 1.0)
    o = res["overall"]
    assert o["n_points"] == 3 * ds.n_llms
    # The prior ignores the benchmark; on the synthetic data (benchmark clusters with
    # specialists) a model of the item text must do better out of distribution.
    assert o["rmse_irtnet"] < o["rmse_prior"]
    assert (tmp_path / "ood_pred_vs_true.png").stat().st_size > 1000
    assert "| **all**" in res["markdown"]


def test_interpret_quick(tiny, tmp_path):
    ds, _, split = tiny
    res = interpret.run(ds, split, tmp_path, quick=True, seed=0)
    assert len(res["mean_beta"]) == 4
    assert _finite_in(res["pearson_beta_accuracy"], -1.0, 1.0)
    lo, hi = res["pearson_beta_accuracy_ci"]
    # 4 benchmarks: a resample may repeat one benchmark and leave r undefined (dropped)
    assert -1.0 <= lo <= hi <= 1.0
    # Harder benchmarks (lower accuracy) must get higher effective difficulty.
    assert res["pearson_effective_difficulty_accuracy"] < -0.5
    assert res["tsne_n"] == 500
    # α separates the synthetic benchmark clusters far better than chance.
    assert res["tsne_knn_same_benchmark"] > res["tsne_knn_chance"] + 0.2
    fam = res["theta_family"]
    # Synthetic names (llm_0000 …) are one family: only intra-family pairs.
    assert set(fam["families"].values()) == {"llm"}
    assert fam["intra_mean_l2"] > 0 and math.isnan(fam["inter_mean_l2"])
    assert res["profile_family"]["intra_mean_l2"] > 0
    for p in res["png"]:
        assert (tmp_path / p.split("/")[-1]).stat().st_size > 1000


def test_llm_family_mapping():
    f = interpret.llm_family
    assert f("Meta-Llama-3_1-70B-Instruct_5shots") == "Llama-3"
    assert f("Meta-Llama-3-8B_5shots") == "Llama-3"
    assert f("Llama-2-7b-hf_5shots") == "Llama-2"
    assert f("Mixtral-8x7B-v0.1_5shots") == f("mathstral-7B_5shots") == "Mistral"
    assert f("Qwen1.5-7B-Chat_5shots") == "Qwen"
    assert f("Yi-6b-Chat_5shots") == f("Yi-34B_5shots") == "Yi"
    assert f("gemini-1.5-pro-002_5shots") == "gemini"
    assert f("jamba-1.5-large_5shots") == "jamba"
    d = interpret.family_distances(
        np.array([[0.0, 0.0], [0.0, 1.0], [5.0, 0.0]]), ["Yi-6B", "Yi-34B", "gemma-7b"]
    )
    assert d["intra_mean_l2"] == pytest.approx(1.0)
    assert d["inter_mean_l2"] == pytest.approx((5.0 + math.sqrt(26.0)) / 2)


def _expected_logloss(p_true: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return float(-np.mean(p_true * np.log(p) + (1 - p_true) * np.log1p(-p)))


def test_onboard_fit_recovers_planted_theta_over_a_network():
    """A new LLM fitted alone (irt_fast.onboard, the network frozen) from k of its answers: more
    answers bring θ nearer the planted one and the held-out predictions nearer the truth."""
    from irt_fast.onboard import Prior, fit_llm

    torch.manual_seed(0)
    cfg = IrtNetConfig(
        embed_dim=16, d=4, n_llms=3, hidden_dim=32, expert_dim=16, n_routed=2, dropout=0.0
    )
    model = build_model(cfg).eval()
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((1400, 16)).astype(np.float32)
    with torch.no_grad():
        alpha, beta = model.item_params(torch.from_numpy(emb))
        # Scale α so the planted θ matters; the fit sees the same (frozen) network.
        model.item_net.alpha.weight.mul_(3.0 / float(alpha.std()))
        model.item_net.alpha.bias.mul_(3.0 / float(alpha.std()))
        alpha, beta = (t.double().numpy() for t in model.item_params(torch.from_numpy(emb)))
    prior = Prior(np.zeros(5), np.diag([1.0, 1.0, 1.0, 1.0, 1.5**2]))  # N(0, 1) θ, N(0, 1.5²) b
    losses: dict[int, list[float]] = {10: [], 200: []}
    errors: dict[int, list[float]] = {10: [], 200: []}
    for s in range(5):
        r = np.random.default_rng(100 + s)
        theta_true = r.standard_normal(4)
        p_true = 1.0 / (1.0 + np.exp(-(alpha @ theta_true - beta + 0.3)))
        y = (r.random(len(p_true)) < p_true).astype(np.float64)
        train, test = np.arange(400), np.arange(400, 1400)
        for k in (10, 200):
            pick = r.choice(train, k, replace=False)
            post = fit_llm(alpha[pick], beta[pick], y[pick], prior)
            assert post.theta.shape == (4,) and post.n_answers == k
            p = 1.0 / (1.0 + np.exp(-(alpha[test] @ post.theta - beta[test] + post.bias)))
            losses[k].append(_expected_logloss(p_true[test], p))
            errors[k].append(float(np.linalg.norm(post.theta - theta_true)))
    assert np.mean(losses[200]) < np.mean(losses[10])
    assert np.mean(errors[200]) < np.mean(errors[10])
    # With 200 answers θ is close to the truth relative to its prior scale (‖θ‖ ≈ 2).
    assert np.mean(errors[200]) < 1.0


def test_experiment_cli_writes_result_and_report(tmp_path):
    import json

    from irt_fast.data import write_dataset
    from training.experiments.__main__ import main

    ds, _ = make_synthetic(n_llms=6, n_queries=300, n_benchmarks=3, seed=0)
    write_dataset(ds, tmp_path / "data")
    out = tmp_path / "out"
    args = ["ood", "--data", str(tmp_path / "data"), "--out", str(out), "--quick"]
    assert main([*args, "--max-benchmarks", "1"]) == 0
    res = json.loads((out / "result.json").read_text())
    assert res["quick"] is True and (out / "report.md").read_text() == res["markdown"]
