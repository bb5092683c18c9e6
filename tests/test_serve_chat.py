"""Chat completions through the gateway (a real uvicorn process) to stub upstreams (real
processes that record what they received): the official OpenAI client, plain and streamed; the
chosen LLM gets the call with its own key and model id; fallbacks on refused connections, 500,
429 and timeouts; a stream broken midway ends with an error event; tool loops and sessions keep
their LLM; spent budgets remove LLMs; keys never reach a response or a log line."""

from __future__ import annotations

import json

import httpx
import pytest

pytest.importorskip("starlette")
openai = pytest.importorskip("openai")

from serve_fixtures import (  # noqa: E402
    SECRETS,
    TOKEN,
    Gateway,
    Stub,
    dead_url,
    metric,
    require_embedder,
    toml,
    upstreams,
    write_model,
)

USER = [{"role": "user", "content": "What is the capital of France?"}]
#: A lam so large that the price decides: routing then picks the cheapest LLM.
PRICE_DECIDES = {"lam": 1000.0}
ALL_SECRETS = [p for s in SECRETS.values() for p in s.split(",")]


def no_secret(*texts: str) -> None:
    for t in texts:
        for s in ALL_SECRETS:
            assert s not in t


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    require_embedder()
    tmp = tmp_path_factory.mktemp("serve_chat")
    model = write_model(tmp / "m.safetensors")
    stubs = {n: Stub(n, tmp) for n in ("strong", "medium", "cheap")}
    for s in stubs.values():
        s.wait_ready("/_stub/requests")
    llms = upstreams({**stubs, "spare": dead_url()})
    cfg = toml(
        server={"timeout_s": 20.0, "attempt_timeout_s": 2.0, "max_fallbacks": 2},
        auth={"api_keys_env": "GW_TOKENS"},
        llms=llms,
    )
    gw = Gateway(model, cfg, tmp)
    try:
        gw.wait_ready("/healthz")
        yield gw, stubs
    finally:
        gw.stop()
        for s in stubs.values():
            s.stop()
    no_secret(gw.log())
    assert "Traceback" not in gw.log()


@pytest.fixture()
def gw(pool):
    gw, stubs = pool
    for s in stubs.values():
        s.mode("ok")
        s.clear()
    return gw


@pytest.fixture()
def stubs(pool):
    return pool[1]


def client(gw: Gateway) -> openai.OpenAI:
    """An OpenAI client of the gateway; use it in a ``with`` block, which closes its
    connections (a stream the test leaves unfinished would otherwise hold a socket open)."""
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=TOKEN, max_retries=0, timeout=30)


def chat(gw: Gateway, body: dict, **kw) -> httpx.Response:
    r = gw.post("/v1/chat/completions", {"messages": USER, "model": "irt-router", **body}, **kw)
    no_secret(r.text, json.dumps(dict(r.headers)))
    return r


def test_openai_client_plain(gw, stubs):
    with client(gw) as c:
        raw = c.chat.completions.with_raw_response.create(model="irt-router", messages=USER)
    assert raw.headers["x-irt-route-llm"] == "strong"
    assert raw.headers["x-irt-route-reason"] == "routed"
    assert 0.0 < float(raw.headers["x-irt-route-p"]) < 1.0
    answer = raw.parse()
    assert answer.model == "strong" and answer.choices[0].message.content == "answer from strong"
    (rec,) = stubs["strong"].requests()
    assert rec["headers"]["authorization"] == "Bearer " + SECRETS["KEY_STRONG"]
    assert rec["body"]["model"] == "strong-v1" and rec["body"]["messages"] == USER
    assert "irt" not in rec["body"] and TOKEN not in json.dumps(rec)
    assert not stubs["medium"].requests() and not stubs["cheap"].requests()


