"""The gateway over HTTP (a real uvicorn process on 127.0.0.1): /v1/route and
/v1/predict_accuracy agree with the Python API, /v1/models, /healthz, /metrics, bearer auth, and
every malformed request gets a 4xx that says what is wrong."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from serve_fixtures import (  # noqa: E402
    NAMES,
    SECRETS,
    TOKEN,
    Gateway,
    Stub,
    metric,
    require_embedder,
    toml,
    upstreams,
    write_model,
)

import irt_fast  # noqa: E402

TEXTS = [
    "What is the derivative of x squared?",
    "Which court decided Marbury v. Madison?",
    "Name an enzyme that digests starch.",
]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    require_embedder()
    tmp = tmp_path_factory.mktemp("serve_http")
    model = write_model(tmp / "m.safetensors")
    stubs = {"strong": Stub("strong", tmp), "medium": Stub("medium", tmp)}
    for s in stubs.values():
        s.wait_ready("/_stub/requests")
    cfg = toml(
        server={"max_texts": 8, "max_body_bytes": 65536},
        auth={"api_keys_env": "GW_TOKENS"},
        llms=upstreams(stubs),
    )
    gw = Gateway(model, cfg, tmp)
    try:
        gw.wait_ready("/healthz")
        yield gw, irt_fast.load(model, threads=1)
    finally:
        gw.stop()
        for s in stubs.values():
            s.stop()
    log = gw.log()
    for secret in SECRETS.values():
        for part in secret.split(","):
            assert part not in log


def test_route_texts_matches_the_python_api(served):
    gw, model = served
    r = gw.post("/v1/route", {"texts": TEXTS, "proba": True, "candidates": NAMES})
    assert r.status_code == 200, r.text
    got = r.json()
    want = model.route(TEXTS)
    assert got["llms"] == want.names
    np.testing.assert_allclose(got["p"], want.proba, rtol=1e-6)
    np.testing.assert_allclose(got["proba"], model.predict_proba(TEXTS), rtol=1e-6)
    assert got["candidates"] == NAMES and got["model"]["embedder"] == "m2v-mpnet-256"


def test_route_embeddings_with_a_cost_rule(served):
    gw, model = served
    x = np.random.default_rng(3).standard_normal((5, 256)).astype(np.float32)
    cost = {"strong": 1.0, "medium": 0.2, "cheap": 0.0, "spare": 0.0}
    r = gw.post("/v1/route", {"embeddings": x.tolist(), "cost": cost, "lam": 2.0})
    assert r.status_code == 200, r.text
    # the default candidates are the configured upstreams
    want = model.route(x, candidates=["strong", "medium"], cost=cost, lam=2.0)
    assert r.json()["llms"] == want.names
    r = gw.post("/v1/route", {"embeddings": x.tolist(), "candidates": ["cheap", "strong"], "cost": [0.0, 1.0], "margin": 0.5})  # fmt: skip
    want = model.route(x, candidates=["cheap", "strong"], cost=[0.0, 1.0], margin=0.5)
    assert r.json()["llms"] == want.names


def test_predict_accuracy_matches_the_python_api(served):
    gw, model = served
    r = gw.post("/v1/predict_accuracy", {"texts": TEXTS})
    assert r.status_code == 200, r.text
    want = model.predict_accuracy(TEXTS)
    got = r.json()
    assert got["n"] == 3 and list(got["accuracy"]) == NAMES
    for k in NAMES:
        assert got["accuracy"][k] == pytest.approx(want[k], rel=1e-6)
    groups = ["a", "b", "a"]
    r = gw.post("/v1/predict_accuracy", {"texts": TEXTS, "groups": groups})
    want = model.predict_accuracy(TEXTS, groups=groups)
    assert r.json()["n"] == {"a": 2, "b": 1}
    for g in ("a", "b"):
        for k in NAMES:
            assert r.json()["accuracy"][g][k] == pytest.approx(want[g][k], rel=1e-6)


def test_models_health_and_metrics(served):
    gw, _ = served
    models = gw.get("/v1/models").json()
    ids = [m["id"] for m in models["data"]]
    assert ids == ["irt-router", "strong", "medium"]
    strong = models["data"][1]
    assert strong["upstream_model"] == "strong-v1" and strong["prices"]["input_per_mtok"] == 30.0
    health = gw.get("/healthz", token=None)
    assert health.status_code == 200 and len(health.json()["sha256"]) == 64
    gw.post("/v1/route", {"texts": ["hello"]})
    text = gw.get("/metrics").text
    for name in (
        "irt_serve_requests_total",
        "irt_serve_request_duration_seconds_bucket",
        "irt_serve_batch_size_bucket",
        "irt_serve_stage_duration_seconds_bucket",
        "irt_serve_reloads_total",
        "irt_serve_model_info",
    ):
        assert name in text, name
    assert metric(text, "irt_serve_requests_total", endpoint="/v1/route", status="200") >= 1
    assert metric(text, "irt_serve_model_info", sha256=health.json()["sha256"]) == 1.0
    assert metric(text, "irt_serve_stage_duration_seconds_count", stage="embed") >= 1


def test_auth(served):
    gw, _ = served
    assert gw.post("/v1/route", {"texts": ["a"]}, token=None).status_code == 401
    r = gw.post("/v1/route", {"texts": ["a"]}, token="wrong")
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
    assert gw.post("/v1/route", {"texts": ["a"]}, token="gw-token-SECRET-second").status_code == 200
    assert gw.get("/metrics", token=None).status_code == 401
    assert gw.get("/v1/models", token=None).status_code == 401
    assert gw.post("/admin/reload", token=None).status_code == 401


BAD = [
    ("/v1/route", b"{not json", 400, "not valid JSON"),
    ("/v1/route", b"", 400, "body is empty"),
    ("/v1/route", b"[" * 60000, 400, "not valid JSON"),
    ("/v1/route", b"[1, 2]", 400, "JSON object"),
    ("/v1/route", {}, 400, "either texts or embeddings"),
    ("/v1/route", {"texts": ["a"], "embeddings": [[0.0] * 256]}, 400, "either texts or embeddings"),
    ("/v1/route", {"texts": []}, 400, "texts is empty"),
    ("/v1/route", {"texts": "one string"}, 400, "texts: Input should be a valid list"),
    ("/v1/route", {"texts": [1, 2]}, 400, "texts.0"),
    ("/v1/route", {"texts": ["a"] * 9}, 413, "at most 8"),
    ("/v1/route", {"texts": ["a"], "bogus": 1}, 400, "bogus: unknown field"),
    ("/v1/route", {"texts": ["a"], "candidates": ["gpt-9"]}, 400, "unknown LLM 'gpt-9'"),
    ("/v1/route", {"texts": ["a"], "candidates": []}, 400, "non-empty"),
    ("/v1/route", {"texts": ["a"], "lam": 1.0, "margin": 0.1}, 400, "not both"),
    ("/v1/route", {"texts": ["a"], "lam": -1.0}, 400, "lam"),
    ("/v1/route", {"texts": ["a"], "cost": [1.0]}, 400, "cost needs a trade-off"),
    ("/v1/route", {"texts": ["a"], "cost": [1.0], "lam": 1.0}, 400, "1 costs for 2 candidates"),
    ("/v1/route", {"texts": ["a"], "cost": {"gpt-9": 1}, "lam": 1.0}, 400, "unknown LLM 'gpt-9'"),
    ("/v1/route", {"embeddings": [[0.0] * 8]}, 400, "shape [n, 256]"),
    ("/v1/route", {"embeddings": [[0.0] * 256, [0.0] * 5]}, 400, "lists of 256 numbers"),
    ("/v1/route", {"embeddings": [["a"] * 256]}, 400, "lists of 256 numbers"),
    ("/v1/route", b'{"embeddings": [[NaN' + b", 0.0" * 255 + b"]]}", 400, "non-finite value at row 0, column 0"),
    ("/v1/route", b'{"embeddings": [[0.0, 1e999' + b", 0.0" * 254 + b"]]}", 400, "non-finite value at row 0, column 1"),
    ("/v1/route", b'{"texts": ["\\ud800"]}', 400, "not valid Unicode"),
    ("/v1/route", b'{"texts": ["' + b"x" * 70000 + b'"]}', 413, "over 65536 bytes"),
    ("/v1/predict_accuracy", {"texts": ["a", "b"], "groups": ["g"]}, 400, "1 group labels for 2"),
    ("/v1/chat/completions", {"model": "irt-router"}, 400, "messages: Field required"),
    ("/v1/chat/completions", {"model": "irt-router", "messages": []}, 400, "messages"),
    ("/v1/chat/completions", {"model": "gpt-9", "messages": [{"role": "user", "content": "hi"}]}, 404, "'gpt-9' is neither"),
    ("/v1/chat/completions", {"model": "irt-router", "messages": [{"role": "wizard", "content": "hi"}]}, 400, "messages.0.role"),
    ("/v1/chat/completions", {"model": "irt-router", "messages": [{"role": "system", "content": "hi"}]}, 400, "needs a user message"),
    ("/v1/chat/completions", {"model": "irt-router:lamb=1", "messages": [{"role": "user", "content": "hi"}]}, 400, "unknown option"),
    ("/v1/chat/completions", {"model": "irt-router", "irt": {"candidates": ["spare"]}, "messages": [{"role": "user", "content": "hi"}]}, 400, "'spare' is not an LLM of the pool"),
    ("/v1/chat/completions", {"model": "irt-router", "irt": {"lam": 1.0, "margin": 1.0}, "messages": [{"role": "user", "content": "hi"}]}, 400, "not both"),
]  # fmt: skip


@pytest.mark.parametrize("path, body, status, fragment", BAD, ids=[f"{i}" for i in range(len(BAD))])
def test_bad_requests_get_their_4xx(served, path, body, status, fragment):
    gw, _ = served
    r = gw.post(path, body)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert fragment in err["message"], err
    assert err["code"] == status


def test_unknown_routes_and_methods(served):
    gw, _ = served
    assert gw.get("/v1/nothing").status_code == 404
    assert gw.get("/v1/route").status_code == 405
    r = gw.post("/v1/chat/completions", {"model": "irt-router", "messages": [{"role": "user", "content": "hi"}]}, headers={"x-irt-session": "x" * 300})  # fmt: skip
    assert r.status_code == 400 and "x-irt-session" in r.json()["error"]["message"]
    # the server is still healthy after all of the above
    assert gw.post("/v1/route", {"texts": ["still fine"]}).status_code == 200
    assert "Traceback" not in gw.log()
    assert TOKEN not in gw.log()
