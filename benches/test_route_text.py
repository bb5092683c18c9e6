"""Benchmark group ``route_text``: Python strings → embedder → Rust engine route → decision, one
case per embedder and batch size (1 and 256), in one run:

    PYTHONPATH=python:. python -m pytest benches/test_route_text.py --benchmark-only \\
        --benchmark-group-by=group --benchmark-columns=min,median,mean,ops,rounds

texts/s = ops × batch (also stored as ``extra_info["texts_per_s"]``). The IrtNet is the trained
one from ``python -m training.experiments.text_path`` when ``$IRT_FAST_TEXT_PATH`` points at its
--out directory, else a randomly initialised reference-size IrtNet with the embedder's input size
(routing cost does not depend on the weights' values). Questions are MMLU-Pro test questions
when ../shared/data/mmlu_pro is there, else synthetic sentences. An embedder whose model is not
built skips with the command that builds it (``irt-fast models setup``).
With ``--benchmark-disable`` (CI) each case runs once on a handful of texts: a smoke test.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

EMBEDDERS = [
    "all-mpnet-base-v2",
    "all-MiniLM-L6-v2",
    "all-MiniLM-L6-v2-onnx",
    "all-MiniLM-L6-v2-onnx-int8",
    "m2v-mpnet-256",
]
BATCHES = [1, 256]
REPO = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]


@pytest.fixture(scope="module")
def texts() -> list[str]:
    data = Path(os.environ.get("IRT_FAST_SHARED_DATA", REPO.parent / "shared" / "data"))
    q = data / "mmlu_pro" / "queries.parquet"
    if q.is_file():
        import polars as pl

        from irt_fast.splits import fixed_split

        df = pl.read_parquet(q)
        test = set(int(i) for i in fixed_split(df["query_id"].to_numpy(), seed=0)["test"])
        return [
            t
            for i, t in zip(df["query_id"].to_list(), df["text"].to_list(), strict=True)
            if i in test
        ][:1024]
    rng = np.random.default_rng(0)
    words = "the of a which energy court price cell enzyme theorem market law force".split()
    return [" ".join(rng.choice(words, size=int(rng.integers(8, 60)))) + "?" for _ in range(1024)]


_cache: dict[str, object] = {}


def _embedder(name: str):
    from irt_fast import embedders
    from irt_fast.errors import EmbedderError

    if name not in _cache:
        try:
            path = embedders.local_dir(name)
            if embedders.kind_of(path) is None:
                raise EmbedderError(f"{path} is not built")
        except EmbedderError as e:
            pytest.skip(f"embedder {name} not available ({e}); build: irt-fast models setup")
        if embedders.kind_of(path) == "sentence-transformers":
            pytest.importorskip("sentence_transformers")
        if embedders.kind_of(path) == "onnx":
            pytest.importorskip("onnxruntime")
        _cache[name] = embedders.load_local(path)
    return _cache[name]


def _model(name: str, dim: int, tmp_dir: Path):
    import irt_fast

    runs = os.environ.get("IRT_FAST_TEXT_PATH")
    if runs:
        for fit in (name, name.removesuffix("-onnx") if name.endswith("-onnx") else name):
            p = Path(runs) / f"fit_{fit}" / "model.safetensors"
            if p.is_file():
                return irt_fast.load(p)
    key = f"model-{dim}"
    if key not in _cache:
        pytest.importorskip("torch")
        import torch

        from training.export import save_model
        from training.model import IrtNetConfig, build_model

        torch.manual_seed(0)
        m = build_model(IrtNetConfig(embed_dim=dim, n_llms=29)).eval()
        p = tmp_dir / f"random_{dim}.safetensors"
        save_model(
            m,
            p,
            llm_names=[f"llm{i}" for i in range(29)],
            embedder={"name": name, "dim": dim, "normalize": True},
        )
        _cache[key] = irt_fast.load(p)
    return _cache[key]


@pytest.mark.parametrize("batch", BATCHES, ids=lambda b: f"b{b}")
@pytest.mark.parametrize("name", EMBEDDERS)
def test_route_text(benchmark, texts, tmp_path_factory, name, batch):
    emb = _embedder(name)
    model = _model(name, emb.dim, tmp_path_factory.mktemp("route_text"))
    smoke = getattr(benchmark, "disabled", False)
    n = min(batch, 4) if smoke else batch
    batches = [texts[s : s + n] for s in range(0, len(texts) - n + 1, n)]
    state = {"i": 0}

    def route_batch():
        b = batches[state["i"] % len(batches)]
        state["i"] += 1
        return model.route(emb.encode(b, batch_size=n))

    benchmark.group = "route_text"
    benchmark.extra_info.update(embedder=name, batch=n, dim=emb.dim)
    slow = not name.startswith("m2v")
    if smoke:
        r = benchmark(route_batch)
    elif slow and batch > 1:
        r = benchmark.pedantic(route_batch, rounds=3, iterations=1, warmup_rounds=1)
    else:
        r = benchmark.pedantic(
            route_batch, rounds=20 if slow else 200, iterations=1, warmup_rounds=2
        )
    assert len(r.names) == n
    if benchmark.stats:
        benchmark.extra_info["texts_per_s"] = n / benchmark.stats.stats.mean
