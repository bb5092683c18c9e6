"""String question ids (``arc:660``) end to end on the training side: fit → export →
engine → evaluation report, ids kept as given in split.csv; int ids keep working (the rest of
the suite)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

pytest.importorskip("torch")
pytest.importorskip("matplotlib")

import irt_fast  # noqa: E402
from irt_fast.data import load_dataset, write_dataset  # noqa: E402
from irt_fast.errors import IrtFastError  # noqa: E402
from irt_fast.synthetic import make_synthetic  # noqa: E402

SMALL = ["--epochs", "1", "--d", "2", "--hidden", "8", "--expert-dim", "4", "--n-routed", "2",
         "--quiet", "--device", "cpu"]  # fmt: skip


def _string_id_data(tmp_path: Path) -> Path:
    ds, _ = make_synthetic(n_llms=5, n_queries=150, n_benchmarks=3, embed_dim=16, seed=0)
    d = tmp_path / "data"
    write_dataset(ds, d)
    for f in d.glob("*.parquet"):  # every table's query ids become "<bench>:<n>" strings
        t = pl.read_parquet(f)
        t.with_columns(pl.format("arc:{}", pl.col("query_id")).alias("query_id")).write_parquet(f)
    return d


def _split_ids(path: Path) -> dict[str, list[str]]:
    t = pl.read_csv(path, schema_overrides={"query_id": pl.String})
    return {
        s: t.filter(pl.col("split") == s)["query_id"].to_list() for s in ("train", "val", "test")
    }


def test_fit_engine_and_report_with_string_query_ids(tmp_path):
    from training import evaluate, fit

    data = _string_id_data(tmp_path)
    ds = load_dataset(data)
    ids = set(ds.queries["query_id"].to_list())
    assert all(isinstance(q, str) and q.startswith("arc:") for q in ids)

    out = tmp_path / "run"
    assert fit.main(["--data", str(data), "--out", str(out), *SMALL]) == 0
    parts = _split_ids(out / "split.csv")
    assert sorted(q for p in parts.values() for q in p) == sorted(ids)  # kept as given
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["sizes"]["test"]["queries"] == len(parts["test"]) > 0

    # the engine serves the export; routing the test questions by their string ids' rows
    m = irt_fast.load(out / "model.safetensors")
    row = {q: i for i, q in enumerate(ds.queries["query_id"].to_list())}
    x = np.asarray(ds.embeddings)[[row[q] for q in parts["test"]]]
    assert m.predict_proba(x).shape == (len(parts["test"]), ds.n_llms)

    # the split file written by fit is read back (string ids) and reused by the evaluation
    ev = tmp_path / "eval"
    rc = evaluate.main([
        "--data", str(data), "--out", str(ev), "--split", str(out / "split.csv"), "--quick",
        "--methods", "irtnet", "--epochs", "1", "--n-boot", "20", "--skip-curve", "--skip-ood",
        "--skip-interpret", "--quiet", "--device", "cpu",
    ])  # fmt: skip
    assert rc == 0
    assert _split_ids(ev / "split.csv") == parts
    res = json.loads((ev / "results.json").read_text())
    assert res["setup"]["sizes"]["test"]["queries"] == len(parts["test"])
    assert res["training"]["irtnet"]["engine"]["ok"]
    assert "IrtNet" in (ev / "report.md").read_text()


def test_split_file_string_ids_unknown_to_the_data_are_refused(tmp_path):
    from training import fit

    data = _string_id_data(tmp_path)
    split = tmp_path / "split.csv"
    split.write_text("query_id,split\narc:0,train\nnope:1,test\n")
    with pytest.raises(IrtFastError, match="nope:1"):
        fit.main(["--data", str(data), "--out", str(tmp_path / "run"), "--split", str(split),
                  *SMALL])  # fmt: skip
    assert not (tmp_path / "run").exists()
