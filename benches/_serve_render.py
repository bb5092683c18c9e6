"""The markdown of the gateway's speed report (benches/serve_report.py measures, this writes)."""

from __future__ import annotations

from typing import Any

from benches._report import status_line, yardstick_line


def _f(v: float, digits: int = 1) -> str:
    return "–" if v != v else f"{v:,.{digits}f}"


def _wake_line(info: dict[str, Any]) -> str:
    """The host's regime: a loopback send to a sleeping reader, before and after the run."""
    w0, w1 = info.get("wake_before"), info.get("wake_after")
    if not w0 or not w1:
        return "Loopback send to a sleeping reader: not measured."
    return (
        "Loopback send to a sleeping reader (`benches/_wake_cost.py`), p50 / p90 before → after: "
        f"{w0['asleep_p50_us']:.0f} / {w0['asleep_p90_us']:.0f} µs → "
        f"{w1['asleep_p50_us']:.0f} / {w1['asleep_p90_us']:.0f} µs "
        f"(to an awake one: {w0['awake_p50_us']:.0f} → {w1['awake_p50_us']:.0f} µs)."
    )


def render(
    info: dict[str, Any],
    rows: list[dict[str, Any]],
    chat: list[dict[str, Any]],
    prof: dict[str, Any],
) -> str:
    route = [r for r in rows if "rate" not in r]
    paced = [r for r in rows if "rate" in r]
    lines = [
        status_line(info),
        "",
        f"Machine: {info['cpu']}, {info['cpus']} logical CPUs; flags: {', '.join(info['flags'])}; "
        f"Linux {info['kernel']}. Load average "
        f"start {info['load_start']:.2f}, end {info['load_end']:.2f}. Command: `{info['command']}`. "
        f"{info['seconds']:g} s per case after a warm-up; the gateway with engine_threads = 1 per "
        "worker and access logging off; the load generator on the same machine.",
        yardstick_line(info),
        _wake_line(info),
        "",
        "### /v1/route, one text per request (wrk, closed loop)",
        "",
        "| workers | batching | connections | req/s | p50 | p99 | errors | mean batch | gateway CPU (cores) | wrk CPU (cores) |",  # fmt: skip
        "|---:|:---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in route:
        st = r["stages"]
        batch = (
            st.get("batch_sum", 0) / st["batch_count"] if st.get("batch_count") else float("nan")
        )
        lines.append(
            f"| {r['workers']} | {'on' if r['batching'] else 'off'} | {r['conns']} | {_f(r['rps'], 0)} "
            f"| {_f(r['p50_ms'], 2)} ms | {_f(r['p99_ms'], 2)} ms | {r['errors']} | {_f(batch)} "
            f"| {_f(r['srv_cpu_s'] / r['wall'], 2)} | {_f(r['gen_cpu_s'] / r['wall'], 2)} |"
        )
    if paced:
        lines += [
            "",
            "### /v1/route at a fixed offered rate (oha, open loop, 64 connections)",
            "",
            "| workers | batching | offered | answered req/s | p50 | p99 | errors | gateway CPU (cores) | oha CPU (cores) |",  # fmt: skip
            "|---:|:---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in paced:
            if "error" in r:
                lines.append(f"| {r['workers']} | {'on' if r['batching'] else 'off'} | {r['rate']}/s | {r['error']} |")  # fmt: skip
                continue
            lines.append(
                f"| {r['workers']} | {'on' if r['batching'] else 'off'} | {r['rate']:,}/s | {_f(r['rps'], 0)} "
                f"| {_f(r['p50_ms'], 2)} ms | {_f(r['p99_ms'], 2)} ms | {r['errors']} "
                f"| {_f(r['srv_cpu_s'] / info['seconds'], 2)} | {_f(r['gen_cpu_s'] / info['seconds'], 2)} |"
            )
        lines += [
            "",
            "(Latencies timed from when each request was due (oha --latency-correction), so a "
            "gateway that falls behind the offered rate shows it in p99 rather than hiding it.)",
        ]
    lines += ["", "### Where one routed request's time goes", ""]
    lines += breakdown(route)
    lines += [""] + profile_table(prof, route)
    lines += ["", "### /v1/chat/completions: latency added over calling the stub directly (oha, fixed rate)", ""]  # fmt: skip
    if chat and "error" in chat[0]:
        lines.append(f"Not measured: {chat[0]['error']}.")
    else:
        lines += [
            "| workers | rate | stub p50 | stub p99 | gateway p50 | gateway p99 | added p50 | added p99 | by name: added p50 / p99 | errors | gateway CPU (cores) | oha CPU (cores) |",  # fmt: skip
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in chat:
            d, v, n = r["direct"], r["via"], r.get("named", {})
            if "error" in d or "error" in v:
                lines.append(
                    f"| {r['workers']} | {r['rate']} | {d.get('error') or v.get('error')} |"
                )
                continue
            named = (
                f"{_f(n['p50_ms'] - d['p50_ms'], 2)} / {_f(n['p99_ms'] - d['p99_ms'], 2)} ms"
                if "p50_ms" in n
                else n.get("error", "-")
            )
            lines.append(
                f"| {r['workers']} | {r['rate']}/s | {_f(d['p50_ms'], 2)} ms | {_f(d['p99_ms'], 2)} ms "
                f"| {_f(v['p50_ms'], 2)} ms | {_f(v['p99_ms'], 2)} ms | {_f(v['p50_ms'] - d['p50_ms'], 2)} ms "
                f"| {_f(v['p99_ms'] - d['p99_ms'], 2)} ms | {named} | {d['errors'] + v['errors'] + n.get('errors', 0)} "
                f"| {_f(v['srv_cpu_s'] / info['seconds'], 2)} | {_f(v['gen_cpu_s'] / info['seconds'], 2)} |"
            )
        lines.append("")
        lines.append(
            "(added = the gateway's percentile minus the stub's, each measured at the same rate; "
            "by name = the same call naming an LLM instead of irt-router: forwarded without routing.)"
        )
    return "\n".join(lines) + "\n"


PROFILE_ROWS = [
    ("read_request", "read the request: JSON, schema, text checks"),
    ("embed_1", "embed one text (m2v-mpnet-256)"),
    ("embed_per_text_at_32", "embed, per text in a batch of 32"),
    ("engine_1", "engine, one row (top-2 of 39 experts, 29 LLMs)"),
    ("engine_per_row_at_32", "engine, per row in a batch of 32"),
    ("decide_and_answer", "decide and write the JSON answer"),
    ("app_1_at_a_time", "the whole app in process, one request at a time"),
    ("app_32_at_a_time", "the whole app in process, 32 requests at a time (one batch)"),
    ("chat_direct", "a chat completion forwarded by name (no routing), upstream not counted"),
    ("chat_routed", "a chat completion through irt-router (routing + forwarding)"),
    ("gc_full", "a full cycle collection of the serving heap (the event loop waits it out)"),
    ("gc_full_frozen", "the same, with the heap frozen as the command's workers keep it"),
]


def profile_table(prof: dict[str, Any], route: list[dict[str, Any]]) -> list[str]:
    """The in-process CPU profile, and what the HTTP server adds to it under load."""
    if "error" in prof:
        return [f"In-process profile not measured: {prof['error']}."]
    out = ["| stage (CPU time, in one process, no network) | per request |", "|:---|---:|"]
    out += [f"| {label} | {prof[k] * 1e6:.0f} µs |" for k, label in PROFILE_ROWS if k in prof]
    under = [r for r in route if r["workers"] == 1 and r["batching"] and r["conns"] == 64]
    if under and under[0]["requests"] and "app_32_at_a_time" in prof:
        total = under[0]["srv_cpu_s"] / under[0]["requests"] * 1e6
        http = total - prof["app_32_at_a_time"] * 1e6
        out.append(
            f"| the HTTP server (uvicorn, httptools, uvloop): CPU per request under wrk at 64 "
            f"connections ({total:.0f} µs) minus the app at 32 at a time | {http:.0f} µs |"
        )
    return out


def breakdown(route: list[dict[str, Any]]) -> list[str]:
    """Per-request figures of each route case, from the gateway's CPU time and its metrics."""
    out = [
        "| workers | batching | connections | gateway CPU per request | embed per text (wall) | engine per text (wall) | mean queue wait |",  # fmt: skip
        "|---:|:---|---:|---:|---:|---:|---:|",
    ]
    for r in route:
        st, n = r["stages"], r["requests"]
        rows = st.get("batch_sum", 0.0)
        if not n or not rows:
            continue
        cpu = r["srv_cpu_s"] / n * 1e6
        emb = st.get("embed_sum", 0.0) / rows * 1e6
        eng = st.get("engine_sum", 0.0) / rows * 1e6
        wait = st.get("queue_sum", 0.0) / max(st.get("queue_count", 0.0), 1) * 1e3
        out.append(
            f"| {r['workers']} | {'on' if r['batching'] else 'off'} | {r['conns']} | {cpu:.0f} µs "
            f"| {emb:.0f} µs | {eng:.0f} µs | {wait:.2f} ms |"
        )
    out.append("")
    out.append(
        "(CPU per request: the gateway's CPU seconds (all its processes and threads) over the "
        "requests answered. Embed and engine: wall time of those stages per text, from "
        "irt_serve_stage_duration_seconds; on a busy machine they include waiting for a core. "
        "The CPU split of one request is the next table.)"
    )
    return out
