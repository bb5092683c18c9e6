"""Odd API inputs: every bad argument is an InputError / WeightsFormatError naming it,
never a bare TypeError/ValueError/OverflowError, and ambiguous inputs are refused instead of
being read one way silently."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_engine_fixtures import config, random_tensors, write

import irt_fast
from irt_fast.errors import InputError, WeightsFormatError

CFG = config()
D = CFG["embed_dim"]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> irt_fast.Model:
    path = tmp_path_factory.mktemp("inputs") / "m.safetensors"
    return irt_fast.load(write(path, CFG, random_tensors(CFG, 0)))


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((40, D)).astype(np.float32)


def _raises_named(exc: type[Exception], name: str):
    return pytest.raises(exc, match=name)


@pytest.mark.parametrize("bad", [1.5, "3", True, 0, -2, None, 2.0])
def test_chunk_size(model: irt_fast.Model, x: np.ndarray, bad: object) -> None:
    with _raises_named(InputError, "chunk_size"):
        model.predict_accuracy(x, chunk_size=bad)


def test_chunk_size_numpy_int_is_fine(model: irt_fast.Model, x: np.ndarray) -> None:
    a = model.predict_accuracy(x, chunk_size=np.int64(7))
    np.testing.assert_allclose(list(a.values()), model.predict_proba(x).mean(0), atol=1e-6)


@pytest.mark.parametrize("arg", ["lam", "margin"])
@pytest.mark.parametrize("bad", ["abc", True, float("nan"), float("inf"), [0.1]])
def test_lam_and_margin(model: irt_fast.Model, x: np.ndarray, arg: str, bad: object) -> None:
    with _raises_named(InputError, arg):
        model.route(x, cost=[1.0, 2.0, 3.0, 4.0], **{arg: bad})


@pytest.mark.parametrize(
    ("cost", "name"),
    [
        (["a", 1.0, 2.0, 3.0], r"cost\[0\]"),
        ([1.0, None, 2.0, 3.0], r"cost\[1\]"),
        ([1.0, 2.0, True, 3.0], r"cost\[2\]"),
        ({"llm-0": "x", "llm-1": 1, "llm-2": 1, "llm-3": 1}, r"cost\['llm-0'\]"),
        ("abcd", "cost"),
        (5.0, "cost"),
    ],
)
def test_cost_values(model: irt_fast.Model, x: np.ndarray, cost: object, name: str) -> None:
    with _raises_named(InputError, name):
        model.route(x, cost=cost, lam=0.1)


@pytest.mark.parametrize("bad", [123, "llm-0", [1, 2], None.__class__])
def test_candidates(model: irt_fast.Model, x: np.ndarray, bad: object) -> None:
    with _raises_named(InputError, "candidates"):
        model.route(x, candidates=bad)


@pytest.mark.parametrize("bad", [10**30, 2**64, True, 1.5, "2", 0, -1])
def test_threads(model: irt_fast.Model, bad: object) -> None:
    with _raises_named(InputError, "threads"):
        irt_fast.load(model.path, threads=bad)


@pytest.mark.parametrize("bad", [None, 3, 1.5, b"m.safetensors"])
def test_load_path(bad: object) -> None:
    with _raises_named(InputError, "path"):
        irt_fast.load(bad)


def test_none_queries(model: irt_fast.Model) -> None:
    for call in (model.predict_proba, model.route, model.item_params, model.predict_accuracy):
        with _raises_named(InputError, "x is None"):
            call(None)


def test_embedder_argument_type(model: irt_fast.Model) -> None:
    with _raises_named(InputError, "embedder"):
        model.route(["a question"], embedder=123)


# ------------------------------------------------------------------ ambiguous (X, labels)


def test_pair_without_groups_true_is_refused(model: irt_fast.Model, x: np.ndarray) -> None:
    labels = ["a", "b"] * 20
    # used to embed the 40 labels as query texts and count 80 queries
    with _raises_named(InputError, "pair"):
        model.predict_accuracy((x, labels))
    with _raises_named(InputError, "pair"):
        model.predict_accuracy([x, np.array(labels)])
    with _raises_named(InputError, "pair"):
        model.predict_accuracy((x, np.arange(40)))  # numeric labels too
    texts = [f"question {i}" for i in range(40)]
    with _raises_named(InputError, "pair"):
        model.predict_accuracy((texts, labels))


def test_stream_of_pairs_without_groups_true_is_refused(
    model: irt_fast.Model, x: np.ndarray
) -> None:
    labels = np.array(["a", "b"] * 20)
    stream = ((x[i : i + 10], labels[i : i + 10]) for i in range(0, 40, 10))
    with _raises_named(InputError, "pair"):
        model.predict_accuracy(stream)
    # with groups=True the same stream is read as pairs
    stream = ((x[i : i + 10], labels[i : i + 10]) for i in range(0, 40, 10))
    got = model.predict_accuracy(stream, groups=True)
    want = model.predict_accuracy(x, groups=labels)
    for g in want:
        np.testing.assert_allclose(list(got[g].values()), list(want[g].values()), atol=1e-9)


def test_mixed_stream_is_refused(model: irt_fast.Model, x: np.ndarray) -> None:
    # an array chunk then a text chunk (e.g. labels flattened into the stream)
    with _raises_named(InputError, "kind"):
        model.predict_accuracy(iter([x[:5], ["some text"] * 5]))
    with _raises_named(InputError, "kind"):
        model.predict_accuracy(iter([x[:5], np.arange(D)]))


def test_groups_true_with_one_array_is_refused(model: irt_fast.Model, x: np.ndarray) -> None:
    with _raises_named(InputError, "groups=True"):
        model.predict_accuracy(x, groups=True)


# ------------------------------------------------------------------ NaN groups, masked arrays


@pytest.mark.parametrize("missing", [float("nan"), np.float32("nan"), None])
def test_missing_group_labels_are_refused(
    model: irt_fast.Model, x: np.ndarray, missing: object
) -> None:
    groups = ["a"] * 40
    groups[3] = missing  # type: ignore[call-overload]
    groups[7] = missing  # type: ignore[call-overload]
    # NaN != NaN: each NaN used to become a group of its own
    with _raises_named(InputError, r"groups\[3\]"):
        model.predict_accuracy(x, groups=groups)
    with _raises_named(InputError, r"groups\[3\]"):
        model.predict_accuracy(x, groups=np.array(groups, dtype=object))


def test_float_groups_with_nan_array(model: irt_fast.Model, x: np.ndarray) -> None:
    g = np.ones(40)
    g[5] = np.nan
    with _raises_named(InputError, r"groups\[5\]"):
        model.predict_accuracy(x, groups=g)


def test_unhashable_group_label(model: irt_fast.Model, x: np.ndarray) -> None:
    with _raises_named(InputError, r"groups\[0\]"):
        model.predict_accuracy(x[:2], groups=[[1], [2]])


def test_masked_queries(model: irt_fast.Model, x: np.ndarray) -> None:
    clean = np.ma.masked_array(x, mask=np.zeros_like(x, dtype=bool))
    np.testing.assert_array_equal(model.predict_proba(clean), model.predict_proba(x))
    assert model.predict_accuracy(clean) == model.predict_accuracy(x)
    mask = np.zeros_like(x, dtype=bool)
    mask[2, 5] = True
    masked = np.ma.masked_array(x, mask=mask)
    for call in (model.predict_proba, model.route, model.predict_accuracy):
        with _raises_named(InputError, "masked"):
            call(masked)


def test_masked_groups(model: irt_fast.Model, x: np.ndarray) -> None:
    g = np.ma.masked_array(np.array(["a", "b"] * 20), mask=[False] * 39 + [True])
    with _raises_named(InputError, "groups is a masked array"):
        model.predict_accuracy(x, groups=g)
    ok = np.ma.masked_array(np.array(["a", "b"] * 20), mask=False)
    assert set(model.predict_accuracy(x, groups=ok)) == {"a", "b"}


# ------------------------------------------------------------------ training metadata


@pytest.mark.parametrize(
    "training", ["", "{", "[" * 2000, "]" * 5, "[1, 2]", '"a string"', "null", "\ud800"]
)
def test_training_metadata_errors_are_weights_format_errors(tmp_path: Path, training: str) -> None:
    try:
        path = write(tmp_path / "m.safetensors", CFG, random_tensors(CFG), training=training)
    except UnicodeEncodeError:
        pytest.skip("safetensors cannot write a lone surrogate")
    with pytest.raises(WeightsFormatError, match="training"):
        irt_fast.load(path)


def test_training_metadata_object_is_read(tmp_path: Path) -> None:
    t = {"seed": 3, "metrics": {"auc": 0.8}}
    m = irt_fast.load(write(tmp_path / "m.safetensors", CFG, training=json.dumps(t)))
    assert m.training == t


@pytest.mark.parametrize(
    "bad", [np.ones((2, D), dtype=bool), [["a"] * D], np.ones((2, D), dtype=complex), [None] * D]
)
def test_queries_of_the_wrong_type(model: irt_fast.Model, bad: object) -> None:
    with _raises_named(InputError, "x must"):
        model.predict_proba(bad)
