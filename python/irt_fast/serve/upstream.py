"""Forwarding a chat completion to the chosen upstream, with fallback, and streaming it back.

One pooled ``aiohttp.ClientSession`` serves every upstream (aiohttp rather than httpx: 2,000
sequential calls to a local stub cost 0.2-0.4 ms of client CPU each against httpx's 0.8-1.3 ms
on the development machine, and under load a forwarded call's CPU is the latency the gateway
adds). An attempt fails over to the next
candidate on a connection error, a timeout, HTTP 429, 5xx, or 401/403 (the gateway's own
credentials refused), as long as nothing has reached the client yet: a stream is committed
only once the upstream's first event has arrived. After that, an upstream failure ends the
stream with an error event (``data: {"error": ...}``), which the OpenAI clients raise as an
error. Any other 4xx is the client's request and goes back to it (with the upstream key, if
echoed, redacted). Each attempt gets at most ``attempt_timeout_s`` and all attempts together
at most ``timeout_s``, so no client waits longer for a first byte; while streaming, a gap longer
than ``timeout_s`` between chunks ends the stream.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import orjson

from irt_fast.serve.config import Upstream
from irt_fast.serve.sse import Outcome, error_event, rewrite_event, sse_events

log = logging.getLogger("irt_fast.serve")
T = TypeVar("T")

#: Statuses after which the next candidate is tried, besides 429 and 5xx.
RETRYABLE = {401, 403, 408}
#: Bytes of an upstream error body passed back to a client (the rest is cut).
MAX_ERROR_BODY = 64 * 1024
#: The largest non-streamed answer read from an upstream; a larger one is a failed attempt
#: (memory stays bounded whatever an upstream sends).
MAX_ANSWER_BYTES = 64 * 1024 * 1024


class AttemptFailed(Exception):
    """One upstream attempt failed in a way that allows a fallback.

    Args:
        llm: the LLM's name.
        kind: ``connect``, ``timeout``, ``http_429``, ``http_5xx``, ``auth`` or ``bad_response``.
        detail: what happened (no secrets).
    """

    def __init__(self, llm: str, kind: str, detail: str) -> None:
        super().__init__(f"{llm}: {detail}")
        self.llm = llm
        self.kind = kind
        self.detail = detail


@dataclass
class Passthrough:
    """An upstream's answer to return to the client as it is (after the model rewrite)."""

    status: int
    body: bytes


@dataclass
class Streaming:
    """An upstream stream whose first event has arrived: ready to relay."""

    llm: str
    response: aiohttp.ClientResponse
    events: AsyncIterator[list[str]]
    first: list[str]
    first_byte_s: float


def upstream_body(body: dict[str, Any], up: Upstream, stream: bool) -> tuple[dict[str, Any], bool]:
    """The body sent upstream: the client's, with the upstream's model id, without ``irt``,
    asking a stream for its ``usage`` (for spend) when the LLM allows it.

    Returns:
        The body and whether the final usage chunk must be withheld from the client (it was
        not asked for).
    """
    out = dict(body)
    out.pop("irt", None)
    out["model"] = up.model_id
    strip = False
    if stream and up.stream_usage:
        opts = out.get("stream_options")
        opts = dict(opts) if isinstance(opts, dict) else {}
        if not opts.get("include_usage"):
            strip = True
            opts["include_usage"] = True
        out["stream_options"] = opts
    return out, strip


def headers_for(up: Upstream, stream: bool) -> dict[str, str]:
    """The request headers of an upstream call (its key, if it has one)."""
    h = {
        "content-type": "application/json",
        "accept": "text/event-stream" if stream else "application/json",
    }
    if up.api_key is not None:
        h["authorization"] = "Bearer " + up.api_key.reveal()
    return h


