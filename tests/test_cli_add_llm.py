"""``irt-fast add-llm``: answers files in Parquet/CSV/JSONL with embeddings,
texts or a --queries dataset directory; bad input exits 2 with a message and writes nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from test_engine_fixtures import config, random_tensors, write

import irt_fast
from irt_fast.cli import main
from irt_fast.cli.add_llm import predicted_accuracy

core = pytest.importorskip("irt_fast._core")
pytestmark = pytest.mark.skipif(
    not hasattr(core.Engine, "with_llms"), reason="the engine has no with_llms yet (rust-core)"
)
pytest.importorskip("irt_fast.onboard.fit")

CFG = config(n_llms=5)
D = CFG["embed_dim"]
K = 40


@pytest.fixture
def qa() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.standard_normal((K, D)).astype(np.float32), (rng.random(K) < 0.5).astype(np.int64)


def run(*args: str | Path) -> int:
    return main([str(a) for a in args])


def test_parquet_with_embeddings(model_path: Path, tmp_path: Path, qa, capsys) -> None:
    x, c = qa
    f = tmp_path / "answers.parquet"
    pl.DataFrame({"query_id": np.arange(K), "correct": c, "embedding": x.tolist()}).write_parquet(f)
    out = tmp_path / "m2.safetensors"
    assert (
        run("add-llm", "--model", model_path, "--answers", f, "--out", out, "--name", "mine") == 0
    )
    text = capsys.readouterr().out
    assert f"fitted from {K} answers" in text and "posterior sd" in text
    m, m2 = irt_fast.load(model_path), irt_fast.load(out)
    assert m2.llm_names == [*m.llm_names, "mine"]
    want = m.add_llm("mine", x, c)
    np.testing.assert_allclose(m2.predict_proba(x), want.predict_proba(x), atol=1e-6)
    # the summary's prediction is the served model's mean P on the answered questions
    acc = float(text.split("predicted mean accuracy on them:")[1].split()[0])
    assert acc == pytest.approx(float(m2.predict_proba(x)[:, -1].mean()), abs=1e-4)
    # again with more answers: merged, n_answers grows
    args = ["add-llm", "--model", out, "--answers", f, "--out", out, "--name", "mine"]
    assert run(*args, "--in-place") == 0
    assert irt_fast.load(out).llm_info[-1]["n_answers"] == 2 * K


def test_csv_string_ids_with_a_queries_directory(model_path: Path, tmp_path: Path, qa) -> None:
    x, c = qa
    ds = tmp_path / "ds"
    ds.mkdir()
    ids = [f"{i:03d}" for i in range(K)]  # "007" matches 7
    pl.DataFrame({"query_id": np.arange(K), "text": [f"q{i}" for i in range(K)]}).write_parquet(
        ds / "queries.parquet"
    )
    pl.DataFrame({"query_id": np.arange(K)[::-1], "embedding": x[::-1].tolist()}).write_parquet(
        ds / "query_embeddings.parquet"
    )
    f = tmp_path / "answers.csv"
    # a responses table of two LLMs, with a repeated answer (majority vote: tie = correct)
    rows = [("mine", i, int(v)) for i, v in zip(ids, c, strict=True)]
    rows += [("mine", ids[0], 1 - int(c[0])), ("theirs", ids[1], 1)]
    pl.DataFrame(rows, schema=["model", "query_id", "correct"], orient="row").write_csv(f)
    out = tmp_path / "m2.safetensors"
    args = ["add-llm", "--model", model_path, "--answers", f, "--out", out, "--queries", ds]
    assert run(*args, "--name", "mine") == 0
    m2 = irt_fast.load(out)
    c_want = c.copy()
    c_want[0] = 1
    want = irt_fast.load(model_path).add_llm("mine", x, c_want)
    np.testing.assert_allclose(m2.predict_proba(x), want.predict_proba(x), atol=1e-6)
    assert run(*args) == 2  # two LLMs in the file and no --name


def test_jsonl_single_model_column_names_the_llm(model_path: Path, tmp_path: Path, qa) -> None:
    x, c = qa
    f = tmp_path / "a.jsonl"
    pl.DataFrame(
        {
            "model": ["x-1"] * K,
            "query_id": [str(i) for i in range(K)],
            "correct": c,
            "embedding": x.tolist(),
        }
    ).write_ndjson(f)
    out = tmp_path / "m2.safetensors"
    assert run("add-llm", "--model", model_path, "--answers", f, "--out", out) == 0
    assert irt_fast.load(out).llm_names[-1] == "x-1"


def _bad(tmp_path: Path, model_path: Path, df: pl.DataFrame, *extra: str, match: str, capsys):
    f = tmp_path / "bad.parquet"
    df.write_parquet(f)
    out = tmp_path / "never.safetensors"
    before = sorted(p.name for p in tmp_path.iterdir())
    code = run("add-llm", "--model", model_path, "--answers", f, "--out", out, *extra)
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and match in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written


def test_bad_inputs_exit_2_and_write_nothing(model_path: Path, tmp_path: Path, qa, capsys) -> None:
    x, c = qa
    emb = x.tolist()
    base = {"query_id": np.arange(K), "correct": c, "embedding": emb}
    name = ("--name", "n")
    _bad(
        tmp_path,
        model_path,
        pl.DataFrame({**base, "correct": c * 2}),
        *name,
        match="0/1",
        capsys=capsys,
    )
    no_corr = {k: v for k, v in base.items() if k != "correct"}
    _bad(tmp_path, model_path, pl.DataFrame(no_corr), *name, match="'correct'", capsys=capsys)
    no_q = {k: v for k, v in base.items() if k != "embedding"}
    _bad(tmp_path, model_path, pl.DataFrame(no_q), *name, match="--queries", capsys=capsys)
    short = {**base, "embedding": [e[:5] for e in emb]}
    _bad(tmp_path, model_path, pl.DataFrame(short), *name, match="shape", capsys=capsys)
    _bad(tmp_path, model_path, pl.DataFrame(base), match="--name", capsys=capsys)
    _bad(
        tmp_path, model_path, pl.DataFrame(base), "--name", "llm-1", match="replace", capsys=capsys
    )
    empty = pl.DataFrame(base).head(0)
    _bad(tmp_path, model_path, empty, *name, match="no answers", capsys=capsys)
    ds = tmp_path / "ds"
    ds.mkdir()
    pl.DataFrame({"query_id": [0, 1], "text": ["a", "b"]}).write_parquet(ds / "queries.parquet")
    _bad(
        tmp_path,
        model_path,
        pl.DataFrame(no_q),
        *name,
        "--queries",
        str(ds),
        match="not found",
        capsys=capsys,
    )
    # a missing model file
    f = tmp_path / "ok.parquet"
    pl.DataFrame(base).write_parquet(f)
    assert (
        run("add-llm", "--model", tmp_path / "nope", "--answers", f, "--out", tmp_path / "o", *name)
        == 2
    )
    assert not (tmp_path / "o").exists()


def test_replace_a_trained_llm(model_path: Path, tmp_path: Path, qa) -> None:
    x, c = qa
    f = tmp_path / "a.parquet"
    pl.DataFrame({"query_id": np.arange(K), "correct": c, "embedding": x.tolist()}).write_parquet(f)
    out = tmp_path / "o.safetensors"
    args = ["add-llm", "--model", model_path, "--answers", f, "--out", out, "--name", "llm-1"]
    assert run(*args, "--replace") == 0
    assert irt_fast.load(out).llm_info[1] == {"name": "llm-1", "origin": "added", "n_answers": K}


def test_module_entry_point(model_path: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    cmd = [sys.executable, "-m", "irt_fast", "add-llm", "--model", str(model_path)]
    r = subprocess.run(
        [*cmd, "--answers", str(tmp_path / "none.csv"), "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert r.returncode == 2 and "answers file not found" in r.stderr
    r = subprocess.run([*cmd], capture_output=True, text=True, env=env, check=False)
    assert r.returncode == 2 and "--answers" in r.stderr  # argparse: missing arguments


def test_predicted_accuracy_sd_matches_sampling() -> None:
    """The delta-method sd against the spread of the mean P under posterior draws."""
    from irt_fast.onboard.fit import fit_llm
    from irt_fast.onboard.prior import Prior

    rng = np.random.default_rng(3)
    d = 4
    a = rng.standard_normal((30, d))
    b = rng.standard_normal(30)
    c = (rng.random(30) < 0.5).astype(float)
    post = fit_llm(a, b, c, Prior(np.zeros(d + 1), np.eye(d + 1)))
    acc, sd = predicted_accuracy(post, a, b, has_bias=True)
    draws = rng.multivariate_normal(np.append(post.theta, post.bias), post.cov, 20000)
    p = 1 / (1 + np.exp(-(draws[:, :d] @ a.T - b + draws[:, d:])))
    assert sd == pytest.approx(p.mean(1).std(), rel=0.1)
    assert acc == pytest.approx(float(p.mean()), abs=0.02)


def test_text_column_embedded_with_the_given_embedder(tmp_path: Path, minilm_dir: Path, capsys):
    from irt_fast.embed import embed_texts

    cfg = config(n_llms=4, embed_dim=384)
    path = write(tmp_path / "m.safetensors", cfg, random_tensors(cfg, 1))
    texts = [f"What is {i} plus {i + 1}?" for i in range(12)]
    c = np.array([1, 0] * 6)
    f = tmp_path / "a.csv"
    pl.DataFrame({"query_id": np.arange(12), "correct": c, "text": texts}).write_csv(f)
    out = tmp_path / "o.safetensors"
    args = ["add-llm", "--model", path, "--answers", f, "--out", out, "--name", "t"]
    # the file's embedder name is not a built embedder: refused, with the way out named
    assert run(*args) == 2 and "embedder" in capsys.readouterr().err and not out.exists()
    assert run(*args, "--embedder", minilm_dir) == 0
    assert "embedding 12 question texts" in capsys.readouterr().err
    x = embed_texts(texts, str(minilm_dir), normalize=True, progress=False)
    want = irt_fast.load(path).add_llm("t", x, c)
    np.testing.assert_allclose(
        irt_fast.load(out).predict_proba(x), want.predict_proba(x), atol=1e-5
    )
