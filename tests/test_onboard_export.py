"""Format v2 export (prior.mean/cov, llm_info) and onboarding round trips through the engine."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from irt_fast.errors import WeightsFormatError  # noqa: E402
from irt_fast.onboard import Prior  # noqa: E402


@pytest.fixture()
def exported(tmp_path):
    from training.export import save_model
    from training.model import IrtNetConfig, build_model

    torch.manual_seed(0)
    cfg = IrtNetConfig(embed_dim=16, d=4, n_llms=6, hidden_dim=8, expert_dim=8, n_routed=2)
    model = build_model(cfg).eval()
    with torch.no_grad():  # a population with some spread, as after training
        model.theta.normal_(0, 0.7)
        model.llm_bias.normal_(0, 1.0)
    path = save_model(
        model,
        tmp_path / "m.safetensors",
        llm_names=[f"llm{i}" for i in range(6)],
        embedder={"name": "x", "dim": 16},
        n_answers=[100, 90, 80, 70, 60, 50],
    )
    return model, path


def test_export_writes_v2_prior_and_llm_info(exported):
    from safetensors.numpy import load_file

    import irt_fast
    from training.export import read_metadata

    model, path = exported
    t = load_file(str(path))
    expect = Prior.from_population(
        model.theta.detach().double().numpy(), model.llm_bias.detach().double().numpy()
    )
    assert t["prior.mean"].dtype == np.float32 and t["prior.cov"].shape == (5, 5)
    assert np.allclose(t["prior.mean"], expect.mean, atol=1e-6)
    assert np.allclose(t["prior.cov"], expect.cov, atol=1e-6)
    meta = read_metadata(path)
    assert [e["n_answers"] for e in meta["llm_info"]] == [100, 90, 80, 70, 60, 50]
    assert {e["origin"] for e in meta["llm_info"]} == {"trained"}
    m = irt_fast.load(path)
    assert np.allclose(m.prior.cov, expect.cov, atol=1e-6)
    assert m.llm_info[0] == {"name": "llm0", "origin": "trained", "n_answers": 100}


def test_export_refuses_wrong_answer_counts(exported, tmp_path):
    from training.export import save_model

    model, _ = exported
    with pytest.raises(ValueError, match="answer counts"):
        save_model(
            model,
            tmp_path / "x.safetensors",
            llm_names=[f"l{i}" for i in range(6)],
            embedder={"name": "x", "dim": 16},
            n_answers=[1, 2],
        )
    assert not (tmp_path / "x.safetensors").exists()


def test_v1_file_still_reads_with_fallback_prior(exported, tmp_path):
    from safetensors import safe_open
    from safetensors.numpy import load_file, save_file

    import irt_fast
    from training.export import load_torch

    model, path = exported
    with safe_open(str(path), framework="np") as f:
        meta = dict(f.metadata())
    meta["format_version"] = "1"
    del meta["llm_info"]
    t = {k: v for k, v in load_file(str(path)).items() if not k.startswith("prior.")}
    v1 = tmp_path / "v1.safetensors"
    save_file(t, str(v1), metadata=meta)
    load_torch(v1)
    m = irt_fast.load(v1)
    fallback = Prior.from_population(
        model.theta.detach().double().numpy(), model.llm_bias.detach().double().numpy()
    )
    assert np.allclose(m.prior.cov, fallback.cov, atol=1e-5)
    meta["format_version"] = "3"
    save_file(t, str(tmp_path / "v3.safetensors"), metadata=meta)
    with pytest.raises(WeightsFormatError, match="version"):
        load_torch(tmp_path / "v3.safetensors")


def test_probe_add_to_save_load_round_trip(exported, tmp_path):
    import irt_fast

    _, path = exported
    m = irt_fast.load(path)
    rng = np.random.default_rng(0)
    pool = rng.standard_normal((200, 16)).astype(np.float32)
    target = rng.standard_normal((50, 16)).astype(np.float32)
    probe = m.probe(pool=pool, target=target, groups=np.arange(50) % 3, seed=1)
    for _ in range(4):
        idx = probe.next(5)
        probe.record(idx, rng.integers(0, 2, len(idx)))
    est = probe.estimate()
    m2 = probe.add_to(m, "new-llm")
    assert m2.llm_names[-1] == "new-llm" and m.llm_names[-1] == "llm5"
    assert m2.llm_info[-1] == {"name": "new-llm", "origin": "added", "n_answers": 20}
    # the pool model predicts the probe's posterior mode for the new LLM
    p_new = m2.predict_proba(target)[:, -1]
    assert np.allclose(p_new, probe.predict_target(), atol=1e-5)
    assert abs(p_new.mean() - est.accuracy) < 3 * est.se
    m2.save(tmp_path / "pool.safetensors")
    m3 = irt_fast.load(tmp_path / "pool.safetensors")
    assert m3.llm_info == m2.llm_info
    assert np.allclose(m3.predict_proba(target), m2.predict_proba(target), atol=1e-6)
    assert np.allclose(m3.prior.cov, m.prior.cov, atol=1e-6)
    assert json.loads(json.dumps(m3.llm_info))[-1]["n_answers"] == 20
