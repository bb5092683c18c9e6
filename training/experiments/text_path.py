"""From text to route, per embedder — speed and what it costs in accuracy.

    python -m training.experiments.text_path --data ../shared/data/mmlu_pro --out runs/text_path \
        [--quick]

For every embedder (ids from ``irt_fast.embedders.registry``; built offline by
``irt-fast models setup``):

1. embeds all questions once (the reference ``all-mpnet-base-v2`` reuses the shared
   ``query_embeddings.parquet``: it *is* that model's output) into a dataset directory
   ``EMB_ROOT/emb_<id>/`` (query_embeddings.parquet + copies of queries/responses);
2. trains an IrtNet on those vectors with ``python -m training.fit`` (fixed split, seed 0; the
   network input follows the embedding dimension; the export records the embedder id);
   an embedder whose vectors equal another's up to float error (ONNX fp32 = MiniLM) reuses
   that model;
3. measures texts/s end to end — Python strings → embedder → Rust engine ``route`` → decision —
   at batch 1 and batch 256, on questions drawn from the test split; embedding caches are never
   involved (the embedder object is called directly, then ``Model.route`` on the array);
4. checks that ``irt_fast.route(list_of_texts, model=m)`` works for the model (offline).

Writes ``OUT/text_path.json`` and ``OUT/text_path.md`` (the table in docs/embedders.md). The
recommended production setting is the fastest embedder (batch-256 texts/s) whose test routing
micro accuracy is within 1 point of the reference's.

``--quick`` trains 3 epochs and times fewer texts (a smoke run, not the numbers in
docs/embedders.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from training.experiments.text_path_report import REFERENCE, markdown, metric, recommend

# (id, trains its own IrtNet on its own vectors, or reuses the model of this id)
EMBEDDERS: list[tuple[str, str | None]] = [
    ("all-mpnet-base-v2", None),
    ("all-MiniLM-L6-v2", None),
    ("all-MiniLM-L6-v2-onnx", "all-MiniLM-L6-v2"),  # same vectors (cosine 1.00000 vs ST)
    ("all-MiniLM-L6-v2-onnx-int8", None),
    ("m2v-mpnet-256", None),
]
EMBED_BATCH = {"static": 1024, "onnx": 64, "sentence-transformers": 64}


def _log(msg: str) -> None:
    print(f"[text_path {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# 1. embedding datasets
# --------------------------------------------------------------------------------------------


def embedding_dataset(data: Path, emb_id: str, root: Path, *, force: bool = False) -> Path:
    """Dataset dir with ``emb_id``'s vectors of every query (built once; atomic)."""
    import polars as pl

    from irt_fast.embedders import kind_of, load_local, local_dir

    if emb_id == REFERENCE:
        return data  # the shared file is this model's output
    out = root / f"emb_{emb_id}"
    if (out / "query_embeddings.parquet").is_file() and not force:
        return out
    emb = load_local(emb_id)
    queries = pl.read_parquet(data / "queries.parquet")
    texts = queries["text"].to_list()
    bs = EMBED_BATCH.get(kind_of(local_dir(emb_id)) or "", 64)
    _log(f"embedding {len(texts)} questions with {emb_id} (batch {bs}) …")
    t0 = time.perf_counter()
    vecs = []
    step = max(bs, 1024)
    for s in range(0, len(texts), step):
        vecs.append(emb.encode(texts[s : s + step], batch_size=bs))
    v = np.concatenate(vecs).astype(np.float32)
    dt = time.perf_counter() - t0
    _log(f"  {emb_id}: {len(texts)} texts in {dt:.1f} s ({len(texts) / dt:.0f} texts/s)")
    tmp = root / f".emb_{emb_id}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    df = pl.DataFrame(
        {
            "query_id": queries["query_id"],  # as given: int or string ids
            "embedding": pl.Series("embedding", v, dtype=pl.Array(pl.Float32, v.shape[1])),
        }
    )
    df.write_parquet(tmp / "query_embeddings.parquet")
    for f in ("queries.parquet", "responses.parquet"):
        shutil.copy(data / f, tmp / f)
    (tmp / "EMBEDDER.json").write_text(
        json.dumps(
            {
                "embedder": emb_id,
                "dim": int(v.shape[1]),
                "normalize": bool(emb.normalize),
                "seconds": dt,
                "source": str(data),
            },
            indent=2,
        )
    )
    shutil.rmtree(out, ignore_errors=True)
    os.rename(tmp, out)
    return out


# --------------------------------------------------------------------------------------------
# 2. training
# --------------------------------------------------------------------------------------------


