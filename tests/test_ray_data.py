"""``irt_fast.ray_data`` on a local Ray (2 CPUs, one ``ray.init`` for the module): Parquet in and
out through ``map_batches``, routes identical to the in-process engine, accuracies from partial
sums within 1e-6 of ``Model.predict_accuracy``; the model from a path or from the object store.
Skipped when ray is not installed (``pip install 'irt_fast[ray]'``)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from test_engine_fixtures import config, random_tensors, write

import irt_fast
from irt_fast.errors import DataError, InputError

ray = pytest.importorskip("ray", reason="ray is not installed: pip install 'irt_fast[ray]'")
pytest.importorskip("ray.data", reason="ray[data] is not installed: pip install 'irt_fast[ray]'")
ird = pytest.importorskip("irt_fast.ray_data")

# Ray's own start-up and actor machinery may warn (deprecations inside ray): not ours to fix.
pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
]

CFG = config(n_llms=5)
D = CFG["embed_dim"]
N = 4000


@pytest.fixture(scope="module")
def local_ray():
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.WARNING,
        configure_logging=False,
    )
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write(tmp_path_factory.mktemp("m") / "m.safetensors", CFG, random_tensors(CFG, 3))


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pl.DataFrame]:
    rng = np.random.default_rng(4)
    df = pl.DataFrame(
        {
            "query_id": np.arange(N) * 3,
            "embedding": rng.standard_normal((N, D)).astype(np.float32).tolist(),
            "bench": [f"b{i % 5}" for i in rng.permutation(N)],
        }
    )
    d = tmp_path_factory.mktemp("parts")
    df[:1500].write_parquet(d / "a.parquet")
    df[1500:].write_parquet(d / "b.parquet")
    return d, df


def one_actor() -> dict:
    # one actor: the read tasks need the other CPU of the 2 (two 1-CPU actors would starve them)
    return {"compute": ray.data.ActorPoolStrategy(size=1), "batch_format": "pyarrow"}


def test_parquet_in_routes_out_identical_to_the_engine(local_ray, model_path, data, tmp_path):
    d, df = data
    ds = ray.data.read_parquet(str(d))
    out = ds.map_batches(
        ird.Scorer,
        fn_constructor_kwargs={"model": str(model_path), "proba": True},
        batch_size=512,
        **one_actor(),
    )
    out.write_parquet(str(tmp_path / "routed"))
    got = pl.read_parquet(tmp_path / "routed").sort("query_id")
    assert set(got.columns) == {"query_id", "bench", "llm", "proba", "proba_all"}
    m = irt_fast.load(model_path)
    x = np.asarray(df["embedding"].to_list(), dtype=np.float32)
    want = m.route(x)
    assert got["query_id"].to_list() == df["query_id"].to_list()
    assert got["bench"].to_list() == df["bench"].to_list()
    assert got["llm"].to_list() == want.names
    np.testing.assert_array_equal(got["proba"].to_numpy(), want.proba)
    np.testing.assert_array_equal(np.stack(got["proba_all"].to_numpy()), m.predict_proba(x))


def test_accuracy_from_partial_sums_with_the_model_in_the_object_store(local_ray, model_path, data):
    d, df = data
    ds = ray.data.read_parquet(str(d))
    ref = ray.put(model_path.read_bytes())
    got = ird.predict_accuracy(ds, ref, group_col="bench", batch_size=700)
    m = irt_fast.load(model_path)
    x = np.asarray(df["embedding"].to_list(), dtype=np.float32)
    want = m.predict_accuracy(x, groups=df["bench"].to_list())
    assert set(got) == set(want)
    for g in want:
        assert got[g].keys() == want[g].keys()
        for llm in want[g]:
            assert got[g][llm] == pytest.approx(want[g][llm], abs=1e-6)
    overall = ird.predict_accuracy(ds, str(model_path), as_frame=True, batch_size=1000)
    ref_all = m.predict_accuracy(x, as_frame=True)
    assert overall["llm"].to_list() == ref_all["llm"].to_list()
    assert overall["n"].to_list() == [N] * m.n_llms
    np.testing.assert_allclose(overall["accuracy"], ref_all["accuracy"], rtol=0, atol=1e-6)


# ----------------------------------------------------------------------------------------------
# the callable classes without Ray: what every worker runs


def test_scorer_batches_without_ray(model_path, data) -> None:
    import pyarrow as pa

    _, df = data
    m = irt_fast.load(model_path)
    x = np.asarray(df["embedding"].to_list(), dtype=np.float32)[:64]
    scorer = ird.Scorer(model_path.read_bytes(), candidates=m.llm_names[:2], keep_query=True)
    out = scorer(df[:64].to_arrow())
    assert out.column_names == ["query_id", "embedding", "bench", "llm", "proba"]
    assert out.column("llm").to_pylist() == m.route(x, candidates=m.llm_names[:2]).names
    # a dict of numpy columns (batch_format="numpy") is accepted too
    as_numpy = ird.Scorer(str(model_path))({"query_id": np.arange(64), "embedding": x})
    assert as_numpy.column("llm").to_pylist() == m.route(x).names
    with pytest.raises(DataError, match="missing column"):
        scorer(pa.table({"query_id": [1]}))
    with pytest.raises(DataError, match="expects 24"):
        scorer(pa.table({"embedding": [[0.0] * 5]}))
    with pytest.raises(InputError, match="nothing to compute"):
        ird.Scorer(str(model_path), route=False)
    with pytest.raises(InputError, match="cost= too"):
        ird.Scorer(str(model_path), lam=1.0)
    with pytest.raises(InputError, match="model must be"):
        ird.Scorer(42)
    with pytest.raises(FileNotFoundError):
        ird.Scorer("/nonexistent/m.safetensors")
    sums = ird.AccuracySums(str(model_path), group_col="nope")
    with pytest.raises(DataError, match="'nope'"):
        sums(df[:8].to_arrow())
