"""Training under torchrun (DistributedDataParallel, gloo, 2 CPU processes) against one process.

The claim: the same command, seed and global batch train the same model in one process and in
two. Floating-point sums differ in order (each rank sums half a batch's gradient, then the
all-reduce adds the halves), so the runs agree to rounding, not bit for bit. Tolerances, from
what these runs show (about 1e-8 relative on the losses, about 1e-7 on the probabilities)
with room for other CPUs' GEMM blocking: the per-epoch training loss and validation log-loss
within 1e-6 relative, every predicted probability within 1e-5 absolute, the mixture's
selection biases equal exactly (they move by ±balance_rate from integer loads, so any missing
all-reduce of the loads shows as a whole step).

The randomness is the real recipe's: embedding noise and dropout (0.5) stay on; both are drawn
for the global batch and sliced per rank (training.model.BatchDropout), so they do not depend on
the world size.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
if not torch.distributed.is_available():
    pytest.skip("torch without torch.distributed", allow_module_level=True)

from irt_fast.data import write_dataset  # noqa: E402
from irt_fast.errors import InputError  # noqa: E402
from irt_fast.synthetic import make_synthetic  # noqa: E402
from training import distributed  # noqa: E402
from training.model import BatchDropout, BatchShare, IrtModel, IrtNetConfig  # noqa: E402
from training.rundir import clean_stale  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
LOSS_RTOL = 1e-6
PROBA_ATOL = 1e-5
# 161 training questions in batches of 16: ten full batches and one of a single question, so
# rank 1 computes an empty share once per epoch. Top-1 of 3 routed experts: the load-balancing
# bias moves every step. Dropout 0.5 (the preset's) and noise 0.05 stay on.
RECIPE = ["--epochs", "4", "--dim", "4", "--hidden", "16", "--expert-dim", "8", "--n-routed", "3",
          "--top-k", "1", "--batch-queries", "16", "--train-size", "161", "--quiet",
          "--device", "cpu"]  # fmt: skip


def _env() -> dict[str, str]:
    path = os.pathsep.join([str(REPO / "python"), str(REPO), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}


def _torchrun(nproc: int, module: list[str]) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            "--nproc_per_node", str(nproc), "-m", *module]  # fmt: skip


def _train(cmd: list[str], timeout: float = 240) -> subprocess.CompletedProcess:
    r = subprocess.run(
        cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=timeout, check=False
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return r


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    ds, _ = make_synthetic(n_llms=8, n_queries=410, n_benchmarks=2, embed_dim=16, seed=0)
    d = tmp_path_factory.mktemp("ddp") / "data"
    write_dataset(ds, d)
    return d


def _log(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]


def _proba(run: Path, data: Path) -> np.ndarray:
    import irt_fast
    from irt_fast.data import load_dataset

    x = np.asarray(load_dataset(data).embeddings, dtype=np.float32)
    return irt_fast.load(run / "model.safetensors", threads=1).predict_proba(x)


def _assert_same_training(one: Path, two: Path, data: Path) -> None:
    m1, m2 = (json.loads((r / "metrics.json").read_text()) for r in (one, two))
    assert (m1["world_size"], m2["world_size"]) == (1, 2)
    assert (m1["epochs_run"], m1["best_epoch"]) == (m2["epochs_run"], m2["best_epoch"])
    l1, l2 = _log(one), _log(two)
    assert [r["epoch"] for r in l1] == [r["epoch"] for r in l2]
    for key in ("train_loss", "val_logloss", "lr"):
        np.testing.assert_allclose([r[key] for r in l2], [r[key] for r in l1], rtol=LOSS_RTOL)
    np.testing.assert_allclose(_proba(two, data), _proba(one, data), rtol=0, atol=PROBA_ATOL)
    from safetensors.numpy import load_file

    t1, t2 = (load_file(r / "model.safetensors") for r in (one, two))
    if "gate.selection_bias" in t1:
        np.testing.assert_array_equal(t2["gate.selection_bias"], t1["gate.selection_bias"])
        cfg = m1["config"]
        if cfg["top_k"] < cfg["n_routed"]:  # sparse: the balancing did move the biases
            assert np.any(t1["gate.selection_bias"] != 0)


def _train_here(args: list[str]) -> None:
    """``python -m training.fit args`` in this process, on one thread like the ranks."""
    from training import fit

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert fit.main(args) == 0
    finally:
        torch.set_num_threads(threads)


def test_two_processes_train_the_model_one_process_trains(data, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    _train_here(["--data", str(data), "--out", str(one), *RECIPE])
    r = _train(_torchrun(2, ["training.fit", "--data", str(data), "--out", str(two), *RECIPE]))
    _assert_same_training(one, two, data)
    assert r.stdout.count("wrote ") == 1  # rank 0 alone reports and writes
    assert r.stderr.count("writing the run into") == r.stderr.count("8 LLMs x 410 queries") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one", "two"]  # no temp dirs left


@pytest.mark.slow
@pytest.mark.parametrize(
    "extra",
    [["--method", "mf"], ["--method", "jeirt"], ["--batching", "rows", "--batch-rows", "200"],
     ["--top-k", "0", "--no-llm-bias"]],
    ids=["mf", "jeirt", "row-batches", "dense-no-offsets"],
)  # fmt: skip
def test_two_processes_match_one_for_every_method_and_batching(data, tmp_path, extra):
    one, two = tmp_path / "one", tmp_path / "two"
    args = ["--data", str(data), *RECIPE, *extra]
    _train([sys.executable, "-m", "training.fit", *args, "--out", str(one)])
    _train(_torchrun(2, ["training.fit", *args, "--out", str(two)]))
    _assert_same_training(one, two, data)


@pytest.mark.slow
def test_irt_fast_train_runs_under_torchrun(data, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    _train([sys.executable, "-m", "irt_fast", "train", "--data", str(data), "--out", str(one),
            *RECIPE])  # fmt: skip
    _train(_torchrun(2, ["irt_fast", "train", "--data", str(data), "--out", str(two), *RECIPE]))
    _assert_same_training(one, two, data)


def _children(pid: int) -> list[int]:
    kids = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            stat = (p / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            kids.append(int(p.name))
    return kids


def _rank_of(pid: int) -> int | None:
    try:
        env = (Path("/proc") / str(pid) / "environ").read_bytes().split(b"\0")
    except OSError:
        return None
    for kv in env:
        if kv.startswith(b"RANK="):
            return int(kv[5:])
    return None


def _alive(pid: int) -> bool:
    try:
        stat = (Path("/proc") / str(pid) / "stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("victim", [1, 0], ids=["kill-rank-1", "kill-rank-0"])
def test_killing_one_rank_fails_the_run_and_leaves_the_previous_run(data, tmp_path, victim):
    out = tmp_path / "run"
    long = ["--data", str(data), "--out", str(out), *RECIPE, "--epochs", "400", "--patience", "400"]
    _train([sys.executable, "-m", "training.fit", *long[:4], *RECIPE])  # a previous run
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    agent = subprocess.Popen(
        _torchrun(2, ["training.fit", *long]),
        cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        logs: list[Path] = []
        while not any(p.read_text().count("\n") >= 2 for p in logs):  # rank 0 is in epoch 3
            assert agent.poll() is None, agent.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "training did not start"
            time.sleep(0.2)
            logs = list(tmp_path.glob(".run.tmp-*/log.jsonl"))
        workers = {_rank_of(p): p for p in _children(agent.pid)}
        assert set(workers) == {0, 1}, workers
        os.kill(workers[victim], signal.SIGKILL)
        _, err = agent.communicate(timeout=120)
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
    assert agent.returncode != 0, err[-3000:]
    assert not _alive(workers[1 - victim])  # the other rank has exited too
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # --out: the previous run
    temps = sorted(p.name for p in tmp_path.iterdir() if p.name != "run")
    if victim == 1:  # rank 0 saw the failure and removed its temp directory itself
        assert temps == [], err[-3000:]
    else:  # a SIGKILLed rank 0 could not: the next run's first step removes it
        assert len(temps) == 1 and temps[0].startswith(".run.tmp-")
        clean_stale(out)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_world_of_one_outside_torchrun(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with distributed.session("cpu") as world:
        assert world == distributed.World() and world.is_main
        assert not torch.distributed.is_initialized()
        assert world.share(5).tolist() == [0, 1, 2, 3, 4]
        model = torch.nn.Linear(2, 2)
        assert world.wrap(model, torch.device("cpu")) is model
        assert world.broadcast({"a": 1}) == {"a": 1}
        t = torch.ones(3)
        assert world.sum_(t) is t and t.tolist() == [1.0, 1.0, 1.0]


def test_a_bad_world_size_is_refused(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(InputError, match="WORLD_SIZE"):
        with distributed.session("cpu"):
            pass


def test_sigterm_unwinds_the_stack_and_the_handler_comes_back(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    before = signal.getsignal(signal.SIGTERM)
    cleaned = []
    with pytest.raises(SystemExit) as exc:
        with distributed.session("cpu"):
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)  # the handler raises before this ends
            finally:
                cleaned.append(True)
    assert exc.value.code == 128 + signal.SIGTERM and cleaned == [True]
    assert signal.getsignal(signal.SIGTERM) == before


def test_ranks_share_a_batch_like_the_distributed_sampler():
    shares = [distributed.World(rank=r, size=3).share(7).tolist() for r in range(3)]
    assert shares == [[0, 3, 6], [1, 4], [2, 5]]
    assert distributed.World(rank=1, size=2).share(1).tolist() == []  # a rank may get nothing


def test_batch_dropout_draws_the_global_masks_whatever_the_share():
    x = torch.randn(6, 40)
    torch.manual_seed(3)
    plain = torch.nn.Dropout(0.5).train()(x)
    drop = BatchDropout(0.5).train()
    torch.manual_seed(3)
    whole = drop(x, BatchShare(6, torch.arange(6)))
    assert torch.equal(whole, plain)  # alone: nn.Dropout's draws and result, bit for bit
    parts = []
    for rank in range(2):  # each rank draws from the same generator state
        torch.manual_seed(3)
        rows = distributed.World(rank=rank, size=2).share(6)
        parts.append((rows, drop(x[rows], BatchShare(6, rows))))
    merged = torch.empty_like(x)
    for rows, y in parts:
        merged[rows] = y
    assert torch.equal(merged, plain)
    assert torch.equal(drop.eval()(x, BatchShare(6, torch.arange(3))), x)


def test_an_empty_share_trains_without_error():
    cfg = IrtNetConfig(embed_dim=8, n_llms=5, d=3, hidden_dim=8, expert_dim=4, n_routed=3)
    for top_k in (0, 1):
        model = IrtModel(cfg.with_(top_k=top_k)).train()
        empty = torch.zeros(0, dtype=torch.long)
        logits = model(torch.zeros(0, 8), empty, empty, BatchShare(1, empty))
        logits.sum().backward()
        assert logits.shape == (0,)
        assert all(p.grad is not None for p in model.parameters())
        model.update_balance()


@pytest.mark.slow
def test_the_speed_report_runs_and_its_runs_agree(tmp_path):
    out = tmp_path / "ddp_report.md"
    r = subprocess.run(
        [sys.executable, "-m", "benches.ddp_report", "--quick", "--configs", "2x1,1x1",
         "--out", str(out)],
        cwd=REPO, env=_env(), capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    rows = [x for x in out.read_text().splitlines() if x.startswith("| leaderboard")]
    assert [x.split("|")[2].strip() for x in rows] == ["2 × 1", "1 × 1"]
    assert "P within" in rows[1] and "failed" not in out.read_text()
