"""The engine on a weights file with subnormal expert weights, against the same file clean.

Groups ``subnormal_b1``, ``subnormal_b64``, ``subnormal_b1024``: contenders ``clean`` and
``subnormal`` (20% of the reference-size expert weights replaced by subnormal values, as a file
from elsewhere could hold), 2 threads, f32. The engine sets them to zero at load and runs its
workers with FTZ/DAZ, so both should take the same time. With --benchmark-disable every
contender runs once, and the flush count and the outputs are checked.

    python -m pytest benches/test_bench_subnormal.py --benchmark-only --benchmark-group-by=group
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import THREADS, record

SHARE = 0.2
ROUNDS = {1: 40, 64: 10, 1024: 3}


@pytest.fixture(scope="module")
def subnormal_engines(ref_path: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    import irt_fast
    from training.numerics import plant_subnormals

    sub = tmp_path_factory.mktemp("subnormal") / "sub.safetensors"
    planted = plant_subnormals(ref_path, sub, SHARE, seed=1)
    return {
        "clean": irt_fast.load(ref_path, threads=THREADS),
        "subnormal": irt_fast.load(sub, threads=THREADS),
        "planted": planted,
    }


@pytest.mark.parametrize("batch", [1, 64, 1024])
@pytest.mark.parametrize("who", ["clean", "subnormal"])
def test_subnormal(benchmark, subnormal_engines: dict, queries, batch: int, who: str) -> None:
    group = f"subnormal_b{batch}"
    benchmark.group = group
    model = subnormal_engines[who]
    x = queries[:batch]
    if getattr(benchmark, "disabled", False):
        # (the planted file differs from the clean one in a fifth of its expert weights: its
        # outputs are compared with the same file zeroed in tests/test_engine_subnormal.py)
        out = benchmark(lambda: model.predict_proba(x))
        assert np.isfinite(out).all() and ((out > 0) & (out < 1)).all()
        expected = subnormal_engines["planted"] if who == "subnormal" else 0
        assert model.flushed_subnormals == expected
        return
    benchmark.pedantic(lambda: model.route(x), rounds=ROUNDS[batch], warmup_rounds=1)
    record(benchmark, group, who, queries=batch)
