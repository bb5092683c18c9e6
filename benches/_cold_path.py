"""What a routed request's steps cost when the process has been idle, against back to back:

    python benches/_cold_path.py MODEL_PATH [--gap-ms 10] [--calls 300]

A gateway at 100 requests/s sees a new request every 10 ms, and in between other processes (the
load generator, the upstream, other tenants of the host) run on the same cores and caches. This
times each step of routing one text (tokenising, embedding, one engine row, parsing a chat
request's JSON) three ways, in one process, alternating: back to back; after sleeping the gap
(the core idles, as between requests); after a busy loop of the gap in this thread (the core
stays awake, so what is left is what other work did to the caches and the predictors). Medians
of wall time per call, in µs; one JSON line and a markdown table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import orjson

TEXT = "Which enzyme breaks down starch in the mouth, and at what pH does it work best?"
BODY = orjson.dumps(
    {"model": "irt-router", "messages": [{"role": "user", "content": TEXT}], "max_tokens": 16}
)


def _spin(s: float) -> None:
    end = time.perf_counter() + s
    while time.perf_counter() < end:
        pass


def timed(steps: dict[str, Callable[[], Any]], gap_s: float, calls: int) -> dict[str, Any]:
    """Median µs per call of each step: right after the same call (back to back), after a
    sleep, after a busy loop."""
    ways: dict[str, Callable[[Callable[[], Any]], Any]] = {
        "back_to_back": lambda fn: fn(),
        "after_sleep": lambda fn: time.sleep(gap_s),
        "after_busy_loop": lambda fn: _spin(gap_s),
    }
    times: dict[str, dict[str, list[float]]] = {s: {w: [] for w in ways} for s in steps}
    for fn in steps.values():
        fn()  # load and warm once
    for _ in range(calls):  # alternate: every way and step in each round
        for way, before in ways.items():
            for name, fn in steps.items():
                before(fn)
                t0 = time.perf_counter()
                fn()
                times[name][way].append(time.perf_counter() - t0)
    return {
        s: {w: round(1e6 * statistics.median(v), 1) for w, v in by.items()}
        for s, by in times.items()
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("model", help="a weights file whose embedder is a local static embedder")
    p.add_argument("--gap-ms", type=float, default=10.0, help="idle time before each call")
    p.add_argument("--calls", type=int, default=300, help="calls per step and way")
    args = p.parse_args(argv)

    import irt_fast
    from irt_fast.serve.snapshot import ModelScorer

    scorer = ModelScorer(irt_fast.load(args.model, threads=1))  # as the gateway embeds and scores
    x = scorer.embed([TEXT])
    enc = scorer._encoder
    steps: dict[str, Callable[[], Any]] = {
        "parse the chat request (orjson)": lambda: orjson.loads(BODY),
        "embed one text as the gateway does": lambda: scorer.embed([TEXT]),
        "engine, one row": lambda: scorer.proba(x),
    }
    if hasattr(enc, "encode_one"):  # the static embedder: its two paths for one text, and parts
        steps["static embedder: encode([text])"] = lambda: enc.encode([TEXT])
        steps["static embedder: encode_one(text)"] = lambda: enc.encode_one(TEXT)
        steps["tokenise one text (tokenizers)"] = lambda: enc._tok.encode(
            TEXT, add_special_tokens=False
        )
    res = timed(steps, args.gap_ms / 1000.0, args.calls)
    print(json.dumps({"gap_ms": args.gap_ms, "calls": args.calls, "us": res}))
    print(
        f"\n| step (median µs, gap {args.gap_ms:g} ms) | back to back | after sleep | after busy loop |"
    )
    print("|:---|---:|---:|---:|")
    for s, r in res.items():
        print(f"| {s} | {r['back_to_back']} | {r['after_sleep']} | {r['after_busy_loop']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