def redact(data: bytes, up: Upstream) -> bytes:
    """An upstream's bytes with its key (if any) replaced by ``[redacted]``.

    Args:
        data: bytes that may echo the key (an error body).
        up: the upstream.

    Returns:
        The bytes without the key.
    """
    if up.api_key is not None:
        key = up.api_key.reveal().encode()
        if key and key in data:
            data = data.replace(key, b"[redacted]")
    return data


async def within(coro: Coroutine[Any, Any, T], seconds: float) -> T:
    """``await coro``, cancelled after ``seconds`` (Python 3.11's ``asyncio.timeout`` runs it
    in this task; ``wait_for`` needs a task of its own).

    Args:
        coro: what to await.
        seconds: the limit.

    Returns:
        Its result.

    Raises:
        asyncio.TimeoutError: the limit passed.
    """
    if sys.version_info >= (3, 11):
        async with asyncio.timeout(seconds):
            return await coro
    return await asyncio.wait_for(coro, seconds)  # pragma: no cover - Python 3.10


def _failure(up: Upstream, status: int) -> AttemptFailed | None:
    if status == 429:
        return AttemptFailed(up.name, "http_429", "HTTP 429 (rate limited)")
    if status >= 500:
        return AttemptFailed(up.name, "http_5xx", f"HTTP {status}")
    if status in (401, 403):
        return AttemptFailed(
            up.name, "auth", f"HTTP {status}: the upstream refused the gateway's key"
        )
    if status in RETRYABLE:
        return AttemptFailed(up.name, "http_5xx", f"HTTP {status}")
    return None


#: What a failed upstream call can raise (aiohttp's errors, its timeouts, the socket's).
TRANSPORT_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, OSError)


def _transport(up: Upstream, e: BaseException) -> AttemptFailed:
    if isinstance(e, asyncio.TimeoutError):  # aiohttp's ServerTimeoutError is one too
        return AttemptFailed(up.name, "timeout", "timed out")
    if isinstance(e, aiohttp.ClientConnectorError):
        return AttemptFailed(up.name, "connect", "connection failed")
    return AttemptFailed(up.name, "connect", f"transport error ({type(e).__name__})")


def _timeout(budget_s: float, read_s: float) -> aiohttp.ClientTimeout:
    """At most ``budget_s`` to connect, at most ``read_s`` between two reads of the answer."""
    return aiohttp.ClientTimeout(total=None, sock_connect=budget_s, sock_read=read_s)


def _post(
    client: aiohttp.ClientSession,
    up: Upstream,
    body: dict[str, Any],
    stream: bool,
    timeout: aiohttp.ClientTimeout,
) -> Any:
    return client.post(
        up.url,
        data=orjson.dumps(body),
        headers=headers_for(up, stream),
        timeout=timeout,
        allow_redirects=False,
        proxy=up.proxy,
    )


async def call_json(
    client: aiohttp.ClientSession,
    up: Upstream,
    body: dict[str, Any],
    budget_s: float,
    read_s: float,
) -> tuple[int, Any, float]:
    """One non-streaming attempt.

    Args:
        client: the pooled client.
        up: the upstream.
        body: the upstream body.
        budget_s: the most this attempt may take.
        read_s: the longest wait between two reads of the answer.

    Returns:
        (status, parsed JSON body or raw bytes for a passed-through error, seconds to the
        answer).

    Raises:
        AttemptFailed: a failure that allows a fallback.
    """
    t0 = time.perf_counter()

    async def answer() -> tuple[int, bytes]:
        async with _post(client, up, body, False, _timeout(budget_s, read_s)) as r:
            return r.status, await _answer_bytes(r, up)

    try:
        status, content = await within(answer(), budget_s)
    except TRANSPORT_ERRORS as e:
        raise _transport(up, e) from None
    elapsed = time.perf_counter() - t0
    fail = _failure(up, status)
    if fail is not None:
        raise fail
    if status != 200:
        return status, redact(content[:MAX_ERROR_BODY], up), elapsed
    try:
        payload = orjson.loads(content)
    except orjson.JSONDecodeError:
        raise AttemptFailed(
            up.name, "bad_response", "HTTP 200 with a body that is not JSON"
        ) from None
    if not isinstance(payload, dict):
        raise AttemptFailed(up.name, "bad_response", "HTTP 200 with a body that is not an object")
    return 200, payload, elapsed


