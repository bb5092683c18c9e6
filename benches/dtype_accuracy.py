"""Accuracy cost of the reduced engine configurations, on a trained model and held-out queries.

    python -m benches.dtype_accuracy --model runs/mmlu/model.safetensors \\
        [--data ../shared/data/mmlu_pro] [--split runs/mmlu/split.csv]

For each engine dtype (f32, bf16) over the split's test queries (all queries without a split):
max |ΔP| against f32, the fraction of routing decisions identical to f32, pair accuracy
(P > 0.5 against the observed answer), AUC, and routing accuracy (the chosen LLM answered
correctly). Accuracy numbers do not depend on machine load, so they may be quoted from any run.
bf16 runs the kernel this CPU has (the "kernel" column); ``IRT_FAST_BF16_KERNEL=widen`` measures
the widening kernel on a CPU with AVX512_BF16.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def auc(score: np.ndarray, label: np.ndarray) -> float:
    """Mann-Whitney AUC with average ranks for ties."""
    order = np.argsort(score, kind="mergesort")
    s = score[order]
    ranks = np.empty(len(s))
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and s[j + 1] == s[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    pos = label.astype(bool)
    n1, n0 = pos.sum(), (~pos).sum()
    return float((ranks[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def load_data(data: Path, split: Path | None, names: list[str]):
    import polars as pl

    emb = pl.read_parquet(data / "query_embeddings.parquet")
    qids = emb["query_id"].to_numpy()
    if split is not None:
        sp = pl.read_csv(split)
        test = set(sp.filter(pl.col("split") == "test")["query_id"].to_list())
        keep = np.array([q in test for q in qids])
    else:
        keep = np.ones(len(qids), bool)
    x = np.stack(emb["embedding"].to_numpy()[keep]).astype(np.float32)
    qids = qids[keep]
    row = {q: i for i, q in enumerate(qids)}
    col = {n: j for j, n in enumerate(names)}
    y = np.full((len(qids), len(names)), -1, np.int8)
    resp = pl.read_parquet(data / "responses.parquet")
    for m, q, c in resp.iter_rows():
        if q in row and m in col:
            y[row[q], col[m]] = c
    return x, y


def main(argv: list[str] | None = None) -> int:
    import irt_fast

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "mmlu_pro")
    ap.add_argument("--split", type=Path, default=None)
    a = ap.parse_args(argv)
    split = a.split or (a.model.parent / "split.csv")
    models = {dt: irt_fast.load(a.model, dtype=dt) for dt in ("f32", "bf16")}
    x, y = load_data(a.data, split if split.is_file() else None, models["f32"].llm_names)
    p = {dt: m.predict_proba(x) for dt, m in models.items()}
    obs = y >= 0
    print(
        f"model {a.model} ({models['f32'].method}, top_k {models['f32'].config.get('top_k')}),"
        f" {len(x)} queries, {int(obs.sum())} observed pairs"
    )
    print(
        "| dtype | kernel | max abs dP vs f32 | identical routing | pair accuracy | AUC "
        "| routing accuracy |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    choice32 = p["f32"].argmax(1)
    for dt, pr in p.items():
        choice = pr.argmax(1)
        routed = y[np.arange(len(y)), choice]
        acc = float(((pr[obs] > 0.5) == (y[obs] == 1)).mean())
        print(
            f"| {dt} | {models[dt].kernel} | {np.abs(pr - p['f32']).max():.2e} | "
            f"{(choice == choice32).mean():.4f} | "
            f"{acc:.4f} | {auc(pr[obs], y[obs]):.4f} | {(routed[routed >= 0] == 1).mean():.4f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
