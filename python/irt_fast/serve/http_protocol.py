"""The gateway's HTTP protocol: uvicorn's httptools protocol with one socket write per
response and no connection reset when a worker retires.

**One write per response.** uvicorn writes a response's status line and headers as soon as the
app sends ``http.response.start``, then the body in a second write: two sends on the socket, two
segments, and two wake-ups of the client for one small JSON answer. On this project's shared
virtual machines a loopback send costs 0.1-0.2 ms of CPU (the kernel delivers the segment and
wakes the reader inside the sender's system call), so the second one is a visible part of what
the gateway adds to a chat completion. :class:`CoalescingTransport` collects the writes made in
one turn of the event loop and sends them together at the end of that turn: a whole JSON
response leaves in one write, and a stream's chunks still leave as soon as each is produced
(the turn that produced them ends). Reading, flow control and closing are the real
transport's, and a close sends what is pending first.

**Retiring without resets.** When a worker stops (a reload replaces the workers one by one),
uvicorn closes every connection that has no request in progress at once. A connection the
worker has just accepted, or a keep-alive one whose next request is already in the socket
buffer but not yet read, is then closed with unread bytes, which the kernel answers with a
reset: the client sees ``Connection reset by peer`` for a request it had sent. Such a
connection is instead given :data:`DRAIN_GRACE_S` to show a request: one that arrives is
answered with ``connection: close``; one still idle after it is closed. A request in progress
finishes and closes its connection, as with uvicorn's own protocol.

Used by ``irt-fast serve`` when uvicorn's httptools protocol is installed.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

#: Pending bytes past which a write is sent at once instead of at the end of the turn.
FLUSH_BYTES = 256 * 1024

#: How long a retiring worker waits for a request on a connection that has none in progress.
DRAIN_GRACE_S = 0.5


class CoalescingTransport:
    """A transport whose writes within one loop turn leave as one ``write``.

    Args:
        transport: the connection's real transport (every other call goes to it).
        loop: the loop the connection runs on.
    """

    __slots__ = ("_transport", "_loop", "_pending", "_size")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []
        self._size = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(bytes(data))
        self._size += len(data)
        if self._size >= FLUSH_BYTES:
            self.flush()

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.write(chunk)

    def flush(self) -> None:
        """Send what this turn wrote (nothing if the connection is already closing)."""
        if not self._pending:
            return
        data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        self._pending = []
        self._size = 0
        if not self._transport.is_closing():
            self._transport.write(data)

    def get_write_buffer_size(self) -> int:
        return self._size + self._transport.get_write_buffer_size()

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending = []
        self._size = 0
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class GatewayHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol writing through a :class:`CoalescingTransport` and
    draining idle connections gracefully when the server shuts down."""

    _draining = False
    _in_request = False  # between the first byte of a request and its last

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]

    def on_message_begin(self) -> None:
        self._in_request = True
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        if self._draining and self.cycle is not None:
            self.cycle.keep_alive = False  # answered with connection: close, then closed

    def on_message_complete(self) -> None:
        self._in_request = False
        super().on_message_complete()

    def shutdown(self) -> None:
        """Called by the server to start a graceful shutdown (see the module's docstring)."""
        self._draining = True
        if self.cycle is None or self.cycle.response_complete:
            self.loop.call_later(DRAIN_GRACE_S, self._close_if_idle)
        else:
            self.cycle.keep_alive = False

    def _close_if_idle(self) -> None:
        """Close unless a request came in the grace period (it then closes when answered;
        one still arriving is bounded by the server's graceful-shutdown timeout)."""
        idle = self.cycle is None or self.cycle.response_complete
        if idle and not self._in_request and not self.transport.is_closing():
            self.transport.close()
