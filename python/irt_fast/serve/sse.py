"""Server-sent events between an upstream and the client: reading the upstream's events, and
writing each one as the client gets it (``model`` naming the chosen LLM, the usage chunk held
back when the client did not ask for it, an error event when the upstream breaks off).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson


@dataclass
class Outcome:
    """What the relay learns from a stream, and the hooks it calls.

    ``on_done`` gets the last ``usage`` seen (streams may repeat a running total) when the
    stream ends, however it ends; ``on_tool_ids`` gets tool-call ids as they appear.
    """

    on_done: Callable[[dict[str, Any] | None], None]
    on_tool_ids: Callable[[list[str]], None]
    strip_usage: bool = False
    usage: dict[str, Any] | None = field(default=None, init=False)


#: The largest event (or line) an upstream may send; an event carrying a large tool call is one
#: line. Past it the stream is treated as broken, so a faulty upstream cannot fill the
#: gateway's memory.
MAX_EVENT_BYTES = 16 * 1024 * 1024


async def byte_lines(
    chunks: AsyncIterator[bytes], max_line: int = MAX_EVENT_BYTES
) -> AsyncIterator[bytes]:
    """Lines of a byte stream, without their ending (``\\n``, ``\\r\\n`` or ``\\r``). Chunks
    without a line end are only collected, so a long line costs time linear in its length
    however finely it arrives.

    Raises:
        aiohttp.ClientPayloadError: a line grew past ``max_line`` bytes.
    """
    pending: list[bytes] = []  # the unfinished line's pieces
    size = 0  # their bytes
    async for chunk in chunks:
        held_cr = bool(pending) and pending[-1].endswith(b"\r")  # a line ended, not yet emitted
        if b"\n" in chunk or b"\r" in chunk or held_cr:
            buf = b"".join([*pending, chunk])
            cr = buf.endswith(b"\r")  # may be the first half of a \r\n split across chunks
            *done, rest = (
                (buf[:-1] if cr else buf).replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
            )
            pending, size = [rest + b"\r" if cr else rest], len(rest) + cr
            for line in done:
                yield line
        else:
            pending.append(chunk)
            size += len(chunk)
        if size > max_line:
            raise aiohttp.ClientPayloadError(f"a line longer than {max_line:,} bytes")
    buf = b"".join(pending)
    if buf:  # the last line, ended by the stream (or by a \r held back above)
        yield buf.removesuffix(b"\r")


async def text_lines(
    chunks: AsyncIterator[bytes], max_line: int = MAX_EVENT_BYTES
) -> AsyncIterator[str]:
    """:func:`byte_lines` decoded as UTF-8 (invalid bytes replaced)."""
    async for line in byte_lines(chunks, max_line):
        yield line.decode("utf-8", "replace")


async def sse_events(
    chunks: AsyncIterator[bytes], max_event: int = MAX_EVENT_BYTES
) -> AsyncIterator[list[str]]:
    """Server-sent events as lists of lines (a blank line ends an event).

    Args:
        chunks: the body of a streaming upstream response, as it arrives.
        max_event: the most bytes an event's lines may carry (line ends not counted).

    Returns:
        An async iterator of events, their lines decoded as UTF-8 (invalid bytes replaced).

    Raises:
        aiohttp.ClientPayloadError: an event grew past ``max_event`` bytes.
    """
    lines: list[str] = []
    size = 0
    async for line in byte_lines(chunks, max_event):
        if line:
            size += len(line)
            if size > max_event:
                raise aiohttp.ClientPayloadError(f"an event longer than {max_event:,} bytes")
            lines.append(line.decode("utf-8", "replace"))
        elif lines:
            yield lines
            lines, size = [], 0
    if lines:
        yield lines


def rewrite_event(lines: list[str], llm: str, outcome: Outcome) -> bytes | None:
    """One SSE event as the client gets it; records usage and tool-call ids on the way.

    Args:
        lines: the event's lines.
        llm: the chosen LLM's name (every chunk's ``model`` becomes it).
        outcome: where usage and tool-call ids go; whether to withhold the usage chunk.

    Returns:
        The event's bytes, or None to withhold it (the usage chunk the client did not ask for).
    """
    out: list[str] = []
    for line in lines:
        if not line.startswith("data:"):
            out.append(line)
            continue
        data = line[5:].lstrip(" ")
        if data.startswith("[DONE]"):
            out.append(line)
            continue
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            out.append(line)
            continue
        if isinstance(obj, dict):
            if "model" in obj:
                obj["model"] = llm
            usage = obj.get("usage")
            if isinstance(usage, dict):
                outcome.usage = usage
            choices = obj.get("choices")
            ids = _delta_tool_ids(choices)
            if ids:
                outcome.on_tool_ids(ids)
            if outcome.strip_usage and isinstance(usage, dict) and not choices:
                return None
            if outcome.strip_usage and isinstance(usage, dict):
                obj.pop("usage", None)
        out.append("data: " + orjson.dumps(obj).decode())
    return ("\n".join(out) + "\n\n").encode()


def _delta_tool_ids(choices: Any) -> list[str]:
    ids: list[str] = []
    if isinstance(choices, list):
        for ch in choices:
            calls = ch.get("delta", {}).get("tool_calls") if isinstance(ch, dict) else None
            if isinstance(calls, list):
                ids += [
                    c["id"] for c in calls if isinstance(c, dict) and isinstance(c.get("id"), str)
                ]
    return ids


def message_tool_ids(payload: dict[str, Any]) -> list[str]:
    """Tool-call ids in a (non-streamed) chat completion.

    Args:
        payload: the completion.

    Returns:
        The ids of every tool call of every choice.
    """
    ids: list[str] = []
    choices = payload.get("choices")
    if isinstance(choices, list):
        for ch in choices:
            msg = ch.get("message") if isinstance(ch, dict) else None
            calls = msg.get("tool_calls") if isinstance(msg, dict) else None
            if isinstance(calls, list):
                ids += [
                    c["id"] for c in calls if isinstance(c, dict) and isinstance(c.get("id"), str)
                ]
    return ids


def error_event(message: str, code: int = 502) -> bytes:
    """The SSE event that ends a stream the upstream broke.

    Args:
        message: what happened.
        code: the status the error carries.

    Returns:
        The event's bytes.
    """
    body = {"error": {"message": message, "type": "upstream_error", "param": None, "code": code}}
    return b"data: " + orjson.dumps(body) + b"\n\n"
