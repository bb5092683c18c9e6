"""What one loopback send costs the sender, to a reader that sleeps and to one that is awake.

    python benches/_wake_cost.py [--n 400]

A gateway's every hop is a send on 127.0.0.1 to a process blocked in ``epoll``: the kernel
delivers the segment and wakes the reader inside the sender's system call. On a virtual machine
that wake-up can cost far more than the copy, and how much depends on the host (this project's
machines move between a fast and a slow regime with other tenants' load). The serve report
records this figure before and after its run, so each report says which regime it saw. One
child process echoes a byte for every 300-byte message; the parent times its ``send`` alone,
after sleeping 10 ms (the child is asleep) and back to back. Prints one JSON line of medians and
90th percentiles in µs.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import time


def _pair() -> tuple[socket.socket, socket.socket]:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    a = socket.create_connection(srv.getsockname())
    b, _ = srv.accept()
    srv.close()
    for s in (a, b):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return a, b


def _times(a: socket.socket, n: int, gap_s: float) -> list[float]:
    out = []
    msg = b"x" * 300
    for _ in range(n):
        if gap_s:
            time.sleep(gap_s)
        t0 = time.perf_counter()
        a.send(msg)
        out.append((time.perf_counter() - t0) * 1e6)
        a.recv(16)
    return sorted(out)


def wake_cost(n: int = 400) -> dict[str, float]:
    """Send cost in µs (p50, p90) to a sleeping and to an awake reader over loopback TCP."""
    a, b = _pair()
    pid = os.fork()
    if pid == 0:  # the reader: one byte back for every message
        a.close()
        try:
            while b.recv(4096):
                b.send(b"k")
        finally:
            os._exit(0)
    b.close()
    try:
        asleep = _times(a, n, 0.01)
        awake = _times(a, n, 0.0)
    finally:
        a.close()
        os.waitpid(pid, 0)
    q = lambda xs, f: round(xs[int(f * (len(xs) - 1))], 1)  # noqa: E731
    return {
        "asleep_p50_us": q(asleep, 0.5),
        "asleep_p90_us": q(asleep, 0.9),
        "awake_p50_us": q(awake, 0.5),
        "awake_p90_us": q(awake, 0.9),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=400)
    print(json.dumps(wake_cost(p.parse_args().n)))


if __name__ == "__main__":
    main()
