"""The one atomic writer every output goes through: normal file mode, nothing half-written."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest

from irt_fast._atomic import atomic_write
from irt_fast.splits import write_split_file


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_mode_is_that_of_a_plain_open_and_suffix_is_kept(tmp_path: Path, umask_022) -> None:
    seen = []

    def write(tmp: str) -> None:
        seen.append(tmp)
        Path(tmp).write_text("x")

    out = atomic_write(tmp_path / "sub" / "a.parquet", write)
    assert out.read_text() == "x"
    assert seen[0].endswith(".parquet")  # writers that dispatch on the suffix still work
    plain = tmp_path / "plain"
    plain.write_text("y")
    assert _mode(out) == _mode(plain) == 0o644


def test_failed_write_leaves_old_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "report.md"
    target.write_text("old")

    def boom(tmp: str) -> None:
        Path(tmp).write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(target, boom)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.md"]


def test_outputs_of_the_project_are_readable_by_others(tmp_path: Path, umask_022) -> None:
    torch = pytest.importorskip("torch")
    pytest.importorskip("matplotlib")
    from training.evaluation.plots import figure
    from training.export import save_model
    from training.model import IrtNetConfig, build_model

    torch.manual_seed(0)
    model = build_model(IrtNetConfig(embed_dim=8, d=2, n_llms=2, hidden_dim=4, expert_dim=3,
                                     n_routed=2))  # fmt: skip
    m = save_model(model, tmp_path / "model.safetensors", llm_names=["a", "b"],
                   embedder={"name": "t", "dim": 8, "normalize": True})  # fmt: skip
    s = write_split_file({"train": np.array([1, 2]), "val": np.array([3]), "test": np.array([4])},
                         tmp_path / "split.csv")  # fmt: skip
    png = tmp_path / "f.png"
    with figure(png) as (_, ax):
        ax.plot([0, 1], [0, 1])
    for p in (m, s, png):
        assert _mode(Path(p)) == 0o644, p
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.png", "model.safetensors", "split.csv"]
