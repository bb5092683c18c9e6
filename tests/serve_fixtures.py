"""Helpers shared by the gateway tests (no tests here): a small model with the real offline
static embedder, router.toml files, and real processes: stub upstreams and the gateway itself
(``python -m irt_fast serve``), each on a free port of 127.0.0.1 with its output in a log file.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from test_engine_fixtures import config, random_tensors, write

EMBEDDER = "m2v-mpnet-256"
NAMES = ["strong", "medium", "cheap", "spare"]
#: Per-LLM offsets large against the θ·α term: every query ranks strong > medium > cheap > spare.
BIASES = (3.0, 1.5, 0.0, -1.5)
#: Secrets the tests hand to the gateway; none may ever appear in a response or a log line.
SECRETS = {
    "KEY_STRONG": "sk-strong-SECRET-5e1f0c",
    "KEY_MEDIUM": "sk-medium-SECRET-77ab3d",
    "KEY_CHEAP": "sk-cheap-SECRET-0d9e42",
    "GW_TOKENS": "gw-token-SECRET-a1b2c3,gw-token-SECRET-second",
}
TOKEN = "gw-token-SECRET-a1b2c3"


def require_embedder() -> None:
    """Skip unless the static embedder the test models name is built."""
    from irt_fast.embedders.registry import kind_of, local_dir

    try:
        built = kind_of(local_dir(EMBEDDER)) is not None
    except Exception as e:  # noqa: BLE001 - any failure means: not available here
        pytest.skip(f"{EMBEDDER} not available ({e}): irt-fast models setup")
    if not built:
        pytest.skip(f"{EMBEDDER} is not built: irt-fast models setup")


def write_model(path: Path, biases: tuple[float, ...] = BIASES, seed: int = 1) -> Path:
    """A 4-LLM IrtNet over the 256-d static embedder (numpy-written, no torch)."""
    cfg = config(embed_dim=256, n_llms=len(NAMES))
    t = random_tensors(cfg, seed=seed)
    t["theta"] *= 0.1
    t["llm_bias"] = np.array(biases, np.float32)
    tmp = path.with_suffix(".tmp")
    write(
        tmp,
        cfg,
        t,
        llm_names=json.dumps(NAMES),
        embedder=json.dumps({"name": EMBEDDER, "dim": 256, "normalize": True}),
    )
    os.replace(tmp, path)  # a reload never sees half a file
    return path


def toml(**sections: Any) -> str:
    """A router.toml from ``section=dict`` (``llms={name: dict}``)."""
    lines: list[str] = []

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        return json.dumps(v)

    for name, body in sections.items():
        if name == "llms":
            for llm, keys in body.items():
                lines.append(f'[llms."{llm}"]')
                lines += [f"{k} = {value(v)}" for k, v in keys.items()]
        else:
            lines.append(f"[{name}]")
            lines += [f"{k} = {value(v)}" for k, v in body.items()]
    return "\n".join(lines) + "\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", **extra)
    return env


class Proc:
    """A child process with its output in a log file; stopped by its own pid."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str], url: str) -> None:
        self.log_path = log
        self.url = url
        self._log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, env=env)

    def wait_ready(self, path: str, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.url} exited ({self.proc.returncode}):\n{self.log()}")
            try:
                if httpx.get(self.url + path, timeout=2).status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.url} did not start:\n{self.log()}")

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()


class Stub(Proc):
    """A stub OpenAI-compatible upstream (``irt_fast.serve.stub``) in its own process."""

    def __init__(self, name: str, tmp: Path) -> None:
        port = free_port()
        args = [sys.executable, "-m", "irt_fast.serve.stub", "--port", str(port), "--name", name]
        super().__init__(args, tmp / f"stub-{name}.log", child_env(), f"http://127.0.0.1:{port}")
        self.base_url = self.url + "/v1"

    def mode(self, mode: str, delay: float = 0.0) -> None:
        r = httpx.post(self.url + "/_stub/mode", json={"mode": mode, "delay": delay}, timeout=10)
        r.raise_for_status()

    def requests(self) -> list[dict[str, Any]]:
        return httpx.get(self.url + "/_stub/requests", timeout=10).json()

    def clear(self) -> None:
        httpx.delete(self.url + "/_stub/requests", timeout=10).raise_for_status()


class Gateway(Proc):
    """``python -m irt_fast serve`` in its own process."""

    def __init__(
        self,
        model: Path,
        config_text: str,
        tmp: Path,
        *,
        name: str = "gw",
        workers: int = 1,
        env: dict[str, str] | None = None,
    ) -> None:
        port = free_port()
        self.config_path = tmp / f"{name}.toml"
        self.config_path.write_text(config_text)
        self.model_path = model
        args = [
            sys.executable, "-m", "irt_fast", "serve", "--model", str(model),
            "--config", str(self.config_path), "--port", str(port), "--workers", str(workers),
        ]  # fmt: skip
        super().__init__(
            args,
            tmp / f"{name}.log",
            child_env(**SECRETS, **(env or {})),
            f"http://127.0.0.1:{port}",
        )

    def post(
        self, path: str, body: Any = None, *, token: str | None = TOKEN, **kw: Any
    ) -> httpx.Response:
        headers = dict(kw.pop("headers", {}))
        if token is not None:
            headers["authorization"] = f"Bearer {token}"
        if body is not None:
            kw["content"] = body if isinstance(body, bytes) else json.dumps(body).encode()
        return httpx.post(self.url + path, headers=headers, timeout=kw.pop("timeout", 30), **kw)

    def get(self, path: str, *, token: str | None = TOKEN) -> httpx.Response:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return httpx.get(self.url + path, headers=headers, timeout=30)


def upstreams(stubs: dict[str, Stub], **per_llm: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The [llms] section for stubs named after the LLMs (strong has its own model id)."""
    base: dict[str, dict[str, Any]] = {
        "strong": {"api_key_env": "KEY_STRONG", "model": "strong-v1", "input_per_mtok": 30.0, "output_per_mtok": 60.0},
        "medium": {"api_key_env": "KEY_MEDIUM", "cost_per_query": 0.001},
        "cheap": {"api_key_env": "KEY_CHEAP", "cost_per_query": 0.0001},
        "spare": {"cost_per_query": 0.0},
    }  # fmt: skip
    out = {}
    for name, stub in stubs.items():
        out[name] = {"base_url": stub.base_url if isinstance(stub, Stub) else stub, **base[name]}
        out[name].update(per_llm.get(name, {}))
    return out


def dead_url() -> str:
    """An http URL on 127.0.0.1 where nothing listens (connection refused)."""
    return f"http://127.0.0.1:{free_port()}/v1"


def metric(text: str, name: str, **labels: str) -> float | None:
    """A sample's value from Prometheus exposition text (None when absent)."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, val = line.rpartition(" ")
        if head.split("{")[0] != name:
            continue
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            return float(val)
    return None
