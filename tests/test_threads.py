"""The engine releases the GIL: Python threads progress during a call, and concurrent calls on
one model give the answers of sequential ones."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from test_engine_fixtures import config, random_tensors, write

import irt_fast

# big enough that one call takes a while (≈0.1–1 s), small enough for a quick test
CFG = config(embed_dim=256, hidden_dim=256, expert_dim=64, n_shared=1, n_routed=15, top_k=15, d=32)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> irt_fast.Model:
    path = tmp_path_factory.mktemp("threads") / "m.safetensors"
    return irt_fast.load(write(path, CFG, random_tensors(CFG, 7)))


def test_python_thread_runs_while_engine_computes(model: irt_fast.Model) -> None:
    x = np.random.default_rng(0).standard_normal((4096, 256)).astype(np.float32)
    ticks = 0
    stop = threading.Event()

    def counter() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            time.sleep(0.001)

    t = threading.Thread(target=counter)
    model.route(x[:64])  # warm up
    t.start()
    time.sleep(0.01)
    before = ticks
    start = time.perf_counter()
    model.predict_accuracy(x)
    model.route(x)
    elapsed = time.perf_counter() - start
    during = ticks - before
    stop.set()
    t.join()
    # With the GIL held for the whole call the counter would be frozen (≈0 ticks). Require a
    # fair fraction of the ticks a free 1 ms loop manages, relative to the elapsed time.
    assert elapsed > 0.05, "the call was too quick to tell anything"
    assert during >= 0.1 * elapsed / 0.0011, (during, elapsed)


def test_concurrent_calls_agree_with_sequential(model: irt_fast.Model) -> None:
    rng = np.random.default_rng(1)
    xs = [rng.standard_normal((b, 256)).astype(np.float32) for b in (1, 300, 1000, 37)]
    want = [model.route(x) for x in xs]
    want_acc = model.predict_accuracy(xs[2])
    results: dict[int, list] = {}
    errors: list[BaseException] = []
    progress = [0, 0]

    def worker(k: int) -> None:
        try:
            out = []
            for _ in range(3):
                for x in xs if k == 0 else xs[::-1]:
                    out.append((x.shape[0], model.route(x)))
                    progress[k] += 1
            out.append((-1, model.predict_accuracy(xs[2])))
            results[k] = out
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert progress == [12, 12]  # both threads made all their calls
    by_size = {x.shape[0]: w for x, w in zip(xs, want, strict=True)}
    for out in results.values():
        for b, r in out:
            if b == -1:
                assert r == want_acc
                continue
            np.testing.assert_array_equal(r.indices, by_size[b].indices)
            np.testing.assert_array_equal(r.proba, by_size[b].proba)


def test_one_thread_and_two_threads_agree(tmp_path: Path) -> None:
    path = write(tmp_path / "m.safetensors", CFG, random_tensors(CFG, 8))
    one, two = irt_fast.load(path, threads=1), irt_fast.load(path, threads=2)
    x = np.random.default_rng(2).standard_normal((1500, 256)).astype(np.float32)
    np.testing.assert_allclose(one.predict_proba(x), two.predict_proba(x), atol=1e-6, rtol=0)
    a1, a2 = one.predict_accuracy(x), two.predict_accuracy(x)
    np.testing.assert_allclose(list(a1.values()), list(a2.values()), atol=1e-9)


_FORK_CHILD = """
import os, signal, sys
import numpy as np
import irt_fast
m = irt_fast.load(sys.argv[1], threads=2)
x = np.random.default_rng(0).standard_normal((600, 256)).astype(np.float32)
want = m.predict_proba(x)  # the parent's thread pool is running now
pid = os.fork()
if pid == 0:
    signal.alarm(60)  # a hung child kills itself (SIGALRM's default action) and is not orphaned
    os._exit(0 if np.array_equal(m.predict_proba(x), want) else 3)
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"""


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_model_works_in_a_forked_child(tmp_path: Path) -> None:
    """After fork (multiprocessing, gunicorn --preload) the child's first call hung
    forever: the parent's worker threads do not exist in the child."""
    import subprocess
    import sys

    path = write(tmp_path / "m.safetensors", CFG, random_tensors(CFG, 9))
    r = subprocess.run(
        [sys.executable, "-c", _FORK_CHILD, str(path)], capture_output=True, text=True, check=False
    )
    # -14 (SIGALRM): the child's call had not returned after 60 s
    assert r.returncode == 0, (r.returncode, r.stderr)