def train(
    data_dir: Path,
    emb_id: str,
    out: Path,
    *,
    quick: bool,
    seed: int = 0,
    force: bool = False,
    fit_args: list[str] | None = None,
) -> dict[str, Any]:
    """Train an IrtNet with ``python -m training.fit`` on ``data_dir``; returns metrics.json."""
    fit_dir = out / f"fit_{emb_id}"
    metrics = fit_dir / "metrics.json"
    if metrics.is_file() and (fit_dir / "model.safetensors").is_file() and not force:
        return json.loads(metrics.read_text())
    cmd = [
        sys.executable,
        "-m",
        "training.fit",
        "--data",
        str(data_dir),
        "--out",
        str(fit_dir),
        "--embedder",
        emb_id,
        "--seed",
        str(seed),
        "--quiet",
    ]
    if quick:
        cmd += ["--epochs", "3"]
    cmd += list(fit_args or [])
    _log("+ " + " ".join(cmd))
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false")
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env)
    _log(f"  trained {emb_id} in {time.perf_counter() - t0:.0f} s")
    return json.loads(metrics.read_text())


# --------------------------------------------------------------------------------------------
# 3. speed, end to end
# --------------------------------------------------------------------------------------------


def route_texts(emb: Any, model: Any, texts: list[str], batch_size: int) -> Any:
    """The production path under test: strings → vectors → Rust route → decision."""
    return model.route(emb.encode(texts, batch_size=batch_size))


def texts_per_second(
    emb: Any,
    model: Any,
    texts: list[str],
    batch_size: int,
    min_seconds: float = 2.0,
    max_texts: int | None = None,
) -> dict[str, float]:
    """Throughput over consecutive batches of ``texts`` (one warm-up batch first)."""
    n_total = len(texts) if max_texts is None else min(len(texts), max_texts)
    route_texts(emb, model, texts[: min(batch_size, 16)], batch_size)  # warm-up
    done, t0 = 0, time.perf_counter()
    embed_s = 0.0
    while done < n_total:
        batch = texts[done : done + batch_size]
        t1 = time.perf_counter()
        x = emb.encode(batch, batch_size=batch_size)
        embed_s += time.perf_counter() - t1
        model.route(x)
        done += len(batch)
        if time.perf_counter() - t0 > min_seconds * 30:  # hard cap on slow embedders
            break
    dt = time.perf_counter() - t0
    return {"texts": done, "seconds": dt, "texts_per_s": done / dt, "embed_share": embed_s / dt}


def api_texts_per_second(
    model: Any, texts: list[str], warm: list[str], batch_size: int, max_seconds: float = 60.0
) -> float:
    """Throughput of the public one-call path ``irt_fast.route(list_of_texts, model=m)``, which
    embeds through ``irt_fast.embed.embed_texts`` and its disk cache. Every timed text is new to
    the cache (the caller points ``IRT_FAST_CACHE`` at a fresh directory): a cold-cache number."""
    import irt_fast

    irt_fast.route(warm[: min(batch_size, 16)], model=model)  # loads the embedder
    done, t0 = 0, time.perf_counter()
    while done < len(texts) and time.perf_counter() - t0 < max_seconds:
        batch = texts[done : done + batch_size]
        irt_fast.route(batch, model=model)
        done += len(batch)
    return done / (time.perf_counter() - t0)


