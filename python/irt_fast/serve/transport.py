"""One socket write per response: uvicorn's HTTP protocol with its writes coalesced per loop turn.

uvicorn writes a response's status line and headers as soon as the app sends
``http.response.start``, then the body in a second write: two sends on the socket, two
segments, and two wake-ups of the client for one small JSON answer. On this project's shared
virtual machines a loopback send costs 0.1-0.2 ms of CPU (the kernel delivers the segment and
wakes the reader inside the sender's system call), so the second one is a visible part of what
the gateway adds to a chat completion. :class:`CoalescingHttpToolsProtocol` hands uvicorn a
transport that collects the writes made in one turn of the event loop and sends them together
at the end of that turn: a whole JSON response leaves in one write, and a stream's chunks still
leave as soon as each is produced (the turn that produced them ends). Nothing else changes:
reading, flow control and closing are the real transport's, and a close sends what is pending
first. Used by ``irt-fast serve`` when uvicorn's httptools protocol is installed.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

#: Pending bytes past which a write is sent at once instead of at the end of the turn.
FLUSH_BYTES = 256 * 1024


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


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol writing through a :class:`CoalescingTransport`."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]
