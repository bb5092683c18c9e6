"""``POST /v1/chat/completions``: choose the LLM, forward, fall back, stream back.

The choice, in order: a tool result goes back to the LLM that made the call; a known
``x-irt-session`` keeps its LLM; ``model: "irt-router[:options]"`` routes on the text (the last
user message, or the user turns of the conversation) with the configured rule; any other model
name of the pool is forwarded as is. LLMs past their budget are skipped; none left is a 429.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from starlette.responses import Response, StreamingResponse

from irt_fast.embedders import check_texts
from irt_fast.errors import InputError
from irt_fast.serve.gateway import Gateway
from irt_fast.serve.routing import Arrival, Rule, rank
from irt_fast.serve.schemas import (
    ApiError,
    ChatMessage,
    ChatRequest,
    merge_options,
    model_options,
    validate,
)
from irt_fast.serve.sessions import MAX_KEY_CHARS, session_key, tool_key
from irt_fast.serve.snapshot import CHARS_PER_TOKEN, Snapshot
from irt_fast.serve.sse import Outcome, message_tool_ids
from irt_fast.serve.upstream import (
    AttemptFailed,
    Passthrough,
    call_json,
    open_stream,
    relay,
    upstream_body,
)

log = logging.getLogger("irt_fast.serve")

Choice = tuple[str, "float | None"]
#: An attempt is not started with less time than this left before the deadline.
MIN_ATTEMPT_S = 0.01  # (LLM name, its P(correct) when it was routed)


@dataclass
class Plan:
    """Where a request goes: LLMs to try in order, and how to find more when they fail."""

    first: list[Choice]
    reason: str
    more: Callable[[], Awaitable[list[Choice]]] | None = None


def message_text(content: Any) -> str:
    """The text of a message's content.

    Args:
        content: a string, a list of content parts (their ``text`` parts are joined), or None.

    Returns:
        The text ("" when there is none).
    """
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            p["text"] for p in content if p.get("type") == "text" and isinstance(p.get("text"), str)
        )
    return ""


def route_text(messages: list[ChatMessage], route_on: str, max_chars: int) -> str:
    """What is routed on.

    Args:
        messages: the conversation.
        route_on: ``last_user`` (the last user message, cut to ``max_chars``) or
            ``conversation`` (the user turns joined, most recent last, keeping the last
            ``max_chars`` characters).
        max_chars: about the embedder's length limit.

    Returns:
        The text.

    Raises:
        ApiError: 400 when no user message has text.
    """
    users = [t for m in messages if m.role == "user" and (t := message_text(m.content)).strip()]
    if not users:
        raise ApiError(400, "routing needs a user message with text", param="messages")
    if route_on == "last_user":
        return users[-1][:max_chars]
    return "\n".join(users)[-max_chars:]


def session_header(value: str | None) -> str | None:
    """The ``x-irt-session`` header, checked (1-256 printable ASCII characters) or None."""
    if value is None:
        return None
    if not value or len(value) > MAX_KEY_CHARS or not value.isprintable() or not value.isascii():
        raise ApiError(
            400,
            f"x-irt-session must be 1-{MAX_KEY_CHARS} printable ASCII characters",
            param="x-irt-session",
        )
    return value


async def chat_completion(
    gw: Gateway, body: Any, session: str | None, arrival: Arrival
) -> Response:
    """Answer one chat completion request.

    Args:
        gw: the gateway.
        body: the parsed JSON body.
        session: the ``x-irt-session`` header.
        arrival: this request's batcher announcement (closed on every path).

    Returns:
        The response (JSON or an SSE stream).
    """
    started = time.perf_counter()
    snap = gw.snapshot  # this request finishes on this pair, whatever a reload does meanwhile
    try:
        req: ChatRequest = validate(ChatRequest, body)
        session = session_header(session)
        plan = await _plan(gw, snap, req, session, arrival)
    finally:
        arrival.close()
    return await _forward(gw, snap, plan, body, req.stream, session, started)


async def _plan(
    gw: Gateway, snap: Snapshot, req: ChatRequest, session: str | None, arrival: Arrival
) -> Plan:
    cfg = snap.config
    if not cfg.upstreams:
        raise ApiError(503, "this gateway has no upstream LLMs configured ([llms] in its config)")
    opts = model_options(req.model)
    if opts is None:
        up = cfg.upstreams.get(req.model)
        if up is None:
            raise ApiError(
                404,
                f"model {req.model!r} is neither 'irt-router' nor an LLM of the pool "
                f"({', '.join(list(cfg.upstreams)[:8])}{', ...' if len(cfg.upstreams) > 8 else ''})",
                kind="not_found_error",
                param="model",
            )
        if gw.spend.exhausted(up):
            raise ApiError(429, f"{req.model!r} has spent its budget", kind="budget_exhausted")
        return Plan([(req.model, None)], "direct")
    opts = merge_options(opts, req.irt)
    names = opts.candidates if opts.candidates is not None else list(cfg.candidates)
    unknown = [n for n in names if n not in cfg.upstreams]
    if unknown:
        raise ApiError(
            400, f"candidate {unknown[0]!r} is not an LLM of the pool", param="irt.candidates"
        )
    if not names or len(set(names)) != len(names):
        raise ApiError(
            400, "candidates must be a non-empty list of distinct names", param="irt.candidates"
        )
    names = gw.spend.available(names, cfg.upstreams)
    if not names:
        raise ApiError(
            429,
            "every candidate LLM has spent its budget (budget_usd): no LLM left to route to",
            kind="budget_exhausted",
        )
    rule = (
        Rule.of(opts.lam, opts.margin)
        if (opts.lam, opts.margin) != (None, None)
        else Rule.of(cfg.routing.lam, cfg.routing.margin)
    )
    if rule.needs_cost:
        bare = [n for n in names if not cfg.upstreams[n].priced]
        if bare:
            raise ApiError(400, f"lam/margin need prices, and {bare[0]!r} has none", param="irt")
    route_on = opts.route_on or cfg.routing.route_on
    limit = 1 + cfg.server.max_fallbacks
    messages = req.messages

    async def routed(exclude: str | None = None) -> list[Choice]:
        text = route_text(messages, route_on, snap.scorer.max_chars)
        try:
            check_texts([text])
        except InputError as e:
            raise ApiError(400, str(e), param="messages") from None
        p = await gw.score(snap, texts=[text], arrival=arrival)
        cands = [n for n in names if n != exclude]
        pc = p[0, [snap.index[n] for n in cands]]
        tokens = sum(len(message_text(m.content)) for m in messages) / CHARS_PER_TOKEN
        cost = (
            np.array([cfg.upstreams[n].expected_cost(tokens) for n in cands], np.float32)
            if rule.needs_cost
            else None
        )
        order = rank(pc, cost, rule, limit)
        if cfg.server.log_prompts:
            log.info("routing %r -> %s", text[:200], cands[order[0]])
        return [(cands[i], float(pc[i])) for i in order]

    pinned, reason = None, ""
    last = messages[-1]
    if last.role == "tool" and last.tool_call_id:
        pinned, reason = gw.sessions.get(tool_key(last.tool_call_id)), "tool"
    if pinned is None and session is not None:
        pinned, reason = gw.sessions.get(session_key(session)), "session"
    if pinned is not None and pinned in names:
        arrival.close()  # not scored now; only if the pinned LLM fails
        return Plan([(pinned, None)], reason, lambda: routed(exclude=pinned))
    return Plan(await routed(), "routed")


def _headers(
    llm: str, p: float | None, reason: str, failed: int, session: str | None
) -> dict[str, str]:
    h = {"x-irt-route-llm": llm, "x-irt-route-reason": reason}
    if p is not None:
        h["x-irt-route-p"] = f"{p:.6f}"
    if failed:
        h["x-irt-fallbacks"] = str(failed)
    if session is not None:
        h["x-irt-session"] = session
    return h


async def _forward(
    gw: Gateway,
    snap: Snapshot,
    plan: Plan,
    body: dict[str, Any],
    stream: bool,
    session: str | None,
    started: float,
) -> Response:
    cfg, m = snap.config, gw.metrics
    assert gw.client is not None
    deadline = started + cfg.server.timeout_s
    queue, more = list(plan.first), plan.more
    tried: list[str] = []
    failures: list[AttemptFailed] = []
    out_of_time = False
    while len(tried) < 1 + cfg.server.max_fallbacks:
        if not queue and more is not None:
            queue, more = await more(), None
        if not queue:
            break
        llm, p = queue.pop(0)
        up = cfg.upstreams[llm]
        if llm in tried or gw.spend.exhausted(up):
            continue
        budget = min(cfg.attempt_timeout_s, deadline - time.perf_counter())
        if budget < MIN_ATTEMPT_S:
            out_of_time = True
            break
        if tried:
            m.fallbacks.labels(tried[-1]).inc()
        tried.append(llm)
        ubody, strip = upstream_body(body, up, stream)
        try:
            if stream:
                res: Any = await open_stream(gw.client, up, ubody, budget, cfg.server.timeout_s)
            else:
                res = await call_json(gw.client, up, ubody, budget, cfg.server.timeout_s)
        except AttemptFailed as f:
            failures.append(f)
            m.upstream_errors.labels(llm, f.kind).inc()
            log.warning("upstream %s failed: %s", llm, f.detail)
            continue
        reason = plan.reason if len(tried) == 1 else "fallback"
        headers = _headers(llm, p, reason, len(tried) - 1, session)
        if isinstance(res, Passthrough):
            return Response(res.body, res.status, headers, media_type="application/json")
        m.decisions.labels(llm, reason).inc()
        if session is not None:
            gw.sessions.put([session_key(session)], llm)
        if stream:
            m.first_byte.labels(llm).observe(res.first_byte_s)
            return _stream_response(gw, snap, llm, res, strip, headers)
        status, payload, elapsed = res
        if status != 200:
            return Response(payload, status, headers, media_type="application/json")
        m.first_byte.labels(llm).observe(elapsed)
        payload["model"] = llm
        _charge(gw, snap, llm, payload.get("usage"))
        ids = message_tool_ids(payload)
        if ids:
            gw.sessions.put([tool_key(i) for i in ids], llm)
        return Response(orjson.dumps(payload), 200, headers, media_type="application/json")
    raise _all_failed(failures, out_of_time or time.perf_counter() >= deadline)


def _charge(gw: Gateway, snap: Snapshot, llm: str, usage: Any) -> None:
    up = snap.config.upstreams[llm]
    cost = up.cost_of(usage)
    if cost > 0:
        gw.spend.add(llm, cost)
        gw.metrics.spend.labels(llm).inc(cost)


def _stream_response(
    gw: Gateway, snap: Snapshot, llm: str, res: Any, strip: bool, headers: dict[str, str]
) -> StreamingResponse:

    def done(usage: dict[str, Any] | None) -> None:
        _charge(gw, snap, llm, usage)

    def tools(ids: list[str]) -> None:
        gw.sessions.put([tool_key(i) for i in ids], llm)

    def broken(kind: str) -> None:
        gw.metrics.upstream_errors.labels(llm, "stream_broken").inc()

    outcome = Outcome(on_done=done, on_tool_ids=tools, strip_usage=strip)
    headers = {**headers, "cache-control": "no-cache"}
    return StreamingResponse(
        relay(res, outcome, broken), media_type="text/event-stream", headers=headers
    )


def _all_failed(failures: list[AttemptFailed], out_of_time: bool) -> ApiError:
    tried = "; ".join(f"{f.llm}: {f.detail}" for f in failures) or "none could be tried"
    if out_of_time:
        return ApiError(
            504, f"no upstream answered within timeout_s ({tried})", kind="upstream_timeout"
        )
    if failures and all(f.kind == "http_429" for f in failures):
        return ApiError(429, f"every candidate LLM is rate-limited ({tried})", kind="rate_limited")
    return ApiError(502, f"every candidate LLM failed ({tried})", kind="upstream_error")