def test_openai_client_streaming(gw, stubs):
    with client(gw) as c:
        chunks = list(c.chat.completions.create(model="irt-router", messages=USER, stream=True))
    assert len(chunks) >= 4 and all(ch.model == "strong" for ch in chunks)
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == "answer from strong"
    assert all(
        ch.choices for ch in chunks
    )  # the usage chunk the client did not ask for is held back
    (rec,) = stubs["strong"].requests()
    assert rec["body"]["stream"] is True and rec["body"]["stream_options"] == {
        "include_usage": True
    }
    with client(gw) as c:
        asked = list(
            c.chat.completions.create(
                model="irt-router",
                messages=USER,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
    assert asked[-1].usage is not None and asked[-1].usage.completion_tokens == 20


def test_a_pool_name_is_forwarded_as_is(gw, stubs):
    r = chat(gw, {"model": "cheap"})
    assert r.status_code == 200 and r.json()["model"] == "cheap"
    assert r.headers["x-irt-route-reason"] == "direct" and "x-irt-route-p" not in r.headers
    (rec,) = stubs["cheap"].requests()
    assert rec["headers"]["authorization"] == "Bearer " + SECRETS["KEY_CHEAP"]
    assert rec["body"]["model"] == "cheap"


def test_options_in_the_model_string_and_the_irt_field(gw, stubs):
    r = chat(gw, {"model": "irt-router:lam=1000"})
    assert r.json()["model"] == "cheap"
    r = chat(gw, {"irt": {"candidates": ["medium", "strong"], "margin": 0.9}})
    assert r.json()["model"] == "medium"  # the cheaper of the two within 0.9 of the best


@pytest.mark.parametrize("mode, kind", [("500", "http_5xx"), ("429", "http_429")])
def test_fallback_on_upstream_errors(gw, stubs, mode, kind):
    stubs["strong"].mode(mode)
    r = chat(gw, {})
    assert r.status_code == 200, r.text
    assert r.json()["model"] == "medium" and r.headers["x-irt-route-llm"] == "medium"
    assert r.headers["x-irt-fallbacks"] == "1" and r.headers["x-irt-route-reason"] == "fallback"
    assert len(stubs["strong"].requests()) == 1 and len(stubs["medium"].requests()) == 1
    text = gw.get("/metrics").text
    assert metric(text, "irt_serve_upstream_errors_total", llm="strong", kind=kind) >= 1
    assert metric(text, "irt_serve_fallbacks_total", llm="strong") >= 1


def test_fallback_on_connection_refused(gw, stubs):
    # spare is the cheapest and its upstream does not listen
    r = chat(gw, {"irt": {"candidates": ["spare", "cheap"], "margin": 1.0}})
    assert r.status_code == 200 and r.json()["model"] == "cheap"
    assert r.headers["x-irt-fallbacks"] == "1"
    text = gw.get("/metrics").text
    assert metric(text, "irt_serve_upstream_errors_total", llm="spare", kind="connect") >= 1


def test_fallback_on_timeout(gw, stubs):
    stubs["strong"].mode("slow", delay=8.0)
    r = chat(gw, {})
    assert r.status_code == 200 and r.json()["model"] == "medium"
    text = gw.get("/metrics").text
    assert metric(text, "irt_serve_upstream_errors_total", llm="strong", kind="timeout") >= 1


def test_every_candidate_failing_is_an_answer_not_a_hang(gw, stubs):
    for s in stubs.values():
        s.mode("slow", delay=8.0)
    r = chat(gw, {}, timeout=30)
    assert r.status_code == 502
    msg = r.json()["error"]["message"]
    assert msg.count("timed out") == 3 and "strong" in msg and "cheap" in msg
    for s in stubs.values():
        s.mode("429")
    r = chat(gw, {})
    assert r.status_code == 429 and "rate-limited" in r.json()["error"]["message"]


def test_stream_falls_back_before_its_first_byte(gw, stubs):
    stubs["strong"].mode("500")
    with client(gw) as c:
        chunks = list(c.chat.completions.create(model="irt-router", messages=USER, stream=True))
    assert chunks and all(ch.model == "medium" for ch in chunks)


def test_stream_broken_midway_ends_with_an_error_event(gw, stubs):
    stubs["strong"].mode("break")
    got = []
    with client(gw) as c, pytest.raises(openai.APIError) as e:
        for ch in c.chat.completions.create(model="irt-router", messages=USER, stream=True):
            got.append(ch)
    assert got and all(ch.model == "strong" for ch in got)
    assert "'strong'" in str(e.value) and "broke off" in str(e.value)
    with httpx.stream(
        "POST", gw.url + "/v1/chat/completions",
        json={"model": "irt-router", "messages": USER, "stream": True},
        headers={"authorization": f"Bearer {TOKEN}"}, timeout=30,
    ) as r:  # fmt: skip
        events = [e for e in r.read().decode().split("\n\n") if e]
    assert json.loads(events[-1][6:])["error"]["type"] == "upstream_error"
    assert "[DONE]" not in events[-1] and not stubs["medium"].requests()  # no fallback once started


def _tool_turn(first: dict, call_id: str) -> list[dict]:
    return [
        *USER,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": first["choices"][0]["message"]["tool_calls"],
        },
        {"role": "tool", "tool_call_id": call_id, "content": "42"},
    ]


def test_a_tool_loop_keeps_its_llm(gw, stubs):
    stubs["strong"].mode("tool")
    first = chat(gw, {}).json()
    assert first["model"] == "strong" and first["choices"][0]["finish_reason"] == "tool_calls"
    call_id = first["choices"][0]["message"]["tool_calls"][0]["id"]
    # the price now favours cheap, but the tool's result goes back to strong
    r = chat(gw, {"messages": _tool_turn(first, call_id), "irt": PRICE_DECIDES})
    assert r.json()["model"] == "strong" and r.headers["x-irt-route-reason"] == "tool"
    assert stubs["strong"].requests()[-1]["body"]["messages"][-1]["tool_call_id"] == call_id
    assert chat(gw, {"irt": PRICE_DECIDES}).json()["model"] == "cheap"  # a new turn is routed


def test_a_streamed_tool_call_is_remembered(gw, stubs):
    stubs["strong"].mode("tool")
    with client(gw) as c:
        chunks = list(c.chat.completions.create(model="irt-router", messages=USER, stream=True))
    call_id = next(
        ch.choices[0].delta.tool_calls[0].id
        for ch in chunks
        if ch.choices and ch.choices[0].delta.tool_calls
    )
    messages = [
        *USER,
        {"role": "assistant", "content": None, "tool_calls": [{"id": call_id, "type": "function", "function": {"name": "lookup", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": call_id, "content": "42"},
    ]  # fmt: skip
    r = chat(gw, {"messages": messages, "irt": PRICE_DECIDES})
    assert r.json()["model"] == "strong" and r.headers["x-irt-route-reason"] == "tool"


def test_a_session_keeps_its_llm(gw, stubs):
    first = chat(gw, {}, headers={"x-irt-session": "conv-1"})
    assert first.json()["model"] == "strong" and first.headers["x-irt-session"] == "conv-1"
    again = chat(gw, {"irt": PRICE_DECIDES}, headers={"x-irt-session": "conv-1"})
    assert again.json()["model"] == "strong" and again.headers["x-irt-route-reason"] == "session"
    other = chat(gw, {"irt": PRICE_DECIDES}, headers={"x-irt-session": "conv-2"})
    assert other.json()["model"] == "cheap"
    # a pinned LLM that fails falls back to the routed ranking
    stubs["strong"].mode("500")
    moved = chat(gw, {}, headers={"x-irt-session": "conv-1"})
    assert moved.json()["model"] == "medium" and moved.headers["x-irt-route-reason"] == "fallback"


def test_a_client_error_from_the_upstream_is_passed_back_and_a_leaked_key_is_not(gw, stubs):
    stubs["strong"].mode("401_echo")  # the gateway's key refused, and echoed in the body
    r = chat(gw, {})
    assert r.status_code == 200 and r.json()["model"] == "medium"  # moved on; nothing echoed
    text = gw.get("/metrics").text
    assert metric(text, "irt_serve_upstream_errors_total", llm="strong", kind="auth") >= 1


def test_deadline_and_spent_budgets(tmp_path, stubs, pool):
    gw0, _ = pool
    llms = upstreams(
        stubs,
        strong={"budget_usd": 0.001},
        medium={"budget_usd": 0.001},
        cheap={"budget_usd": 0.0001},
    )
    server = {"timeout_s": 1.5, "attempt_timeout_s": 1.0}
    gw = Gateway(gw0.model_path, toml(server=server, llms=llms), tmp_path, name="budget")
    try:
        gw.wait_ready("/healthz")
        # 1. every upstream hangs: 1 s for the first attempt, 0.5 s for the second, then 504
        for s in stubs.values():
            s.mode("slow", delay=8.0)
        r = chat(gw, {}, token=None)
        assert r.status_code == 504 and "within timeout_s" in r.json()["error"]["message"]
        assert r.json()["error"]["message"].count("timed out") >= 2
        # 2. budgets: one answer (10 prompt + 20 completion tokens) spends each LLM's
        for s in stubs.values():
            s.mode("ok")
        got = [chat(gw, {}, token=None).json()["model"] for _ in range(3)]
        assert got == ["strong", "medium", "cheap"]
        r = chat(gw, {}, token=None)
        assert r.status_code == 429 and "spent its budget" in r.json()["error"]["message"]
        assert chat(gw, {"model": "medium"}, token=None).status_code == 429
        assert gw.post("/v1/route", {"texts": ["hi"]}, token=None).status_code == 429
        models = {m["id"]: m for m in gw.get("/v1/models", token=None).json()["data"]}
        assert models["strong"]["spend_usd"] == pytest.approx((10 * 30 + 20 * 60) / 1e6)
        assert models["strong"]["available"] is False and models["irt-router"]["candidates"] == []
        text = gw.get("/metrics", token=None).text
        assert metric(text, "irt_serve_spend_usd_total", llm="medium") == pytest.approx(0.001)
        assert metric(text, "irt_serve_decisions_total", llm="cheap", reason="routed") == 1
    finally:
        gw.stop()
    no_secret(gw.log())


def test_upstreams_go_through_the_environment_proxy_and_netrc_is_never_read(tmp_path, pool):
    """HTTP_PROXY from the gateway's environment carries the upstream call (the stub plays the
    proxy and answers it); a ~/.netrc entry for the upstream's host neither breaks the call nor
    reaches the upstream (the gateway's own key does)."""
    gw0, _ = pool
    proxy = Stub("strong", tmp_path)
    netrc = tmp_path / "netrc"
    netrc.write_text("machine upstream.invalid login netrc-user password netrc-password\n")
    netrc.chmod(0o600)
    llms = {"strong": {"base_url": "http://upstream.invalid/v1", "api_key_env": "KEY_STRONG"}}
    env = {"HTTP_PROXY": proxy.url, "http_proxy": proxy.url, "NETRC": str(netrc)}
    gw = Gateway(gw0.model_path, toml(llms=llms), tmp_path, name="proxy", env=env)
    try:
        proxy.wait_ready("/_stub/requests")
        gw.wait_ready("/healthz")
        r = chat(gw, {"model": "strong"}, token=None)
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["message"]["content"] == "answer from strong"
        (rec,) = proxy.requests()
        assert rec["headers"]["authorization"] == "Bearer " + SECRETS["KEY_STRONG"]
        assert "netrc" not in json.dumps(rec)
    finally:
        gw.stop()
        proxy.stop()
    no_secret(gw.log())
