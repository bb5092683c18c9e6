"""Hostile input, engine side: no crash, no hang, no NaN decision, no untyped error from a weights file.

Each test reproduces a finding of a hardening review against the engine (irt_fast._core): memory
exhaustion in predict_accuracy, FIFOs and devices, malformed `training` metadata, huge weights
and overflowing inputs. Tests whose failure mode is an abort run in a subprocess.
"""

from __future__ import annotations

import json
import os
import struct
import threading
from pathlib import Path

import numpy as np
import pytest

import irt_fast
from irt_fast.errors import InputError, WeightsFormatError
from tests.test_engine_fixtures import config, random_tensors, write

# ------------------------------------------------------------------ memory: MemoryError, not abort

_GROUPED_UNDER_LIMIT = """
import resource, sys
import numpy as np
import irt_fast
m = irt_fast.load(sys.argv[1], threads=2)
x = np.random.default_rng(0).standard_normal((4000, 24)).astype(np.float32)
labels = np.arange(4000) % 2000
p = m.predict_proba(x[:8])  # threads and allocator arenas exist before the limit
vm = int([l.split()[1] for l in open("/proc/self/status") if l.startswith("VmSize")][0]) * 1024
# room for the 80 MB result (2,000 groups x 5,000 LLMs, f64) and its DataFrame, not for a copy
# of it per chunk (the old engine: +640 MB per window of 8 chunks)
limit = vm + 420 * 2**20
hard = resource.getrlimit(resource.RLIMIT_AS)[1]
resource.setrlimit(resource.RLIMIT_AS, (limit, hard))  # soft limit only: it can be lifted
s, c = m._engine.predict_accuracy_sums(x, labels.astype(np.uint32), 2000)
resource.setrlimit(resource.RLIMIT_AS, (hard, hard))
want = m.predict_proba(x[labels == 7]).astype(np.float64).mean(0)
assert c[7] == 2, c[7]
assert np.allclose(s[7] / c[7], want, atol=1e-6), "wrong group sums"
print("ok")
"""


def test_grouped_accuracy_memory_is_bounded(tmp_path: Path, run_py) -> None:
    """2,000 groups on a 5,000-LLM model: the old engine allocated n_groups × n_llms f64 per
    chunk and aborted under an address-space limit the result itself fits in."""
    path = write(tmp_path / "m.safetensors", config(n_llms=5000))
    r = run_py(_GROUPED_UNDER_LIMIT, str(path))
    assert r.returncode == 0 and "ok" in r.stdout, (r.returncode, r.stderr[-2000:])


_HUGE_GROUP_COUNT = """
import resource, sys
import numpy as np
import irt_fast
m = irt_fast.load(sys.argv[1], threads=1)
x = np.zeros((3, 24), np.float32)
limit = 4 * 2**30
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
for n_groups in (10**9, 2**62):
    try:
        m._engine.predict_accuracy_sums(x, np.array([0, 1, 2], np.uint32), n_groups)
    except MemoryError as e:
        print("MemoryError", e)
    else:
        sys.exit("no error")
"""


def test_huge_group_count_is_a_memory_error(tmp_path: Path, run_py) -> None:
    """The abort was reachable through _core.Engine.predict_accuracy_sums with a huge count."""
    r = run_py(_HUGE_GROUP_COUNT, str(write(tmp_path / "m.safetensors")))
    assert r.returncode == 0, (r.returncode, r.stderr[-2000:])
    assert r.stdout.count("MemoryError") == 2, r.stdout


# ------------------------------------------------------------------ files that are not files


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "m.safetensors"
    os.mkfifo(fifo)
    result: list[BaseException | None] = []

    def load() -> None:
        try:
            irt_fast.load(fifo)
            result.append(None)
        except BaseException as e:  # noqa: BLE001 - reported below
            result.append(e)

    t = threading.Thread(target=load, daemon=True)
    t.start()
    t.join(30)
    if t.is_alive():  # unblock the stuck open() so the thread can end
        with open(fifo, "wb"):
            pass
        t.join(5)
        pytest.fail("load blocked on a FIFO")
    assert isinstance(result[0], OSError) and "regular file" in str(result[0]), result


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_device_is_refused_without_reading(run_py) -> None:
    r = run_py(
        """
        import resource, irt_fast
        resource.setrlimit(resource.RLIMIT_AS, (2 * 2**30, 2 * 2**30))
        try:
            irt_fast.load("/dev/zero")
        except OSError as e:
            print("refused:", e)
        """
    )
    assert r.returncode == 0 and "regular file" in r.stdout, (r.returncode, r.stderr[-2000:])


