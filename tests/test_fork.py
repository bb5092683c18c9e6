"""A loaded model keeps working in processes forked from its parent (multiprocessing's
fork context, gunicorn --preload). Before the fix the child's first call waited forever on the
parent's worker threads, which fork() does not copy. Run in a subprocess with a timeout, so a
hang fails the test instead of the suite."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.test_engine_fixtures import config, write

_SCRIPT = """
import multiprocessing as mp, sys
import numpy as np
import irt_fast

m = irt_fast.load(sys.argv[1], threads=2)
x = np.random.default_rng(0).standard_normal((900, 24)).astype(np.float32)
want = m.predict_proba(x)  # the parent's pool has run: its threads exist
want_small = m.predict_proba(x[:3])  # column split: equal to the row split only to rounding


def work(i):
    # row split (900 rows) and column split (3 rows) both use the pool
    big = np.array_equal(m.predict_proba(x), want)
    small = np.array_equal(m.predict_proba(x[:3]), want_small)
    acc = m.predict_accuracy(x)
    return big and small and len(acc) == m.n_llms


if __name__ == "__main__":
    with mp.get_context("fork").Pool(2) as pool:
        res = pool.map_async(work, range(4)).get(timeout=60)
    assert all(res), res
    assert np.array_equal(m.predict_proba(x), want)  # the parent is unaffected
    print("ok")
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_multiprocessing_fork_children_can_use_a_loaded_model(tmp_path: Path, run_py) -> None:
    path = write(tmp_path / "m.safetensors", config(n_llms=4))
    r = run_py(_SCRIPT, str(path))
    assert r.returncode == 0 and "ok" in r.stdout, (r.returncode, r.stderr[-2000:])
