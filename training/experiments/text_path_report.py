"""The tables and the recommendation of training.experiments.text_path (text → route per
embedder)."""

from __future__ import annotations

from typing import Any

REFERENCE = "all-mpnet-base-v2"


def metric(m: dict[str, Any], *path: str) -> float | None:
    cur: Any = m
    for k in path:
        if not isinstance(cur, dict) or k not in cur:
            return None
        cur = cur[k]
    return float(cur)


def recommend(rows: list[dict[str, Any]]) -> str | None:
    ref = next((r for r in rows if r["embedder"] == REFERENCE), None)
    if ref is None or ref.get("routing_micro") is None:
        return None
    ok = [
        r
        for r in rows
        if r.get("routing_micro") is not None
        and r["routing_micro"] >= ref["routing_micro"] - 0.01
        and r.get("tps_b256")
    ]
    return max(ok, key=lambda r: r["tps_b256"])["embedder"] if ok else None


def markdown(result: dict[str, Any]) -> str:
    rows = result["rows"]
    f = lambda v, fmt: "–" if v is None else format(v, fmt)  # noqa: E731
    lines = [
        "| embedder | dim | texts/s, batch 1 | texts/s, batch 256 "
        "| irt_fast.route(texts), b1 / b256 | test accuracy | AUC "
        "| routing micro | routing macro |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        name = r["embedder"] + (f" (model of {r['model_of']})" if r.get("model_of") else "")
        lines.append(
            f"| {name} | {r.get('dim', '–')} | {f(r.get('tps_b1'), ',.0f')} "
            f"| {f(r.get('tps_b256'), ',.0f')} "
            f"| {f(r.get('api_tps_b1'), ',.0f')} / {f(r.get('api_tps_b256'), ',.0f')} "
            f"| {f(r.get('test_accuracy'), '.4f')} | {f(r.get('test_auc'), '.4f')} "
            f"| {f(r.get('routing_micro'), '.4f')} | {f(r.get('routing_macro'), '.4f')} |"
        )
    bad = [r for r in rows if r.get("text_route", "ok") != "ok" or r.get("error")]
    for r in bad:
        lines.append("")
        lines.append(f"- {r['embedder']}: {r.get('error') or r.get('text_route')}")
    lines.append("")
    lines.append(
        "texts/s: Python strings → embedder → Rust engine `Model.route` → decision, on MMLU-Pro "
        "test questions, embedder object called directly (no cache). `irt_fast.route(texts)`: "
        "the public one-call path, through `irt_fast.embed`'s disk cache, every text a cache "
        "miss (timed for the torch-free embedders only). Accuracies: the IrtNet trained on that embedder's vectors, fixed split, test set."
    )
    b = result.get("bars") or {}
    if b:
        lines.append("")
        lines.append(
            "Bars on the same test split (reference model): single-best LLM routing micro "
            f"{f(b.get('single_best_micro'), '.4f')}, oracle {f(b.get('oracle_micro'), '.4f')}."
        )
        ref = next((r for r in rows if r["embedder"] == REFERENCE), {})
        sb, rm = b.get("single_best_micro"), ref.get("routing_micro")
        if sb is not None and rm is not None and rm - sb < 0.01:
            lines.append("")
            lines.append(
                f"Caution: the reference router is only {100 * (rm - sb):.2f} points above the "
                "single-best LLM, so the 1-point routing criterion below cannot tell embedders "
                "apart; compare test correctness accuracy and AUC too."
            )
    lines.append("")
    lines.append(
        f"Recommended production setting: **{result.get('recommended') or 'none'}** "
        "(fastest at batch 256 whose routing micro accuracy is within 1 point of "
        f"{REFERENCE})."
    )
    lines.append("")
    if result.get("fit_args"):
        lines.append(
            f"IrtNet for every embedder: `python -m training.fit {' '.join(result['fit_args'])}` "
            "(a reduced size, the same for all: see the command)."
        )
        lines.append("")
    lines.append(f"Machine: {result['machine']}. Command: `{result['command']}`.")
    return "\n".join(lines)