def test_header_longer_than_the_file_is_refused_before_reading(tmp_path: Path) -> None:
    path = write(tmp_path / "m.safetensors")
    data = bytearray(path.read_bytes())
    data[:8] = struct.pack("<Q", 2**50)
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsFormatError, match="header claims"):
        irt_fast.load(path)


# ------------------------------------------------------------------ metadata


@pytest.mark.parametrize("training", ["", "{", "[" * 2000, "[1, 2]", '"text"'])
def test_malformed_training_metadata_is_a_format_error(tmp_path: Path, training: str) -> None:
    with pytest.raises(WeightsFormatError, match="training"):
        irt_fast.load(write(tmp_path / "m.safetensors", training=training))


def test_valid_training_metadata_is_exposed(tmp_path: Path) -> None:
    m = irt_fast.load(write(tmp_path / "m.safetensors", training=json.dumps({"seed": 3})))
    assert m.training == {"seed": 3}


# ------------------------------------------------------------------ NaN never becomes a decision


def _flip_top_exponent_bit(t: np.ndarray) -> None:
    """The first |w| < 1 gets its exponent's top bit set: still finite, now ~1e38."""
    flat = t.reshape(-1)
    i = int(np.flatnonzero(np.abs(flat) < 1)[0])
    flat.view(np.uint32)[i] ^= np.uint32(1 << 30)


@pytest.mark.parametrize("tensor", ["experts.w1", "alpha.weight", "theta", "gate.weight"])
def test_a_flipped_exponent_bit_is_refused_at_load(tmp_path: Path, tensor: str) -> None:
    t = random_tensors(config())
    _flip_top_exponent_bit(t[tensor])  # finite, but overflows every product
    assert np.isfinite(t[tensor]).all()
    with pytest.raises(WeightsFormatError, match=tensor.replace(".", r"\.")):
        irt_fast.load(write(tmp_path / "m.safetensors", tensors=t))


def test_overflowing_inputs_raise_input_error_naming_the_rows(tmp_path: Path) -> None:
    m = irt_fast.load(write(tmp_path / "m.safetensors"))
    x = np.random.default_rng(1).standard_normal((6, 24)).astype(np.float32)
    x[[1, 4]] = 3e38
    calls = {
        "predict_proba": lambda: m.predict_proba(x),
        "item_params": lambda: m.item_params(x),
        "route": lambda: m.route(x),
        "route_margin": lambda: m.route(x, cost=[1, 2, 3, 4], margin=0.1),
        "predict_accuracy": lambda: m.predict_accuracy(x),
        "grouped": lambda: m.predict_accuracy(x, groups=["a", "b"] * 3),
    }
    for name, call in calls.items():
        with pytest.raises(InputError, match=r"\[1, 4\]"):
            call()
            pytest.fail(f"{name} accepted an overflowing input")
    # the finite rows alone are fine
    assert np.isfinite(m.predict_proba(x[[0, 2, 3, 5]])).all()


# ------------------------------------------------------------------ the binding's own arguments


@pytest.mark.parametrize("threads", [10**30, 5000, -1, 1.5, "2"])
def test_core_threads_argument_is_an_input_error(tmp_path: Path, threads: object) -> None:
    """irt_fast.load checks threads first; the engine itself must not raise a bare
    OverflowError/TypeError or try to start 10**30 threads either."""
    from irt_fast import _core

    with pytest.raises(InputError, match="threads"):
        _core.Engine.load(str(write(tmp_path / "m.safetensors")), threads)  # type: ignore[arg-type]
