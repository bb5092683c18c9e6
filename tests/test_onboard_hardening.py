"""Onboarding fails cleanly: typed errors for bad input, no silent wrong answers, short error
messages for garbage files, no leftovers, and a probe that says when it is finished."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from test_engine_fixtures import config

import irt_fast
from irt_fast.errors import DataError, InputError, WeightsFormatError
from irt_fast.onboard import Prior
from irt_fast.onboard.fit import _sigmoid, fit_llm
from irt_fast.onboard.probe import Probe

core = pytest.importorskip("irt_fast._core")
CFG = config(n_llms=5)
D = CFG["embed_dim"]
K = 40


@pytest.fixture
def model(model_path: Path) -> irt_fast.Model:
    return irt_fast.load(model_path)


@pytest.fixture
def qa() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.standard_normal((K, D)).astype(np.float32), (rng.random(K) < 0.5).astype(np.int64)


def params_probe(n_pool: int = 30, **kw) -> tuple[Probe, np.ndarray]:
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal((n_pool, 3)), rng.standard_normal(n_pool)
    y = (rng.random(n_pool) < 0.5).astype(float)
    prior = Prior(np.zeros(4), np.eye(4))
    return Probe.from_params(a, b, a, b, prior, **kw), y


# ------------------------------------------------------------------ untyped errors
def test_lone_surrogate_names_are_input_errors(model: irt_fast.Model, qa) -> None:
    x, c = qa
    with pytest.raises(InputError, match="Unicode"):
        model.add_llm("bad\ud800", x, c)
    post = fit_llm(*model.item_params(x), c, model.prior)
    with pytest.raises(InputError, match="Unicode"):
        model.add_fitted_llm("\udcff", post, *model.item_params(x), c)


def test_add_fitted_llm_without_a_posterior(model: irt_fast.Model, qa) -> None:
    x, c = qa
    a, b = model.item_params(x)
    for bad in (None, "posterior", {"theta": np.zeros(CFG["d"])}):
        with pytest.raises(InputError, match="Posterior"):
            model.add_fitted_llm("new", bad, a, b, c)


@pytest.mark.parametrize("n", [None, float("nan"), float("inf"), 1.5, True, "2", 0, -1])
def test_next_refuses_what_is_not_a_positive_integer(n) -> None:
    pr, _ = params_probe()
    with pytest.raises(InputError, match="positive integer"):
        pr.next(n)


@pytest.mark.parametrize(
    "idx, answers, match",
    [
        (["a"], [1], "integer"),
        ([1], ["x"], "0/1"),
        ([1], ["1"], "0/1"),
        (np.array([[1, 2]]), np.array([[1, 0]]), "1-D"),
        ([[1], [2]], [1, 0], "1-D"),
        ([True], [1], "integer"),
    ],
)
def test_record_refuses_strings_and_2d_arrays(idx, answers, match) -> None:
    pr, _ = params_probe()
    with pytest.raises(InputError, match=match):
        pr.record(idx, answers)
    assert pr.n_answers == 0 and pr.posterior is None


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"trim": float("nan")}, "trim"),
        ({"trim": 1.0}, "trim"),
        ({"trim": "0.1"}, "trim"),
        ({"top_frac": 0}, "top_frac"),
        ({"top_frac": float("inf")}, "top_frac"),
        ({"n_draws": 0}, "n_draws"),
        ({"n_draws": 2.5}, "n_draws"),
        ({"seed": "x"}, "seed"),
        ({"seed": -1}, "seed"),
        ({"seed": 1.0}, "seed"),
        ({"model_error": "a"}, "model_error"),
        ({"model_error": -0.1}, "model_error"),
        ({"model_error": float("nan")}, "model_error"),
        ({"group_model_error": float("inf")}, "group_model_error"),
        ({"level": "0.9"}, "level"),
        ({"strategy": "greedy"}, "strategy"),
        ({"estimator": "median"}, "estimator"),
        ({"strategy": "variance", "estimator": "aipw"}, "inclusion probabilities"),
        ({"n_clusters": 0}, "n_clusters"),
        ({"bogus": 1}, "unknown probe option"),
        ({"trim": 0.1, "tirm": 0.2}, "tirm"),
    ],
)
def test_bad_options_are_input_errors(kw, match) -> None:
    with pytest.raises(InputError, match=match):
        params_probe(**kw)


def test_model_probe_refuses_unknown_keywords(model: irt_fast.Model, qa) -> None:
    x, _ = qa
    with pytest.raises(InputError, match="unknown probe option"):
        model.probe(pool=x, target=x, n_draw=10)


def test_save_turns_safetensors_errors_into_typed_ones(model, tmp_path, monkeypatch) -> None:
    import safetensors.numpy
    from safetensors import SafetensorError

    m2 = model.add_llm("new", *_answers())
    for text, kind in [
        ("Error while serializing: header too large", WeightsFormatError),
        ("Error while serializing: IoError(Os { code: 28, kind: StorageFull })", OSError),
    ]:

        def boom(*a, text=text, **k):
            raise SafetensorError(text)

        monkeypatch.setattr(safetensors.numpy, "save_file", boom)
        with pytest.raises(kind, match="cannot"):
            m2.save(tmp_path / "out.safetensors")
        assert not (tmp_path / "out.safetensors").exists()
        assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


def _answers(k: int = K, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((k, D)).astype(np.float32), (rng.random(k) < 0.5).astype(int)


# ------------------------------------------------------------------ silent wrong answers
def test_probe_groups_keep_their_identity_as_predict_accuracy_does(model, qa) -> None:
    x, _ = qa
    groups = [1] * 20 + ["1"] * 20
    e = model.probe(pool=x, target=x, groups=groups).estimate()
    assert set(e.by_group) == {1, "1"}
    assert set(model.predict_accuracy(x, groups=groups)) == {1, "1"}
    assert e.by_group[1].n_target == e.by_group["1"].n_target == 20


@pytest.mark.parametrize("missing", [float("nan"), None, np.float64("nan")])
def test_missing_group_labels_are_refused(model, qa, missing) -> None:
    x, _ = qa
    groups = [missing] * 5 + ["a"] * (K - 5)
    with pytest.raises(InputError, match="groups"):
        model.probe(pool=x, target=x, groups=groups)
    with pytest.raises(InputError, match="pool_groups"):
        model.probe(pool=x, target=x, groups=["a"] * K, pool_groups=groups)


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_newton_converges_or_refuses_on_scaled_inputs(seed) -> None:
    """Item parameters 10⁴ times too large: a fit that stopped far from the optimum must not
    come back as if it had converged."""
    rng = np.random.default_rng(seed)
    d, k = 16, 200
    prior = Prior.from_population(rng.standard_normal((30, d)), rng.standard_normal(30) * 0.5)
    a = rng.standard_normal((k, d)) * 1e4
    b = rng.standard_normal(k)
    y = (rng.random(k) < 0.5).astype(float)
    try:
        post = fit_llm(a, b, y, prior)
    except InputError as exc:
        assert "converge" in str(exc) or "singular" in str(exc)
        return
    x = np.column_stack([a, np.ones(k)])
    grad = x.T @ (_sigmoid(x @ post.mean - b) - y) + prior.precision @ (post.mean - prior.mean)
    assert np.abs(grad).max() / np.abs(x).max() < 1e-3


def test_a_capped_newton_fit_is_an_error() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((50, 4)), rng.standard_normal(50)
    y = (rng.random(50) < 0.5).astype(float)
    with pytest.raises(InputError, match="did not converge in 1 Newton"):
        fit_llm(a, b, y, Prior(np.zeros(5), np.eye(5)), max_iter=1)


# ------------------------------------------------------------------ the finished probe
def test_a_finished_probe_says_so_and_the_documented_loop_ends() -> None:
    pr, y = params_probe(n_pool=12)
    assert not pr.done
    rounds = 0
    while True:  # the loop of docs/onboarding.md, with a stopping rule that never fires
        idx = pr.next(5)
        pr.record(idx, y[idx])
        e = pr.estimate()
        rounds += 1
        if e.se <= 1e-9 or e.n_answers >= 200 or pr.done:
            break
    assert pr.done and rounds == 3 and pr.n_answers == 12
    assert pr.next(5).size == 0 and pr.next(5).dtype == np.int64
    pr.record([], [])  # what next() gives once done: accepted, nothing changes
    pr.record(np.zeros(0, dtype=np.int64), np.zeros(0))
    assert pr.n_answers == 12
    # the whole target was asked: the estimate is the observed accuracy, exactly
    assert pr.estimate().accuracy == pytest.approx(y.mean()) and pr.estimate().se < 1e-9


# ------------------------------------------------------------------ leftovers
def test_save_keeps_a_symlink_a_symlink(model: irt_fast.Model, tmp_path: Path) -> None:
    real = tmp_path / "models" / "v1.safetensors"
    real.parent.mkdir()
    model.save(real)
    link = tmp_path / "current.safetensors"
    link.symlink_to(real)
    model.add_llm("new", *_answers()).save(link)
    assert link.is_symlink() and link.resolve() == real.resolve()
    assert irt_fast.load(real).llm_names[-1] == "new"


def test_save_under_a_file_is_an_input_error(model: irt_fast.Model, tmp_path: Path) -> None:
    (tmp_path / "plain").write_text("x")
    with pytest.raises(InputError, match="not a directory"):
        model.save(tmp_path / "plain" / "m.safetensors")


_KILLED_SAVE = """
import os, signal, sys
import irt_fast
from irt_fast import _atomic

