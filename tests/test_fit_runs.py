"""``python -m training.fit`` runs: what --embedder records, and a run directory that
always holds one whole run (bad inputs and interrupted runs leave the previous run untouched;
stale temp directories are cleaned)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from irt_fast.data import write_dataset  # noqa: E402
from irt_fast.errors import InputError  # noqa: E402
from irt_fast.synthetic import make_synthetic  # noqa: E402
from training import fit  # noqa: E402
from training.export import read_metadata  # noqa: E402
from training.rundir import clean_stale  # noqa: E402

SMALL = ["--epochs", "1", "--d", "2", "--hidden", "8", "--expert-dim", "4", "--n-routed", "2",
         "--quiet", "--device", "cpu"]  # fmt: skip
FAKE_DIM = 12


def _fake_vectors(texts: list[str]) -> np.ndarray:
    rows = []
    for t in texts:
        h = hashlib.sha256(t.encode()).digest()
        rows.append(np.frombuffer(h[: 4 * FAKE_DIM], dtype=np.uint8)[:FAKE_DIM] / 255.0 - 0.5)
    x = np.asarray(rows, dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture
def fake_embedder(monkeypatch):
    """An embedder "fake" (12-d text hashes) in place of irt_fast.embed's model loading;
    records how many texts each call embedded."""
    import irt_fast.embed as emb

    calls: list[int] = []

    def embed_texts(texts, embedder=None, **kw):
        assert embedder == "fake"
        texts = list(texts)
        calls.append(len(texts))
        return _fake_vectors(texts)

    monkeypatch.setattr(emb, "embed_texts", embed_texts)
    monkeypatch.setattr(
        emb, "embedder_info", lambda name, **kw: {"name": name, "dim": FAKE_DIM, "normalize": True}
    )
    return calls


def _data(tmp_path: Path, *, fake_vectors: bool = False) -> Path:
    ds, _ = make_synthetic(n_llms=5, n_queries=120, n_benchmarks=2, embed_dim=16, seed=0)
    if fake_vectors:
        ds = ds.with_embeddings(_fake_vectors(ds.queries["text"].to_list()))
    d = tmp_path / "data"
    write_dataset(ds, d)
    return d


def test_embedder_flag_re_embeds_shipped_vectors_it_did_not_make(tmp_path, fake_embedder):
    data, out = _data(tmp_path), tmp_path / "run"
    assert fit.main(["--data", str(data), "--out", str(out), "--embedder", "fake", *SMALL]) == 0
    meta = read_metadata(out / "model.safetensors")
    # the file names the embedder that made the vectors, with their dimension (was: 16-d
    # shipped vectors recorded as "fake")
    assert meta["embedder"]["name"] == "fake"
    assert meta["embedder"]["dim"] == FAKE_DIM == meta["config"].embed_dim
    assert sum(fake_embedder) == 32 + 120  # the sample check, then every text


def test_embedder_flag_keeps_shipped_vectors_it_reproduces(tmp_path, fake_embedder):
    data, out = _data(tmp_path, fake_vectors=True), tmp_path / "run"
    assert fit.main(["--data", str(data), "--out", str(out), "--embedder", "fake", *SMALL]) == 0
    meta = read_metadata(out / "model.safetensors")
    assert meta["embedder"]["name"] == "fake" and meta["config"].embed_dim == FAKE_DIM
    assert fake_embedder == [32]  # only the sample: nothing re-embedded


def test_embedder_flag_refused_with_demo(tmp_path):
    with pytest.raises(InputError, match="--demo"):
        fit.main(["--demo", "--out", str(tmp_path / "run"), "--embedder", "x", *SMALL])
    assert not (tmp_path / "run").exists()


def _snapshot(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


def _siblings(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}."))


def _first_run(tmp_path: Path) -> tuple[Path, Path, dict[str, bytes]]:
    data, out = _data(tmp_path), tmp_path / "run"
    assert fit.main(["--data", str(data), "--out", str(out), *SMALL]) == 0
    before = _snapshot(out)
    assert set(before) == set(fit.RUN_FILES)
    return data, out, before


def test_bad_data_leaves_the_previous_run_whole(tmp_path):
    _, out, before = _first_run(tmp_path)
    with pytest.raises(FileNotFoundError):
        fit.main(["--data", str(tmp_path / "missing"), "--out", str(out), *SMALL])
    assert _snapshot(out) == before  # log.jsonl included (it used to be deleted first)
    assert _siblings(out) == []


def test_interrupted_run_leaves_the_previous_run_whole(tmp_path, monkeypatch):
    data, out, before = _first_run(tmp_path)

    def killed(*a, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(fit, "write_split_file", killed)  # after the model is written
    with pytest.raises(KeyboardInterrupt):
        fit.main(["--data", str(data), "--out", str(out), "--seed", "1", *SMALL])
    assert _snapshot(out) == before
    assert _siblings(out) == []  # the interrupted run's temp directory is gone


def test_second_run_replaces_the_first_whole(tmp_path):
    data, out, before = _first_run(tmp_path)
    assert fit.main(["--data", str(data), "--out", str(out), "--seed", "1", *SMALL]) == 0
    after = _snapshot(out)
    assert set(after) == set(before)
    assert after["model.safetensors"] != before["model.safetensors"]
    assert _siblings(out) == []


def test_stale_temps_of_dead_runs_are_cleaned_and_a_lost_swap_restored(tmp_path):
    out = tmp_path / "run"
    dead = 2**22 + 12345  # above Linux's pid_max: no such process
    (tmp_path / f".run.tmp-{dead}-aaaa").mkdir()
    (tmp_path / f".run.tmp-{dead}-aaaa" / "model.safetensors").write_bytes(b"half")
    (tmp_path / f".run.tmp-{os.getpid()}-bbbb").mkdir()  # a live run's: kept
    old = tmp_path / f".run.old-{dead}-cccc"  # killed between the swap's two renames
    old.mkdir()
    (old / "metrics.json").write_text("{}")
    removed = clean_stale(out)
    assert [p.name for p in removed] == [f".run.tmp-{dead}-aaaa"]
    assert (out / "metrics.json").read_text() == "{}"
    assert _siblings(out) == [f".run.tmp-{os.getpid()}-bbbb"]


def test_out_holding_other_files_is_refused_before_any_work(tmp_path, monkeypatch):
    out = tmp_path / "home"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    monkeypatch.setattr(fit, "prepare", lambda args: pytest.fail("work started"))
    with pytest.raises(InputError, match="notes.txt"):
        fit.main(["--demo", "--out", str(out), *SMALL])
    assert (out / "notes.txt").read_text() == "mine"


def test_cli_records_the_recipe_it_chose_from_the_data(tmp_path):
    """training.fit leaves lr, stopping and size to the data unless told, and records every
    choice (value, source, why) in metrics.json and the weights file."""
    import json

    data = _data(tmp_path)  # 120 questions: 96 training questions, 2 optimiser steps per epoch
    out = tmp_path / "run"
    assert fit.main(["--data", str(data), "--out", str(out), "--epochs", "1", "--quiet"]) == 0
    rec = json.loads((out / "metrics.json").read_text())["recipe"]
    ch = rec["choices"]
    # lr = 3e-4 * 150 / steps per epoch, at most 3e-3: 2 steps of 64 questions here
    assert ch["lr"]["source"] == "data" and ch["lr"]["value"] == pytest.approx(3e-3)
    assert ch["epochs"]["source"] == "user" and ch["epochs"]["value"] == 1
    # patience in optimiser steps: 5 MMLU-Pro epochs are 375 epochs of 2 steps, clipped to 30
    assert (ch["patience"]["value"], ch["lr_patience"]["value"]) == (30, 12)
    assert ch["llm_decay"] == {**ch["llm_decay"], "value": False, "source": "data"}
    assert ch["stop_metric"] == {**ch["stop_metric"], "value": "logloss", "source": "data"}
    assert ch["preset"]["value"] == "reduced" and ch["preset"]["source"] == "data"
    meta = read_metadata(out / "model.safetensors")
    assert meta["training"]["recipe"] == rec
    import irt_fast

    assert irt_fast.load(out / "model.safetensors").d == 64  # the reduced item network
    # a flag wins and is recorded as the user's; --old-recipe gives the previous defaults
    out2 = tmp_path / "run2"
    args = ["--data", str(data), "--out", str(out2), "--quiet", "--old-recipe", *SMALL]
    assert fit.main([*args, "--lr", "2e-4"]) == 0
    ch2 = json.loads((out2 / "metrics.json").read_text())["recipe"]["choices"]
    assert ch2["lr"] == {**ch2["lr"], "value": 2e-4, "source": "user"}
    assert ch2["stop_metric"]["value"] == "accuracy" and ch2["preset"]["value"] == "paper"
