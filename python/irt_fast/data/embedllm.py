"""The EmbedLLM / IrtNet CSV layout: ``model_id, prompt_id, label, prompt[, category][,
model_name]`` as one CSV or a directory of ``train.csv`` / ``val.csv`` / ``test.csv``; the
directory's embeddings come from ``query_embeddings.*`` or EmbedLLM's
``question_embeddings.pth`` (row i = prompt_id i)."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from ..errors import DataError
from .assemble import RowLocator, assemble
from .dataset import Dataset
from .ids import fmt_id, id_column, line
from .tables import (
    DEFAULT_BENCHMARK,
    find_table,
    label_column,
    model_column,
    read_table,
    text_column,
)

EMBEDLLM_FILES = ("train.csv", "val.csv", "test.csv")


def load_embedllm(
    files: list[Path],
    *,
    source: str,
    directory: Path | None = None,
    embeddings: bool = True,
) -> Dataset:
    frames = []
    first_q = []
    starts = []
    n_before = 0
    for f in files:
        df = read_table(
            f, ["model_id", "prompt_id", "label", "prompt"], optional=["category", "model_name"]
        )
        model = (
            model_column(df, f, "model_name")
            if "model_name" in df.columns
            else model_column(df, f, "model_id")
        )
        qid = id_column(df, "prompt_id", f)
        text = text_column(df, "prompt", f)
        if "category" in df.columns:
            bench = text_column(df, "category", f)
        else:
            bench = pl.Series("benchmark", [DEFAULT_BENCHMARK] * df.height, dtype=pl.String)
        correct = label_column(df, "label", f)
        starts.append(n_before)
        n_before += df.height
        rows = pl.DataFrame(
            {
                "query_id": qid,
                "text": text,
                "benchmark": bench,
                "file": pl.Series([str(f)] * df.height, dtype=pl.Categorical),
            }
        ).with_row_index("row")
        del df, text
        # The layout repeats the prompt on every row: keep one text per prompt and only a
        # 64-bit hash per row (to check that a prompt_id always has the same prompt).
        first_q.append(rows.unique("query_id", keep="first", maintain_order=True))
        frames.append(
            pl.DataFrame({"model": model, "correct": correct}).hstack(
                rows.select(
                    "query_id",
                    "row",
                    "file",
                    pl.col("benchmark").cast(pl.Categorical),
                    text_hash=pl.col("text").hash(seed=0),
                )
            )
        )
        del rows
    if len({fr["query_id"].dtype for fr in frames}) > 1:
        # string ids in one file, integer ids in another: one dataset has one id type
        frames = [fr.with_columns(pl.col("query_id").cast(pl.String)) for fr in frames]
        first_q = [q.with_columns(pl.col("query_id").cast(pl.String)) for q in first_q]
    allr = pl.concat(frames)
    del frames
    queries = (
        pl.concat(first_q)
        .unique("query_id", keep="first", maintain_order=True)
        .select("query_id", "text", "benchmark")
    )
    # One prompt_id must have one prompt text and category throughout all files.
    ref = queries.select(
        "query_id", benchmark_q=pl.col("benchmark"), text_hash_q=pl.col("text").hash(seed=0)
    )
    check = allr.join(ref, on="query_id").filter(
        (pl.col("text_hash") != pl.col("text_hash_q"))
        | (pl.col("benchmark").cast(pl.String) != pl.col("benchmark_q"))
    )
    if check.height:
        r = check.row(0, named=True)
        col = "prompt" if r["text_hash"] != r["text_hash_q"] else "category"
        fpath = Path(r["file"])
        raise DataError(
            f"{fpath}: column '{col}', row {r['row']}{line(fpath, r['row'])}: prompt_id "
            f"{fmt_id(r['query_id'])} has a different {col} than its first occurrence"
        )
    queries = queries.sort("query_id")
    emb_file = find_table(directory, "query_embeddings") if directory and embeddings else None
    if emb_file is None and directory and embeddings:
        pth = directory / "question_embeddings.pth"
        emb_file = pth if pth.is_file() else None
    where = RowLocator(list(files), starts, "prompt_id")
    return assemble(
        allr["model"], allr["query_id"], allr["correct"], queries, where, None, emb_file, source
    )