def engine_only(model: Any, dim: int, batch_size: int, n: int = 2048) -> float:
    """Route-only throughput on random unit vectors (the engine's share of the path)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    model.route(x[:batch_size])
    t0 = time.perf_counter()
    for s in range(0, n, batch_size):
        model.route(x[s : s + batch_size])
    return n / (time.perf_counter() - t0)


def check_text_route(model_path: Path, texts: list[str]) -> str:
    """Does the public one-call path work for this model? Returns "ok" or the error."""
    import irt_fast

    try:
        r = irt_fast.route(texts, model=str(model_path))
        if len(r.names) != len(texts):
            return f"wrong length {len(r.names)}"
        return "ok"
    except Exception as e:  # report, don't fail the experiment
        return f"{type(e).__name__}: {e}"[:300]


def run(args: argparse.Namespace) -> dict[str, Any]:
    import polars as pl

    from irt_fast.embedders import kind_of, load_local, local_dir
    from irt_fast.errors import EmbedderError
    from irt_fast.splits import fixed_split

    data: Path = args.data.resolve()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    emb_root: Path = args.emb_root or out
    emb_root.mkdir(parents=True, exist_ok=True)
    queries = pl.read_parquet(data / "queries.parquet")
    split = fixed_split(queries["query_id"].to_numpy(), seed=0)
    test_ids = set(split["test"].tolist())
    test_texts = [
        t
        for q, t in zip(queries["query_id"].to_list(), queries["text"].to_list(), strict=True)
        if q in test_ids
    ]
    warm_texts = [t for t in queries["text"].to_list()[:2000] if t not in set(test_texts)][:256]
    # the public path's embedding cache: a fresh one, so every timed text is a cache miss
    os.environ["IRT_FAST_CACHE"] = str(out / f"embed_cache.{os.getpid()}.{time.time_ns()}")
    n_b1 = 64 if args.quick else 256
    n_b256 = 512 if args.quick else 1024

    import irt_fast

    fit_args = args.fit_args.split() if args.fit_args else []
    wanted = [e for e in EMBEDDERS if not args.embedders or e[0] in args.embedders]
    rows: list[dict[str, Any]] = []
    bars: dict[str, float] = {}
    for emb_id, model_of in wanted:
        row: dict[str, Any] = {"embedder": emb_id, "model_of": model_of}
        rows.append(row)
        try:
            local_dir(emb_id)
        except EmbedderError as e:
            row["error"] = str(e)
            _log(f"skip {emb_id}: {e}")
            continue
        train_id = model_of or emb_id
        ddir = embedding_dataset(data, train_id, emb_root)
        metrics = train(ddir, train_id, out, quick=args.quick, fit_args=fit_args)
        test = metrics.get("test", {})
        row.update(
            test_accuracy=metric(test, "correctness", "accuracy"),
            test_auc=metric(test, "correctness", "auc"),
            routing_micro=metric(test, "routing", "router", "micro"),
            routing_macro=metric(test, "routing", "router", "macro"),
            best_epoch=metrics.get("best_epoch"),
            train_seconds=metrics.get("train_seconds"),
        )
        if emb_id == REFERENCE:
            bars = {
                "single_best_micro": metric(test, "routing", "single_best", "micro"),
                "oracle_micro": metric(test, "routing", "oracle", "micro"),
            }
        model_path = out / f"fit_{train_id}" / "model.safetensors"
        model = irt_fast.load(model_path)
        emb = load_local(emb_id)
        row["dim"] = emb.dim
        if model.embed_dim != emb.dim:
            row["error"] = f"model embed_dim {model.embed_dim} != embedder dim {emb.dim}"
            continue
        _log(f"timing {emb_id} …")
        s1 = texts_per_second(emb, model, test_texts[:n_b1], 1)
        s256 = texts_per_second(emb, model, test_texts[:n_b256], 256)
        row.update(
            tps_b1=s1["texts_per_s"],
            tps_b256=s256["texts_per_s"],
            embed_share_b1=s1["embed_share"],
            embed_share_b256=s256["embed_share"],
            timed_texts_b1=s1["texts"],
            timed_texts_b256=s256["texts"],
            engine_only_b256=engine_only(model, emb.dim, 256),
        )
        _log(
            f"  {emb_id}: {row['tps_b1']:.0f} texts/s (batch 1), {row['tps_b256']:.0f} (256); "
            f"embedding share {s256['embed_share']:.0%}"
        )
        if kind_of(local_dir(emb_id)) == "sentence-transformers":
            # same encode as above plus the cache's bookkeeping; not worth minutes of CPU here
            row["api_tps_b1"] = row["api_tps_b256"] = None
        else:
            row["api_tps_b1"] = api_texts_per_second(model, test_texts[:n_b1], warm_texts, 1)
            row["api_tps_b256"] = api_texts_per_second(model, test_texts[:n_b256], warm_texts, 256)
        _log(
            f"  {emb_id} via irt_fast.route(texts), cold cache: {row['api_tps_b1']} / {row['api_tps_b256']}"
        )
        row["text_route"] = check_text_route(model_path, test_texts[:4])
        del emb, model
        (out / "text_path.partial.json").write_text(json.dumps(rows, indent=2))

    result = {
        "rows": rows,
        "bars": bars,
        "recommended": recommend(rows),
        "split": "irt_fast.splits.fixed_split(query_ids, seed=0) (80/10/10), test questions",
        "machine": f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
        f"load average {os.getloadavg()[0]:.1f} at the end",
        "command": "python -m training.experiments.text_path " + shlex.join(sys.argv[1:]),
        "quick": bool(args.quick),
        "fit_args": fit_args,
    }
    (out / "text_path.json").write_text(json.dumps(result, indent=2))
    (out / "text_path.md").write_text(markdown(result) + "\n")
    print(markdown(result))
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m training.experiments.text_path", description=__doc__.split("\n")[0]
    )
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--out", type=Path, default=Path("runs/text_path"))
    p.add_argument(
        "--emb-root",
        type=Path,
        default=None,
        help="where the per-embedder dataset dirs go (default: --out)",
    )
    p.add_argument(
        "--embedders",
        nargs="*",
        default=None,
        help=f"subset of: {' '.join(e for e, _ in EMBEDDERS)}",
    )
    p.add_argument("--quick", action="store_true", help="3 epochs, fewer timed texts")
    p.add_argument(
        "--fit-args",
        default="",
        help='extra arguments for python -m training.fit, e.g. "--n-routed 7 --hidden 256" '
        "(the same for every embedder; recorded in the result)",
    )
    args = p.parse_args(argv)
    run(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
