"""Which LLM a conversation is pinned to: a bounded LRU map with a time-to-live.

Two kinds of keys share it: a client's ``x-irt-session`` value, and the id of every tool call
an LLM made (``tool:<id>``), so that the request carrying the tool's result goes back to the
LLM that asked for it. Entries expire ``ttl_s`` after their last use; the least recently used
entry is dropped when the map is full. One map per worker process, in memory.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable

#: Longest session id accepted (a header value); longer ones are refused as bad input.
MAX_KEY_CHARS = 256


class SessionStore:
    """LRU + TTL map from a session key to an LLM name.

    Args:
        max_entries: the bound on remembered keys.
        ttl_s: seconds an entry lives after its last use.
        clock: monotonic time source (tests pass a fake one).
    """

    def __init__(
        self, max_entries: int, ttl_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self._clock = clock
        self._map: OrderedDict[str, tuple[str, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._map)

    def get(self, key: str) -> str | None:
        """The LLM pinned to ``key`` (refreshing its time), or None when unknown or expired."""
        hit = self._map.get(key)
        if hit is None:
            return None
        now = self._clock()
        if hit[1] <= now:
            del self._map[key]
            return None
        self._map[key] = (hit[0], now + self.ttl_s)
        self._map.move_to_end(key)
        return hit[0]

    def put(self, keys: Iterable[str], llm: str) -> None:
        """Pin every key of ``keys`` to ``llm``."""
        expires = self._clock() + self.ttl_s
        for key in keys:
            self._map[key] = (llm, expires)
            self._map.move_to_end(key)
        while len(self._map) > self.max_entries:
            self._map.popitem(last=False)

    def configure(self, max_entries: int, ttl_s: float) -> None:
        """Apply new limits (after a reload); entries already stored keep their expiry."""
        self.max_entries, self.ttl_s = max_entries, ttl_s
        while len(self._map) > self.max_entries:
            self._map.popitem(last=False)


def tool_key(call_id: str) -> str:
    """The store key of a tool call's id."""
    return "tool:" + call_id


def session_key(value: str) -> str:
    """The store key of a client's ``x-irt-session`` value."""
    return "session:" + value
