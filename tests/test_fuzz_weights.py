"""A hostile or damaged weights file: a seeded mutation fuzzer over a small model's bytes. Every mutant must load, or fail
with a typed error (WeightsFormatError; OSError for unreadable files); a model that loads must
answer every call with finite results or an InputError. The loop runs in a subprocess so that an
abort or a hang is seen as a failure, not suffered. Fast in CI (2,000 mutants); a longer run is
marked slow."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_engine_fixtures import config, write

_FUZZ = r"""
import json, os, random, struct, sys
import numpy as np
import irt_fast
from irt_fast.errors import InputError, WeightsFormatError

src, n, seed, work = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
good = open(src, "rb").read()
hlen = struct.unpack("<Q", good[:8])[0]
rng = random.Random(seed)
x = np.random.default_rng(seed).standard_normal((5, 24)).astype(np.float32)
JSONISH = b'0123456789[]{}",:-.eE ntrufals'


def mutate(b: bytearray) -> bytearray:
    try:
        return mutate_once(b)
    except (ValueError, IndexError):  # an op that does not fit an already-mutated buffer
        i = rng.randrange(len(b)); b[i] ^= 1 << rng.randrange(8)
        return b


def mutate_once(b: bytearray) -> bytearray:
    op = rng.randrange(8)
    if op == 0:  # flip one bit anywhere
        i = rng.randrange(len(b)); b[i] ^= 1 << rng.randrange(8)
    elif op == 1:  # random bytes anywhere
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(len(b))] = rng.randrange(256)
    elif op == 2:  # truncate
        del b[rng.randrange(len(b)):]
    elif op == 3:  # the header length field
        b[:8] = struct.pack("<Q", rng.choice([0, 1, hlen - 1, hlen + 1, len(b), 2**63, rng.randrange(2**64)]))
    elif op == 4:  # splice JSON-ish characters into the header (same length: offsets stay valid)
        i = rng.randrange(8, 8 + hlen)
        for j in range(i, min(i + rng.randint(1, 6), 8 + hlen)):
            b[j] = rng.choice(JSONISH)
    elif op == 5:  # change one digit of the header (shapes, offsets, sizes)
        digits = [i for i in range(8, 8 + hlen) if 48 <= b[i] <= 57]
        b[rng.choice(digits)] = rng.randrange(48, 58)
    elif op == 6:  # a huge or non-finite float32 in the data
        i = 8 + hlen + 4 * rng.randrange((len(b) - 8 - hlen) // 4)
        b[i:i + 4] = struct.pack("<f", rng.choice([3e38, -1e30, 1e7, float("nan"), float("inf")]))
    else:  # duplicate or drop a span
        i, k = rng.randrange(len(b)), rng.randint(1, 64)
        if rng.random() < 0.5:
            b[i:i] = b[i:i + k]
        else:
            del b[i:i + k]
    return b


counts = {"loaded": 0, "format_error": 0, "os_error": 0, "input_error": 0, "calls_ok": 0}
path = os.path.join(work, "mutant.safetensors")
for k in range(n):
    b = bytearray(good)
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        if len(b) > 8:
            b = mutate(b)
    with open(path, "wb") as f:
        f.write(b)
    try:
        m = irt_fast.load(path, threads=1)
    except WeightsFormatError:
        counts["format_error"] += 1
        continue
    except OSError:
        counts["os_error"] += 1
        continue
    except Exception as e:  # an untyped error is a finding: report the mutant
        print(json.dumps({"untyped": f"{type(e).__name__}: {e}", "mutant": k}))
        sys.exit(2)
    counts["loaded"] += 1
    try:
        p = m.predict_proba(x)
        a, be = m.item_params(x)
        r = m.route(x)
        acc = m.predict_accuracy(x)
        ok = (np.isfinite(p).all() and ((p >= 0) & (p <= 1)).all() and np.isfinite(a).all()
              and np.isfinite(be).all() and np.isfinite(r.proba).all()
              and all(np.isfinite(v) for v in acc.values()))
        if not ok:
            print(json.dumps({"non_finite_output": k})); sys.exit(3)
        counts["calls_ok"] += 1
    except InputError:
        counts["input_error"] += 1
    except Exception as e:
        print(json.dumps({"untyped_call": f"{type(e).__name__}: {e}", "mutant": k}))
        sys.exit(2)
print(json.dumps(counts))
"""


def fuzz(run_py, tmp_path: Path, n: int, seed: int, timeout: float) -> dict[str, int]:
    src = write(tmp_path / "m.safetensors", config(), training=json.dumps({"seed": 1}))
    r = run_py(_FUZZ, str(src), str(n), str(seed), str(tmp_path), timeout=timeout)
    # a negative return code is a signal: an abort or a segfault
    assert r.returncode == 0, (r.returncode, r.stdout[-1000:], r.stderr[-2000:])
    counts = json.loads(r.stdout.strip().splitlines()[-1])
    assert sum(counts[k] for k in ("loaded", "format_error", "os_error")) == n
    assert counts["loaded"] == counts["calls_ok"] + counts["input_error"]
    print(f"fuzz seed {seed}: {n} mutants, {counts}")  # shown with -s / in the report
    return counts


def test_fuzz_weights_quick(tmp_path: Path, run_py) -> None:
    counts = fuzz(run_py, tmp_path, 2000, seed=12, timeout=300)
    # the mutations must exercise both outcomes, or the test proves nothing
    assert counts["format_error"] > 500 and counts["loaded"] > 50, counts


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_fuzz_weights_long(tmp_path: Path, seed: int, run_py) -> None:
    counts = fuzz(run_py, tmp_path, 20_000, seed=seed, timeout=1800)
    assert counts["format_error"] > 5000, counts