async def _answer_bytes(r: aiohttp.ClientResponse, up: Upstream) -> bytes:
    """An answer's bytes, refused past ``MAX_ANSWER_BYTES`` (announced or counted)."""
    too_big = f"an answer over {MAX_ANSWER_BYTES:,} bytes"
    if r.content_length is not None:
        if r.content_length > MAX_ANSWER_BYTES:
            raise AttemptFailed(up.name, "bad_response", too_big)
        return await r.read()
    data = bytearray()
    async for chunk in r.content.iter_any():
        data += chunk
        if len(data) > MAX_ANSWER_BYTES:
            raise AttemptFailed(up.name, "bad_response", too_big)
    return bytes(data)


async def open_stream(
    client: aiohttp.ClientSession,
    up: Upstream,
    body: dict[str, Any],
    budget_s: float,
    read_s: float,
) -> Streaming | Passthrough:
    """Start a streaming attempt and wait for its first event (nothing reaches the client yet).

    Returns:
        Streaming, or Passthrough for a client error the upstream answered (4xx).

    Raises:
        AttemptFailed: a failure that allows a fallback.
    """
    t0 = time.perf_counter()
    holder: list[aiohttp.ClientResponse] = []

    async def first_event() -> Streaming | Passthrough:
        resp = await _post(client, up, body, True, _timeout(budget_s, read_s))
        holder.append(resp)
        fail = _failure(up, resp.status)
        if fail is not None:
            raise fail
        if resp.status != 200:
            data = await resp.content.read(MAX_ERROR_BODY)
            return Passthrough(resp.status, redact(data, up))
        events = sse_events(resp.content.iter_any())
        try:
            first = await events.__anext__()
        except StopAsyncIteration:
            raise AttemptFailed(
                up.name, "bad_response", "the stream ended before its first event"
            ) from None
        return Streaming(up.name, resp, events, first, time.perf_counter() - t0)

    try:
        out = await within(first_event(), budget_s)
    except AttemptFailed:
        await _close(holder)
        raise
    except TRANSPORT_ERRORS as e:
        await _close(holder)
        raise _transport(up, e) from None
    except BaseException:
        await _close(holder)
        raise
    if isinstance(out, Passthrough):
        await _close(holder)
    return out


async def _close(holder: list[aiohttp.ClientResponse]) -> None:
    for resp in holder:
        resp.close()


async def relay(
    s: Streaming, outcome: Outcome, on_broken: Callable[[str], None]
) -> AsyncIterator[bytes]:
    """The client's stream: the first event, then each upstream event as it arrives; an
    upstream failure ends it with an error event. The upstream response is always closed.

    Args:
        s: the started upstream stream.
        outcome: usage and tool-call hooks (``on_done`` runs at the end, however it ends).
        on_broken: called with what happened when the upstream fails midway.

    Returns:
        An async iterator of SSE events (bytes).
    """
    try:
        first = rewrite_event(s.first, s.llm, outcome)
        if first is not None:
            yield first
        try:
            async for lines in s.events:
                data = rewrite_event(lines, s.llm, outcome)
                if data is not None:
                    yield data
        except TRANSPORT_ERRORS as e:
            kind = "timed out" if isinstance(e, asyncio.TimeoutError) else "broke off"
            on_broken(kind)
            log.warning("upstream %s: the stream %s after it started", s.llm, kind)
            yield error_event(
                f"the upstream LLM {s.llm!r} stream {kind} before the answer was complete"
            )
    finally:
        s.response.release()  # back to the pool when read to the end; closed otherwise
        outcome.on_done(outcome.usage)
