"""The Spark recipe of docs/scale.md (``mapInArrow`` with :class:`irt_fast.scoring.arrow.Scorer`)
on a local Spark: routes identical to the in-process engine, Parquet in and out. Slow (a Spark
session takes ~30 s to start) and skipped without pyspark and Java: pyspark (~400 MB and a JVM)
is in no extra, so CI does not install it."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from test_engine_fixtures import config, random_tensors, write

import irt_fast

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::FutureWarning"),  # pyspark on pandas >= 3
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
]
pytest.importorskip("pyspark", reason="pyspark is not installed (pip install pyspark; needs Java)")
if shutil.which("java") is None:
    pytest.skip("Spark needs Java (no java on PATH)", allow_module_level=True)


def test_map_in_arrow_recipe(tmp_path: Path) -> None:
    import pyarrow as pa
    from pyspark.sql import SparkSession

    from irt_fast.scoring.arrow import Scorer

    cfg = config(n_llms=4)
    model = str(write(tmp_path / "m.safetensors", cfg, random_tensors(cfg, 5)))
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2000, cfg["embed_dim"])).astype(np.float32)
    pl.DataFrame({"query_id": np.arange(2000), "embedding": x.tolist()}).write_parquet(
        tmp_path / "q.parquet"
    )

    def score_partition(batches):  # the recipe, as in docs/scale.md
        scorer = Scorer(model, threads=1)  # the model, once per partition
        for rb in batches:
            yield from scorer(pa.Table.from_batches([rb])).to_batches()

    spark = (
        SparkSession.builder.master("local[2]")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .getOrCreate()
    )
    try:
        spark.sparkContext.setLogLevel("ERROR")
        df = spark.read.parquet(str(tmp_path / "q.parquet"))
        out = df.mapInArrow(score_partition, "query_id long, llm string, proba float")
        out.write.mode("overwrite").parquet(str(tmp_path / "routed"))
    finally:
        spark.stop()
    got = pl.read_parquet(tmp_path / "routed" / "*.parquet").sort("query_id")
    want = irt_fast.load(model).route(x)
    assert got["query_id"].to_list() == list(range(2000))
    assert got["llm"].to_list() == want.names
    np.testing.assert_array_equal(got["proba"].to_numpy(), want.proba)
