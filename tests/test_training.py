"""The training front: model invariants, query-major feeding, fit, truth recovery, prior floor."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from irt_fast.synthetic import make_synthetic  # noqa: E402
from training.data import DeviceMatrix, random_split_matrices  # noqa: E402
from training.fit import main  # noqa: E402
from training.loop import TrainOptions, evaluate, fit_model, prior_metrics  # noqa: E402
from training.metrics import pearson  # noqa: E402
from training.model import (  # noqa: E402
    IrtNetConfig,
    MoEItemNet,
    build_model,
    mlp_config_matching,
    n_params,
)

SMALL = IrtNetConfig(embed_dim=16, d=4, n_llms=5, hidden_dim=8, expert_dim=6, n_routed=6)


def test_dense_gate_is_softmax_and_sums_to_one():
    net = MoEItemNet(SMALL).eval()
    v = torch.randn(9, 16)
    w = net.gate_weights(v)
    torch.testing.assert_close(w, torch.softmax(net.gate(v), -1))
    torch.testing.assert_close(w.sum(-1), torch.ones(9))


def test_topk_gate_selects_k_by_biased_score_and_weights_by_unbiased_logits():
    net = MoEItemNet(SMALL.with_(top_k=2)).eval()
    net.selection_bias[:] = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.0, 100.0])
    v = torch.randn(7, 16)
    w = net.gate_weights(v)
    assert ((w > 0).sum(-1) == 2).all()
    assert (w[:, 5] > 0).all(), "the biased expert must always be selected"
    torch.testing.assert_close(w.sum(-1), torch.ones(7))
    g = net.gate(v)
    for i in range(7):
        sel = torch.nonzero(w[i]).flatten()
        torch.testing.assert_close(w[i, sel], torch.softmax(g[i, sel], -1))


def test_balance_bias_moves_only_in_sparse_mode():
    for top_k, should_move in ((6, False), (1, True)):
        net = MoEItemNet(SMALL.with_(top_k=top_k)).train()
        with torch.no_grad():  # make expert 0 win every query
            net.gate.bias[:] = torch.tensor([10.0, 0, 0, 0, 0, 0])
        net(torch.randn(32, 16))
        net.update_balance()
        moved = bool(net.selection_bias.abs().sum() > 0)
        assert moved == should_move
        if should_move:  # overloaded expert pushed down, idle ones up
            assert net.selection_bias[0] < 0 and (net.selection_bias[1:] > 0).all()


def test_mlp_ablation_has_about_the_same_parameter_count():
    cfg = IrtNetConfig(n_llms=29)
    mlp = mlp_config_matching(cfg)
    assert mlp.n_routed == 0
    a, b = n_params(build_model(cfg)), n_params(build_model(mlp))
    assert abs(a - b) / a < 0.01


def test_query_major_loss_equals_row_loss():
    ds, _ = make_synthetic(n_llms=7, n_queries=40, embed_dim=16, observed=0.6, seed=3)
    m = random_split_matrices(ds)[0]
    model = build_model(SMALL.with_(n_llms=7)).eval()
    dm = DeviceMatrix(m, torch.device("cpu"))
    q = torch.arange(m.n_queries)
    v, pos, llm, y = dm.query_batch(q)
    a, b = model.item_params(v)
    qm = torch.nn.functional.binary_cross_entropy_with_logits(model.pair_logits(a, b, pos, llm), y)
    # row-wise: run the item network once per pair
    pq = torch.from_numpy(m.query_of_pair())
    a2, b2 = model.item_params(dm.emb[pq])
    rows = torch.arange(m.n_pairs)
    rw = torch.nn.functional.binary_cross_entropy_with_logits(
        model.pair_logits(a2, b2, rows, dm.llm), dm.y
    )
    torch.testing.assert_close(qm, rw, rtol=1e-5, atol=1e-6)
    assert (
        m.n_pairs
        == len(y)
        == int(ds.responses.filter(ds.responses["q_idx"].is_in(m.query_rows.tolist())).height)
    )


@pytest.mark.parametrize("observed", [0.9, 0.05])
def test_dense_and_gathered_pair_logits_agree_with_their_gradients(observed, monkeypatch):
    """pair_logits reads the pairs from the dense [B, n_llms] block when they fill it, else
    gathers θ and α per pair: both give the same logits and the same gradients."""
    import training.model as tm

    ds, _ = make_synthetic(n_llms=40, n_queries=60, embed_dim=16, observed=observed, seed=4)
    m = random_split_matrices(ds)[0]
    dm = DeviceMatrix(m, torch.device("cpu"))
    v, pos, llm, y = dm.query_batch(torch.arange(m.n_queries))
    out = {}
    for fill in (1, 10**9):  # 1: never dense; 10**9: always dense
        monkeypatch.setattr(tm, "DENSE_MIN_FILL", fill)
        torch.manual_seed(0)
        model = build_model(SMALL.with_(n_llms=40)).eval()
        a, b = model.item_params(v)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            model.pair_logits(a, b, pos, llm), y
        )
        loss.backward()
        out[fill] = (
            loss.detach(),
            model.theta.grad.clone(),
            model.item_net.gate.weight.grad.clone(),
        )
    for x, z in zip(out[1], out[10**9], strict=True):
        torch.testing.assert_close(x, z, rtol=1e-5, atol=1e-7)
    assert out[1][1].abs().sum() > 0


def test_fit_is_reproducible_on_cpu():
    ds, _ = make_synthetic(n_llms=6, n_queries=200, embed_dim=16, seed=1)
    tr, va, _ = random_split_matrices(ds)
    opts = TrainOptions(epochs=2, lr=1e-3, progress=False, device="cpu", seed=5)
    cfg = SMALL.with_(n_llms=6)
    p1 = fit_model(cfg, tr, va, opts).model.theta.detach().clone()
    p2 = fit_model(cfg, tr, va, opts).model.theta.detach().clone()
    torch.testing.assert_close(p1, p2, rtol=0, atol=0)


def test_training_recovers_synthetic_truth():
    ds, truth = make_synthetic(n_llms=20, n_queries=2000, embed_dim=32, d=4, seed=0)
    tr, va, te = random_split_matrices(ds)
    cfg = IrtNetConfig(
        embed_dim=32, d=8, n_llms=20, hidden_dim=64, expert_dim=32, n_routed=3, dropout=0.1
    )
    opts = TrainOptions(epochs=25, lr=3e-3, batch_queries=64, progress=False, device="cpu")
    fit = fit_model(cfg, tr, va, opts)
    v = torch.from_numpy(ds.embeddings[te.query_rows])
    with torch.no_grad():
        alpha, beta = fit.model.item_params(v)
        P = fit.model.predict_proba(v).numpy()
        # β is identified only up to θ → θ + c, β → β + α·c; compare the difficulty for the
        # average LLM, β − α·θ̄ (minus the mean offset), which every logit pins down.
        learned = beta - alpha @ fit.model.theta.mean(0) - fit.model.llm_bias.mean()
    q = te.query_rows
    true = truth.beta[q] - truth.alpha[q] @ truth.theta.mean(0)
    r_beta = pearson(learned.numpy(), true)
    r_p = pearson(P, truth.prob[:, q].T)
    assert r_p > 0.9, r_p
    assert r_beta > 0.9, r_beta
    ev = evaluate(fit.model, te, torch.device("cpu"), prior_rank=tr.llm_base_rates())
    assert ev["correctness"]["auc"] > prior_metrics(tr, te, None)["correctness"]["auc"] + 0.05


def test_sparse_large_pool_never_worse_than_per_llm_prior():
    """5,000 LLMs × 1,000 queries, 30% observed: each LLM has ~210 training answers for 8-d θ."""
    ds, _ = make_synthetic(n_llms=5000, n_queries=1000, embed_dim=32, d=4, observed=0.3, seed=2)
    tr, va, te = random_split_matrices(ds)
    cfg = IrtNetConfig(embed_dim=32, d=16, n_llms=5000, hidden_dim=64, expert_dim=32, n_routed=3)
    opts = TrainOptions(epochs=5, lr=3e-3, batch_queries=64, progress=False, device="cpu")
    fit = fit_model(cfg, tr, va, opts)
    ev = evaluate(fit.model, te, torch.device("cpu"))["correctness"]
    prior = prior_metrics(tr, te, None)["correctness"]
    assert ev["logloss"] <= prior["logloss"], (ev, prior)
    assert ev["accuracy"] >= prior["accuracy"], (ev, prior)


def test_fit_cli_demo_writes_every_output(tmp_path):
    out = tmp_path / "run"
    rc = main(["--demo", "--out", str(out), "--epochs", "2", "--quiet", "--n-routed", "2"])
    assert rc == 0
    for name in ("model.safetensors", "metrics.json", "split.csv", "log.jsonl"):
        assert (out / name).exists(), name
    metrics = json.loads((out / "metrics.json").read_text())
    for split in ("val", "test"):
        assert 0.5 < metrics[split]["correctness"]["accuracy"] <= 1.0
        assert "micro" in metrics[split]["routing"]["router"]
    assert len((out / "log.jsonl").read_text().splitlines()) == metrics["epochs_run"]
    assert not list(out.glob(".*tmp*")), "temporary files left behind"


def test_evaluate_one_pass_equals_pairwise_and_dense_paths():
    """evaluate() shares one item-network pass between the pair metrics and routing; both must
    equal what predict_pairs and predict_proba give separately, chunk boundaries included."""
    from training.loop import predict_pairs
    from training.metrics import concat_outcomes, correctness_metrics, routing_correct

    ds, _ = make_synthetic(n_llms=7, n_queries=300, observed=0.6, seed=4)
    tr, va, _ = random_split_matrices(ds)
    model = build_model(IrtNetConfig(embed_dim=ds.embeddings.shape[1], n_llms=7, d=4,
                                      hidden_dim=16, expert_dim=8, n_routed=3))  # fmt: skip
    model.eval()
    rank = tr.llm_base_rates()
    dev = torch.device("cpu")
    bench = ds.benchmarks[va.query_rows]
    got = evaluate(model, va, dev, benchmarks=bench, prior_rank=rank, chunk=17)
    want_c = correctness_metrics(va.y, predict_pairs(model, va, dev, chunk=17))
    assert got["correctness"] == want_c
    with torch.no_grad():
        P = model.predict_proba(torch.from_numpy(va.emb)).numpy()
    parts = [routing_correct(P, va.dense_labels(), rank)]
    want_r = concat_outcomes(parts)
    from training.metrics import summarize_routing

    assert got["routing"] == summarize_routing(want_r, bench)
    assert np.isfinite(got["routing"]["router"]["macro"])


def test_weight_decay_spares_the_per_llm_parameters():
    """θ and the per-LLM offsets have their own prior; weight decay (a prior whose weight grows
    with the number of LLMs) applies to the item network only."""
    from training.loop import param_groups

    model = build_model(SMALL.with_(n_llms=5))
    decay, spared = param_groups(model, 1e-4)
    assert decay["weight_decay"] == 1e-4 and spared["weight_decay"] == 0.0
    assert {id(p) for p in spared["params"]} == {id(model.theta), id(model.llm_bias)}
    n_all = sum(1 for _ in model.parameters())
    assert len(decay["params"]) + len(spared["params"]) == n_all
    assert all(p is not model.theta for p in decay["params"])
    # the paper's fixed recipe decays everything
    assert param_groups(model, 1e-4, llm_decay=True)[1]["weight_decay"] == 1e-4