def killed(path, write, **kw):
    def write_then_die(tmp):
        write(tmp)
        os.kill(os.getpid(), signal.SIGKILL)
    return real(path, write_then_die, **kw)

real = _atomic.atomic_write
import irt_fast.model_io as mio
mio.atomic_write = killed
m = irt_fast.load(sys.argv[1])
m.save(sys.argv[2])
"""


def test_a_killed_save_leaves_a_findable_temp_file_the_next_save_removes(
    model: irt_fast.Model, model_path: Path, tmp_path: Path
) -> None:
    from irt_fast._atomic import stale_temp_files

    out = tmp_path / "out" / "m2.safetensors"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    r = subprocess.run(
        [sys.executable, "-c", _KILLED_SAVE, str(model_path), str(out)], env=env, check=False
    )
    assert r.returncode == -signal.SIGKILL
    left = stale_temp_files(out)
    assert len(left) == 1 and left[0].stat().st_size > 0 and not out.exists()
    model.save(out)
    assert stale_temp_files(out) == [] and sorted(os.listdir(out.parent)) == ["m2.safetensors"]


# ------------------------------------------------------------------ the CLI
def cli(*args: object) -> int:
    from irt_fast.cli import main

    return main([str(a) for a in args])


def _answers_file(tmp_path: Path, qa, **cols) -> Path:
    x, c = qa
    f = tmp_path / "answers.parquet"
    base = {"query_id": np.arange(K), "correct": c, "embedding": x.tolist()}
    pl.DataFrame({**base, **cols}).write_parquet(f)
    return f


def test_cli_lone_surrogate_name_exits_2(model_path, tmp_path, qa, capsys) -> None:
    f = _answers_file(tmp_path, qa)
    out = tmp_path / "o.safetensors"
    assert cli("add-llm", "--model", model_path, "--answers", f, "--out", out, "--name",
               "x\udcff") == 2  # fmt: skip
    assert "Unicode" in capsys.readouterr().err and not out.exists()


def test_cli_model_directory_and_out_under_a_file(model_path, tmp_path, qa, capsys) -> None:
    f = _answers_file(tmp_path, qa)
    assert cli("add-llm", "--model", tmp_path, "--answers", f, "--out", tmp_path / "o",
               "--name", "n") == 2  # fmt: skip
    assert capsys.readouterr().err.startswith("error: ")
    (tmp_path / "plain").write_text("x")
    out = tmp_path / "plain" / "o.safetensors"
    assert cli("add-llm", "--model", model_path, "--answers", f, "--out", out, "--name", "n") == 2
    assert "not a directory" in capsys.readouterr().err


def test_cli_refuses_rows_without_a_model_name(model_path, tmp_path, qa, capsys) -> None:
    f = _answers_file(tmp_path, qa, model=["n"] * (K - 1) + [None])
    out = tmp_path / "o.safetensors"
    assert cli("add-llm", "--model", model_path, "--answers", f, "--out", out, "--name", "n") == 2
    assert "row 39" in capsys.readouterr().err and not out.exists()


def test_cli_out_equal_to_model_needs_in_place(model_path, tmp_path, qa, capsys) -> None:
    f = _answers_file(tmp_path, qa)
    before = model_path.read_bytes()
    link = tmp_path / "link.safetensors"
    link.symlink_to(model_path)
    for out in (model_path, link):
        assert cli("add-llm", "--model", model_path, "--answers", f, "--out", out, "--name",
                   "n") == 2  # fmt: skip
        assert "--in-place" in capsys.readouterr().err
    assert model_path.read_bytes() == before
    assert cli("add-llm", "--model", model_path, "--answers", f, "--out", model_path, "--name",
               "n", "--in-place") == 0  # fmt: skip
    assert irt_fast.load(model_path).llm_names[-1] == "n"


def test_garbage_files_give_short_printable_messages(model_path, tmp_path, capsys) -> None:
    from irt_fast.answers_file import read_answers

    cases = {
        "wide.csv": ("x" * 5_000_000 + ",1\n").encode(),
        "cell.csv": b"query_id,correct\n1," + b"y" * 5_000_000 + b"\n",
        "binary.csv": bytes(range(256)) * 100,
        "binary.jsonl": bytes(range(256)) * 100,
    }
    for name, content in cases.items():
        f = tmp_path / name
        f.write_bytes(content)
        with pytest.raises(DataError) as exc:
            read_answers(f, name="n")
        msg = str(exc.value)
        assert len(msg) < 1000 and msg.isprintable(), (name, msg[:300])
        out = tmp_path / "o.safetensors"
        assert cli("add-llm", "--model", model_path, "--answers", f, "--out", out, "--name",
                   "n") == 2  # fmt: skip
        err = capsys.readouterr().err
        assert len(err) < 1000 and err.rstrip("\n").isprintable()


def test_no_embedding_message_before_an_error(model_path, tmp_path, capsys) -> None:
    f = tmp_path / "t.csv"
    pl.DataFrame({"query_id": [0, 1], "correct": [1, 0], "text": ["a", "b"]}).write_csv(f)
    out = tmp_path / "o.safetensors"
    # a trained LLM's name without --replace, then an embedder the file names but nobody built
    for extra in (["--name", "llm-1"], ["--name", "new"]):
        assert cli("add-llm", "--model", model_path, "--answers", f, "--out", out, *extra) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and "embedding" not in err.split("error:")[0]
