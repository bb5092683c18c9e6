"""The gateway's parts without a server: config checks, the decision rules against the engine's,
the batcher, sessions, spend, model-string options and the stream rewriting."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("starlette")
pytest.importorskip("prometheus_client")

import aiohttp  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from serve_fixtures import child_env  # noqa: E402
from test_engine_fixtures import config, write  # noqa: E402

import irt_fast  # noqa: E402
from irt_fast.errors import InputError  # noqa: E402
from irt_fast.serve import upstream  # noqa: E402
from irt_fast.serve.chat import route_text  # noqa: E402
from irt_fast.serve.config import Secret, load_config, validate_config  # noqa: E402
from irt_fast.serve.proxy import env_proxies, proxy_for  # noqa: E402
from irt_fast.serve.routing import Batcher, Rule, choose, rank  # noqa: E402
from irt_fast.serve.schemas import (  # noqa: E402
    ApiError,
    ChatMessage,
    RouteOptions,
    merge_options,
    model_options,
)
from irt_fast.serve.sessions import SessionStore  # noqa: E402
from irt_fast.serve.spend import SpendBook  # noqa: E402
from irt_fast.serve.sse import Outcome, rewrite_event, sse_events, text_lines  # noqa: E402
from irt_fast.serve.upstream import redact, upstream_body  # noqa: E402

NAMES = ["llm-0", "llm-1", "llm-2", "llm-3"]
ENV = {"K0": "sk-zero-SECRET", "K1": "sk-one-SECRET", "TOKS": "t1, t2"}
GOOD = """
[routing]
margin = 0.02
route_on = "conversation"
[server]
batch_window_ms = 1
max_fallbacks = 1
[auth]
api_keys_env = "TOKS"
[llms."llm-0"]
base_url = "https://example.invalid/v1/"
api_key_env = "K0"
model = "big-0613"
input_per_mtok = 30.0
output_per_mtok = 60.0
budget_usd = 10.0
[llms."llm-2"]
base_url = "http://127.0.0.1:9/v1"
cost_per_query = 0.002
"""


def _cfg(tmp_path: Path, text: str, env: dict[str, str] | None = None):
    p = tmp_path / "router.toml"
    p.write_text(text)
    return load_config(p, NAMES, ENV if env is None else env)


# ------------------------------------------------------------------------------------ config


def test_good_config_resolves(tmp_path):
    c = _cfg(tmp_path, GOOD)
    assert c.candidates == ("llm-0", "llm-2")
    up = c.upstreams["llm-0"]
    assert up.url == "https://example.invalid/v1/chat/completions"
    assert up.model_id == "big-0613" and c.upstreams["llm-2"].model_id == "llm-2"
    assert up.api_key is not None and up.api_key.reveal() == "sk-zero-SECRET"
    assert [t.reveal() for t in c.tokens] == ["t1", "t2"]
    assert c.attempt_timeout_s == pytest.approx(30.0)  # 60 s shared by 1 + 1 attempts
    # dollars: 1000 prompt tokens + the expected 300 output tokens
    assert up.expected_cost(1000) == pytest.approx((1000 * 30 + 300 * 60) / 1e6)
    assert up.cost_of({"prompt_tokens": 10, "completion_tokens": 20}) == pytest.approx(1.5e-3)
    assert up.cost_of({"prompt_tokens": "x"}) == 0.0 and up.cost_of(None) == 0.0
    for text in (repr(c), str(c.upstreams), repr(up.api_key)):
        assert "SECRET" not in text and "t1" not in text


@pytest.mark.parametrize(
    "change, expected",
    [
        (("margin = 0.02", "lamb = 0.02"), "[routing] lamb: unknown key"),
        (("[server]", "[sever]"), "unknown section [sever]"),
        (('[llms."llm-2"]', '[llms."gpt-9"]'), "no LLM named 'gpt-9'"),
        (('api_key_env = "K0"', 'api_key_env = "NOT_SET_ANYWHERE"'), "NOT_SET_ANYWHERE is not set"),
        (('api_keys_env = "TOKS"', 'api_keys_env = "NO_TOKENS"'), "NO_TOKENS is not set"),
        (("max_fallbacks = 1", "max_fallbacks = -1"), "[server] max_fallbacks"),
        (("max_fallbacks = 1", 'max_fallbacks = "two"'), "[server] max_fallbacks"),
        (("max_fallbacks = 1", 'engine_dtype = "f16"'), "[server] engine_dtype"),
        (("margin = 0.02", "margin = 0.02\nlam = 1.0"), "set lam or margin, not both"),
        (('route_on = "conversation"', 'route_on = "everything"'), "[routing] route_on"),
        (("cost_per_query = 0.002", "model = 'x'"), "[routing] margin trades accuracy"),
        (("https://example.invalid/v1/", "ftp://example.invalid"), "base_url: Value error"),
        (
            ("https://example.invalid/v1/", "https://u:pw@example.invalid"),
            "must not carry credentials",
        ),
        (("cost_per_query = 0.002", "cost_per_query = 0.002\ninput_per_mtok = 1.0"), "not both"),
        (("batch_window_ms = 1", "batch_window_ms = 1\n[routing]"), "not a valid TOML"),
    ],
)
def test_bad_config_names_the_problem(tmp_path, change, expected):
    with pytest.raises(InputError) as e:
        _cfg(tmp_path, GOOD.replace(*change))
    assert expected in str(e.value)
    assert "SECRET" not in str(e.value)


def test_config_candidates_need_upstreams_and_budgets_need_prices(tmp_path):
    with pytest.raises(InputError, match=r"'llm-1' has no \[llms.\"llm-1\"\] upstream"):
        _cfg(tmp_path, GOOD.replace('route_on = "conversation"', 'candidates = ["llm-1"]'))
    text = GOOD.replace("margin = 0.02", "").replace("cost_per_query = 0.002", "budget_usd = 1.0")
    with pytest.raises(InputError, match="budget_usd needs prices"):
        _cfg(tmp_path, text)
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / "absent.toml", NAMES, ENV)
    with pytest.raises(InputError, match="must be a table"):
        validate_config([1, 2])  # type: ignore[arg-type]
    assert "SECRET" not in repr(Secret("SECRET"))


# ---------------------------------------------------------------------------------- decision


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    p = write(tmp_path_factory.mktemp("m") / "m.safetensors", config(n_llms=4))
    return irt_fast.load(p, threads=1)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    rule=st.sampled_from(["best", "penalty", "within_best"]),
    param=st.sampled_from([0.0, 0.01, 0.1, 0.5, 3.0]),
    k=st.integers(1, 4),
    tie_costs=st.booleans(),
)
def test_decision_matches_the_engine(small_model, seed, rule, param, k, tie_costs):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((7, small_model.embed_dim)).astype(np.float32)
    cands = [NAMES[i] for i in rng.permutation(4)[:k]]
    cost = rng.choice([0.1, 0.5], k) if tie_costs else rng.uniform(0, 1, k)
    kw = {}
    if rule == "penalty":
        kw = {"cost": cost.tolist(), "lam": param}
    elif rule == "within_best":
        kw = {"cost": cost.tolist(), "margin": param}
    want = small_model.route(x, candidates=cands, **kw)
    p = small_model.predict_proba(x)[:, [NAMES.index(c) for c in cands]]
    r = Rule(rule, param)
    c = np.asarray(cost, np.float32) if rule != "best" else None
    got = choose(p, c, r)
    assert [cands[i] for i in got] == want.names
    for row in range(len(x)):
        order = rank(p[row], c, r)
        assert order[0] == got[row] and sorted(order) == list(range(k))
        # fallbacks: the same rule over the candidates left
        if k > 1:
            rest = [j for j in range(k) if j != order[0]]
            sub = choose(p[row : row + 1, rest], None if c is None else c[rest], r)[0]
            assert rest[sub] == order[1]


def test_rank_limit_and_ties():
    p = np.array([0.9, 0.85, 0.5, 0.9], np.float32)
    assert rank(p, None, Rule()) == [0, 3, 1, 2]  # ties: the earlier candidate first
    assert rank(p, None, Rule(), limit=2) == [0, 3]
    cost = np.array([10, 1, 0.1, 10], np.float32)
    assert rank(p, cost, Rule("within_best", 0.1)) == [1, 0, 3, 2]


# ----------------------------------------------------------------------------------- batcher


class CountingScorer:
    def __init__(self) -> None:
        self.calls: list[int] = []

    def embed(self, texts: list[str]) -> np.ndarray:
        return np.array([[float(len(t))] for t in texts], np.float32)

    def proba(self, x: np.ndarray) -> np.ndarray:
        self.calls.append(len(x))
        return np.concatenate([x, 2 * x], axis=1)


def test_batcher_batches_concurrent_requests_and_keeps_each_rows():
    async def main(window_ms: float) -> tuple[list[np.ndarray], list[int]]:
        scorer = CountingScorer()
        with ThreadPoolExecutor(2) as ex:
            b = Batcher(window_ms, 64, ex)
            arrivals = [b.arrival() for _ in range(20)]
            jobs = [
                b.submit(scorer, texts=["x" * (i + 1)] * (1 + i % 3), arrival=a)
                if i % 2
                else b.submit(scorer, x=np.full((2, 1), i, np.float32), arrival=a)
                for i, a in enumerate(arrivals)
            ]
            out = await asyncio.gather(*jobs)
            await b.close()
        return out, scorer.calls

    for window in (50.0, 0.0):
        out, calls = asyncio.run(main(window))
        for i, rows in enumerate(out):
            want = np.full((1 + i % 3, 1), i + 1.0) if i % 2 else np.full((2, 1), float(i))
            np.testing.assert_array_equal(rows, np.concatenate([want, 2 * want], 1))
        if window:
            assert len(calls) < 20 and sum(calls) == sum(len(r) for r in out)
        else:
            assert len(calls) == 20  # batching off: every request alone


def test_lone_request_does_not_wait_for_the_window():
    async def main() -> np.ndarray:
        with ThreadPoolExecutor(1) as ex:
            b = Batcher(600_000.0, 64, ex)  # a 10-minute window: waiting for it would hang
            rows = await asyncio.wait_for(b.submit(CountingScorer(), texts=["a"]), 60)
            await b.close()
            return rows

    np.testing.assert_array_equal(asyncio.run(main()), [[1.0, 2.0]])


def test_a_burst_of_requests_is_one_batch_even_unannounced():
    """Requests whose bytes came in one turn of the loop reach the batcher one after another,
    before any of them announced the next: they must still be scored together (scoring the
    first at once, because nothing else was announced yet, would make every batch one row)."""

    async def main() -> list[int]:
        scorer = CountingScorer()
        with ThreadPoolExecutor(1) as ex:
            b = Batcher(50.0, 64, ex)
            await asyncio.gather(*[b.submit(scorer, texts=["a"] * 2) for _ in range(10)])
            await b.close()
        return scorer.calls

    assert asyncio.run(main()) == [20]


def test_a_request_on_its_way_joins_the_batch_that_waits_for_it():
    """The first request waits in the batcher for the second (announced) one; the second, when
    it comes, must join that batch rather than be scored alone (the first would then wait out
    the whole window)."""

    async def main() -> list[int]:
        scorer = CountingScorer()
        with ThreadPoolExecutor(1) as ex:
            b = Batcher(600_000.0, 64, ex)
            a1, a2 = b.arrival(), b.arrival()
            first = asyncio.ensure_future(b.submit(scorer, texts=["a"], arrival=a1))
            await asyncio.sleep(0.01)  # the batcher now holds the first and waits for a2
            second = b.submit(scorer, texts=["bb"], arrival=a2)
            await asyncio.wait_for(asyncio.gather(first, second), 60)
            await b.close()
        return scorer.calls

    assert asyncio.run(main()) == [2]


def test_small_batches_are_scored_on_the_loop_and_large_ones_in_a_thread():
    """A thread hand-off costs more than a small batch: up to INLINE_ROWS rows and
    INLINE_CHARS characters are scored on the event loop, anything larger in a worker."""
    from irt_fast.serve.routing import INLINE_CHARS, INLINE_ROWS

    class ThreadScorer(CountingScorer):
        def proba(self, x: np.ndarray) -> np.ndarray:
            self.threads.append(threading.current_thread() is threading.main_thread())
            return super().proba(x)

    async def main(**kw: Any) -> bool:
        scorer = ThreadScorer()
        scorer.threads = []
        with ThreadPoolExecutor(1) as ex:
            b = Batcher(0.0, 64, ex)  # one request, one batch
            await b.submit(scorer, **kw)
            await b.close()
        return scorer.threads[0]

    assert asyncio.run(main(texts=["a"] * INLINE_ROWS))
    assert asyncio.run(main(x=np.ones((INLINE_ROWS, 1), np.float32)))
    assert not asyncio.run(main(texts=["a"] * (INLINE_ROWS + 1)))
    assert not asyncio.run(main(x=np.ones((INLINE_ROWS + 1, 1), np.float32)))
    assert not asyncio.run(main(texts=["a" * (INLINE_CHARS + 1)]))


# --------------------------------------------------------------------- sessions and spend


def test_sessions_lru_and_ttl():
    now = [0.0]
    s = SessionStore(3, 10.0, clock=lambda: now[0])
    s.put(["a", "b"], "x")
    s.put(["c"], "y")
    assert s.get("a") == "x"  # a is now the most recent
    s.put(["d"], "z")  # over the bound: b (least recent) goes
    assert s.get("b") is None and len(s) == 3
    now[0] = 9.0
    assert s.get("c") == "y"  # refreshed: lives until 19
    now[0] = 15.0
    assert s.get("a") is None and s.get("c") == "y"
    s.configure(1, 10.0)
    assert len(s) == 1


def test_spend_and_budget_shares(tmp_path):
    c = _cfg(tmp_path, GOOD)
    up = c.upstreams["llm-0"]
    book = SpendBook(workers=2)
    assert book.share(up) == 5.0 and not book.exhausted(up)
    book.add("llm-0", 4.0)
    book.add("llm-0", float("nan"))
    book.add("llm-0", -3.0)
    assert book.spent("llm-0") == 4.0
    book.add("llm-0", 1.0)
    assert book.exhausted(up)
    assert book.available(["llm-0", "llm-2", "llm-3"], c.upstreams) == ["llm-2"]


# ---------------------------------------------------------------- options and chat helpers


def test_model_string_options():
    assert model_options("gpt-4") is None
    assert model_options("irt-router") == RouteOptions()
    o = model_options("irt-router:lam=0.01,candidates=a|b,route_on=conversation")
    assert o == RouteOptions(lam=0.01, candidates=["a", "b"], route_on="conversation")
    for bad in ("irt-router:lamb=1", "irt-router:lam=x", "irt-router:lam", "irt-router:lam=-1"):
        with pytest.raises(ApiError) as e:
            model_options(bad)
        assert e.value.status == 400
    with pytest.raises(ApiError, match="not both"):
        merge_options(RouteOptions(lam=1.0), RouteOptions(margin=0.1))
    assert merge_options(RouteOptions(lam=1.0), RouteOptions(lam=2.0)).lam == 2.0


def test_route_text():
    msgs = [
        ChatMessage(role="system", content="be brief"),
        ChatMessage(role="user", content="first question"),
        ChatMessage(role="assistant", content="answer"),
        ChatMessage(
            role="user", content=[{"type": "text", "text": "second"}, {"type": "image_url"}]
        ),
    ]
    assert route_text(msgs, "last_user", 100) == "second"
    assert route_text(msgs, "conversation", 100) == "first question\nsecond"
    assert route_text(msgs, "conversation", 9) == "on\nsecond"  # the most recent part is kept
    with pytest.raises(ApiError):
        route_text(msgs[:1], "last_user", 100)


def test_stream_events_name_the_llm_and_record_usage(tmp_path):
    seen: dict[str, object] = {}
    out = Outcome(on_done=lambda u: seen.update(done=u), on_tool_ids=lambda i: seen.update(ids=i))
    out.strip_usage = True
    chunk = {"model": "upstream-id", "choices": [{"delta": {"tool_calls": [{"id": "call_1"}]}}]}
    got = rewrite_event(["data: " + json.dumps(chunk)], "strong", out)
    assert got is not None and json.loads(got.decode()[6:])["model"] == "strong"
    assert seen["ids"] == ["call_1"]
    usage_only = {"model": "m", "choices": [], "usage": {"prompt_tokens": 3}}
    assert rewrite_event(["data: " + json.dumps(usage_only)], "strong", out) is None
    assert out.usage == {"prompt_tokens": 3}
    assert rewrite_event(["data: [DONE]"], "s", out) == b"data: [DONE]\n\n"
    assert (
        rewrite_event([": keep-alive", "data: not json"], "s", out)
        == b": keep-alive\ndata: not json\n\n"
    )


@settings(max_examples=200, deadline=None)
@given(
    lines=st.lists(st.text(alphabet="ab é:{}", max_size=40), max_size=8),
    ending=st.sampled_from(["\n", "\r\n", "\r"]),
    cuts=st.lists(st.integers(0, 400), max_size=6),
)
def test_stream_lines_survive_any_chunking(lines, ending, cuts):
    """An upstream's bytes give the same lines however the network cut them: a \\r\\n split
    across two chunks is one line end, a UTF-8 character split across two chunks is kept."""
    data = "".join(line + ending for line in lines).encode()
    bounds = sorted({min(c, len(data)) for c in cuts} | {0, len(data)})
    chunks = [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]

    async def collect() -> list[str]:
        async def source():
            for c in chunks:
                yield c

        return [line async for line in text_lines(source())]

    got = asyncio.run(collect())
    assert got == lines


def test_upstream_body_and_redaction(tmp_path):
    c = _cfg(tmp_path, GOOD)
    up = c.upstreams["llm-0"]
    body = {"model": "irt-router", "irt": {"lam": 1}, "messages": [], "stream": True}
    out, strip = upstream_body(body, up, stream=True)
    assert out["model"] == "big-0613" and "irt" not in out and strip
    assert out["stream_options"] == {"include_usage": True} and "stream_options" not in body
    body["stream_options"] = {"include_usage": True}
    assert upstream_body(body, up, stream=True)[1] is False
    assert redact(b'{"m": "bad key sk-zero-SECRET"}', up) == b'{"m": "bad key [redacted]"}'


def test_proxies_come_from_the_environment_as_urllib_reads_them():
    env = {
        "HTTP_PROXY": "http://upper:1",
        "http_proxy": "http://lower:2",
        "HTTPS_PROXY": "http://s:3",
    }
    assert env_proxies(env) == {"http": "http://lower:2", "https": "http://s:3"}
    assert env_proxies({"HTTP_PROXY": "http://p:1", "http_proxy": ""}) == {}
    assert env_proxies({"HTTP_PROXY": "http://p:1", "REQUEST_METHOD": "GET"}) == {}
    env = {"https_proxy": "http://p:1", "no_proxy": "internal.example,127.0.0.1"}
    assert proxy_for("https://api.example.com/v1", env) == "http://p:1"
    assert proxy_for("https://llm.internal.example/v1", env) is None
    assert proxy_for("http://api.example.com/v1", env) is None  # no proxy for http
    assert (
        proxy_for("https://api.example.com/v1", {"https_proxy": "http://p:1", "NO_PROXY": "*"})
        is None
    )


def test_a_resolved_upstream_knows_its_proxy_and_never_shows_it(tmp_path):
    env = {**ENV, "HTTPS_PROXY": "http://user:hunter2@proxy:3128", "NO_PROXY": "127.0.0.1"}
    cfg = _cfg(tmp_path, GOOD, env)
    assert cfg.upstreams["llm-0"].proxy == "http://user:hunter2@proxy:3128"  # https://
    assert cfg.upstreams["llm-2"].proxy is None  # http:// on a NO_PROXY host
    assert "hunter2" not in repr(cfg.upstreams["llm-0"]) and "hunter2" not in repr(cfg)


async def _arrive(chunks):
    """An upstream body arriving in these chunks."""
    for c in chunks:
        yield c


def test_an_endless_line_or_event_from_an_upstream_is_a_broken_stream():
    async def lines(chunks, max_line):
        return [line async for line in text_lines(_arrive(chunks), max_line)]

    assert asyncio.run(lines([b"ab", b"cd\n"], 4)) == ["abcd"]
    with pytest.raises(aiohttp.ClientPayloadError, match="longer than 4 bytes"):
        asyncio.run(lines([b"abc", b"de"], 4))  # no line end yet
    with pytest.raises(aiohttp.ClientPayloadError, match="longer than 4 bytes"):
        asyncio.run(lines([b"x\nabcde"], 4))  # the unfinished rest of a chunk
    got: list[str] = []

    async def collect(chunks, max_line):
        async for line in text_lines(_arrive(chunks), max_line):
            got.append(line)

    with pytest.raises(aiohttp.ClientPayloadError):
        asyncio.run(collect([b"ok\nab", b"cde"], 4))
    assert got == ["ok"]  # the lines before the long one were delivered


def test_the_event_cap_counts_bytes_not_characters():
    async def events(chunks, cap):
        return [e async for e in sse_events(_arrive(chunks), cap)]

    two = "é".encode()  # one character, two bytes
    assert asyncio.run(events([b"data: " + two * 3 + b"\n\n"], 12)) == [["data: ééé"]]
    with pytest.raises(aiohttp.ClientPayloadError, match="event longer than 12 bytes"):
        asyncio.run(events([b"data: " + two * 4 + b"\n\n"], 12))  # 10 characters, 14 bytes
    with pytest.raises(aiohttp.ClientPayloadError, match="event longer than 12 bytes"):
        asyncio.run(events([b"data: 1234\n", b"data: 5678\n\n"], 12))  # two lines of one event


@pytest.mark.parametrize("sized", [True, False], ids=["content-length", "chunked"])
def test_an_oversized_answer_is_a_failed_attempt(tmp_path, monkeypatch, sized):
    """An upstream answer past MAX_ANSWER_BYTES is refused (and falls back) instead of being
    read into memory, whether or not its length was announced."""
    from aiohttp import web

    monkeypatch.setattr(upstream, "MAX_ANSWER_BYTES", 1000)
    up = _cfg(tmp_path, GOOD).upstreams["llm-2"]

    async def big(request: web.Request) -> web.StreamResponse:
        body = b'{"x": "' + b"a" * 5000 + b'"}'
        if sized:
            return web.Response(body=body, content_type="application/json")
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for i in range(0, len(body), 512):
            await resp.write(body[i : i + 512])
        await resp.write_eof()
        return resp

    async def main() -> str:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", big)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        target = dataclasses.replace(up, url=f"http://127.0.0.1:{port}/v1/chat/completions")
        try:
            async with aiohttp.ClientSession() as client:
                await upstream.call_json(client, target, {"messages": []}, 10.0, 10.0)
        except upstream.AttemptFailed as e:
            return e.kind + ": " + e.detail
        finally:
            await runner.cleanup()
        return "no failure"

    assert asyncio.run(main()) == "bad_response: an answer over 1,000 bytes"


def test_a_served_heap_is_kept_out_of_the_cycle_collector(tmp_path):
    """The command's app freezes the long-lived heap once started and again after a reload
    (a full collection then skips the model, the app and the libraries); an app built without
    freeze_heap (as in tests) leaves the process's collector alone."""
    model = write(tmp_path / "m.safetensors", config(n_llms=4))
    cfg = tmp_path / "router.toml"
    cfg.write_text("[server]\nbatch_window_ms = 1\n")
    code = f"""
import asyncio, gc
from irt_fast.serve.app import create_app

async def main(freeze):
    app = create_app({str(model)!r}, {str(cfg)!r}, freeze_heap=freeze)
    async with app.router.lifespan_context(app):
        started = gc.get_freeze_count()
        ok, _ = await app.state.gateway.reload("test")
        assert ok
        return started, gc.get_freeze_count()

plain = asyncio.run(main(False))
frozen = asyncio.run(main(True))
print(plain, frozen)
assert plain == (0, 0), plain
assert frozen[0] > 10_000 and frozen[1] > 10_000, frozen
"""
    subprocess.run([sys.executable, "-c", code], check=True, env=child_env(), timeout=120)


def test_the_engine_dtype_of_the_config_is_the_served_model_s(tmp_path):
    from irt_fast.serve.snapshot import load_snapshot

    model = write(tmp_path / "m.safetensors", config(n_llms=4))
    x = np.random.default_rng(0).standard_normal((64, config(n_llms=4)["embed_dim"]))
    x = x.astype(np.float32)
    p = {}
    for dtype in ("f32", "bf16"):
        cfg = tmp_path / f"{dtype}.toml"
        cfg.write_text(f'[server]\nengine_dtype = "{dtype}"\n')
        snap = load_snapshot(model, cfg)
        assert snap.model._engine.dtype == dtype
        p[dtype] = snap.scorer.proba(x)
    np.testing.assert_allclose(p["bf16"], p["f32"], atol=0.02)
    assert not np.array_equal(p["bf16"], p["f32"])  # the bf16 weights are really in use
