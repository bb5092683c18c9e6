"""Format v2 in the engine (what onboarding new LLMs stores): v1 and v2 files load; llm_info, prior and answers are
validated (WeightsFormatError naming the entry) and exposed; Engine.with_llms shares the item
network, validates its input (InputError) and leaves the original engine unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from irt_fast import _core
from irt_fast.errors import InputError, WeightsFormatError
from tests.test_engine_fixtures import config, random_tensors, write

CFG = config()  # d = 6, n_llms = 4, llm_bias: p = 7
NAMES = [f"llm-{i}" for i in range(4)]
INFO = [{"name": n, "origin": "trained", "n_answers": None} for n in NAMES[:3]] + [
    {"name": "llm-3", "origin": "added", "n_answers": 3}
]


def v2_tensors(k: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(5)
    t = random_tensors(CFG)
    a = rng.standard_normal((7, 7))
    t["prior.mean"] = rng.standard_normal(7).astype(np.float32)
    t["prior.cov"] = (a @ a.T + 7 * np.eye(7)).astype(np.float32)
    t["answers.alpha"] = rng.standard_normal((k, 6)).astype(np.float32)
    t["answers.beta"] = rng.standard_normal(k).astype(np.float32)
    t["answers.correct"] = np.array([1, 0, 1][:k] + [0] * (k - 3), np.float32)
    return t


def load_v2(tmp_path: Path, t: dict[str, np.ndarray], info: object = INFO) -> _core.Engine:
    p = write(tmp_path / "m.safetensors", CFG, t, format_version="2", llm_info=json.dumps(info))
    return _core.Engine.load(str(p))


def test_v2_round_trips_through_the_getters(tmp_path: Path) -> None:
    t = v2_tensors()
    e = load_v2(tmp_path, t)
    np.testing.assert_array_equal(e.theta, t["theta"])
    np.testing.assert_array_equal(e.llm_bias, t["llm_bias"])
    mean, cov = e.prior
    np.testing.assert_array_equal(mean, t["prior.mean"])
    np.testing.assert_array_equal(cov, t["prior.cov"])
    assert json.loads(e.llm_info_json) == INFO
    for got, key in zip(e.answers, ("alpha", "beta", "correct"), strict=True):
        np.testing.assert_array_equal(got, t[f"answers.{key}"])


def test_v1_file_has_no_v2_entries(tmp_path: Path) -> None:
    e = _core.Engine.load(str(write(tmp_path / "m.safetensors")))
    assert e.prior is None and e.llm_info_json is None and e.answers is None
    assert e.theta.shape == (4, 6)


@pytest.mark.parametrize(
    "change, needle",
    [
        (lambda t, i: i.pop(), "llm_info"),
        (lambda t, i: i[0].update(name="other"), "llm_names"),
        (lambda t, i: i[3].update(n_answers=None), "n_answers"),
        (lambda t, i: t.pop("prior.cov"), "prior"),
        (lambda t, i: t.update({"prior.cov": -t["prior.cov"]}), "positive definite"),
        (lambda t, i: t.update({"prior.mean": t["prior.mean"][:6]}), "prior.mean"),
        (lambda t, i: i[3].update(n_answers=4), "answers.alpha"),
        (lambda t, i: t["answers.correct"].__setitem__(0, 0.5), "answers.correct"),
        (lambda t, i: t["answers.alpha"].__setitem__((0, 0), np.nan), "answers.alpha"),
        (lambda t, i: t.pop("answers.beta"), "answers"),
    ],
)
def test_v2_inconsistencies_are_format_errors(tmp_path: Path, change, needle: str) -> None:  # noqa: ANN001
    t, info = v2_tensors(), json.loads(json.dumps(INFO))
    change(t, info)
    with pytest.raises(WeightsFormatError, match=needle):
        load_v2(tmp_path, t, info)


def test_with_llms_shares_the_item_network(tmp_path: Path) -> None:
    e = load_v2(tmp_path, v2_tensors())
    x = np.random.default_rng(0).standard_normal((7, 24)).astype(np.float32)
    p = e.predict_proba(x)
    theta, bias = e.theta, e.llm_bias
    order = [3, 0]  # keep llm-3 and llm-0, in that order
    info = [{"name": "llm-3", "origin": "added", "n_answers": 2}, INFO[0]]
    answers = (np.ones((2, 6), np.float32), np.zeros(2, np.float32), np.ones(2, np.float32))
    e2 = e.with_llms(["llm-3", "llm-0"], theta[order], bias[order], json.dumps(info), answers)
    np.testing.assert_array_equal(e2.predict_proba(x), p[:, order])
    assert e2.llm_names == ["llm-3", "llm-0"] and json.loads(e2.config_json)["n_llms"] == 2
    assert e2.threads == e.threads and json.loads(e2.llm_info_json) == info
    np.testing.assert_array_equal(e2.answers[0], answers[0])
    np.testing.assert_array_equal(e2.prior[1], e.prior[1])  # the prior is the trained LLMs'
    assert e.llm_names == NAMES and e.predict_proba(x).shape == (7, 4)  # original unchanged


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"names": ["a", "a"]}, "twice"),
        ({"theta": np.zeros((2, 5), np.float32)}, "theta"),
        ({"theta": np.full((2, 6), np.nan, np.float32)}, "theta"),
        ({"theta": [[0.0] * 6] * 2}, "theta"),
        ({"bias": np.zeros(3, np.float32)}, "bias"),
        ({"llm_info_json": "{"}, "llm_info"),
        ({"answers": (np.zeros((1, 6), np.float32),) * 3}, "answers"),
        ({"answers": "yes"}, "answers"),
        (
            {"names": [], "theta": np.zeros((0, 6), np.float32), "bias": np.zeros(0, np.float32)},
            "at least one",
        ),
    ],
)
def test_with_llms_rejects_bad_input(tmp_path: Path, kwargs: dict, needle: str) -> None:
    e = _core.Engine.load(str(write(tmp_path / "m.safetensors")))
    args = {
        "names": ["a", "b"],
        "theta": np.zeros((2, 6), np.float32),
        "bias": np.zeros(2, np.float32),
        "llm_info_json": json.dumps(
            [
                {"name": "a", "origin": "trained", "n_answers": None},
                {"name": "b", "origin": "added", "n_answers": 2},
            ]
        ),
        "answers": None,
    } | kwargs
    if kwargs.get("names") == []:
        args["llm_info_json"] = "[]"
    with pytest.raises(InputError, match=needle):
        e.with_llms(**args)
