"""Hot reload of a running gateway (a real uvicorn process) under load: POST /admin/reload and
SIGHUP swap the (model, config) pair without losing a request, every answer comes from exactly
one pair, and a corrupt model file or a broken config is refused while the old pair serves on."""

from __future__ import annotations

import signal
import threading
import time

import httpx
import pytest

pytest.importorskip("starlette")

import serve_fixtures as sf  # noqa: E402

from irt_fast.serve.snapshot import file_sha256  # noqa: E402

REVERSED = (-1.5, 0.0, 1.5, 3.0)  # the second model ranks spare first
BEST = {"a": "strong", "b": "spare"}


class Load:
    """Threads sending /v1/route and chat requests until stopped; every answer is kept."""

    def __init__(self, gw: sf.Gateway, threads: int = 3) -> None:
        self.gw, self.stop_flag = gw, threading.Event()
        self.results: list[tuple[str, int, dict]] = []
        self.errors: list[str] = []
        self.threads = [threading.Thread(target=self._run, args=(i,)) for i in range(threads)]

    def _run(self, i: int) -> None:
        h = {"authorization": f"Bearer {sf.TOKEN}"}
        with httpx.Client(base_url=self.gw.url, headers=h, timeout=30) as c:
            n = 0
            while not self.stop_flag.is_set():
                n += 1
                try:
                    if (n + i) % 3:
                        r = c.post(
                            "/v1/route",
                            json={"texts": [f"question {i} {n}"], "candidates": sf.NAMES},
                        )
                        self.results.append(("route", r.status_code, r.json()))
                    else:
                        body = {
                            "model": "irt-router",
                            "messages": [{"role": "user", "content": f"q {n}"}],
                        }
                        r = c.post("/v1/chat/completions", json=body)
                        self.results.append(("chat", r.status_code, r.json()))
                except httpx.HTTPError as e:  # a lost request: the test fails on it
                    self.errors.append(repr(e))

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_flag.set()
        for t in self.threads:
            t.join(60)

    def wait_for(self, n: int) -> None:
        """Until ``n`` more answers have arrived."""
        target = len(self.results) + n
        deadline = time.monotonic() + 60
        while len(self.results) < target and time.monotonic() < deadline:
            time.sleep(0.02)


def test_reload_under_load(tmp_path):
    sf.require_embedder()
    model = sf.write_model(tmp_path / "m.safetensors")
    # safetensors writes its header's metadata in no fixed order: each write has its own sha
    sha = {"a": file_sha256(str(model))}
    stub = sf.Stub("strong", tmp_path)
    stub.wait_ready("/_stub/requests")
    config = sf.toml(auth={"api_keys_env": "GW_TOKENS"}, llms=sf.upstreams({"strong": stub}))
    gw = sf.Gateway(model, config, tmp_path)
    try:
        gw.wait_ready("/healthz")
        with Load(gw) as load:
            load.wait_for(20)
            # 1. a new model by POST /admin/reload
            sf.write_model(model, REVERSED)
            sha["b"] = file_sha256(str(model))
            r = gw.post("/admin/reload")
            assert r.status_code == 200, r.text
            assert r.json()["sha256"] == sha["b"]
            load.wait_for(20)
            # 2. back to the first by SIGHUP
            sf.write_model(model)
            sha["a2"] = file_sha256(str(model))
            gw.signal(signal.SIGHUP)
            _wait_sha(gw, sha["a2"])
            load.wait_for(20)
            # 3. a corrupt file is refused; the first model serves on
            model.write_bytes(b"\x00garbage" * 100)
            r = gw.post("/admin/reload")
            assert r.status_code == 409 and "reload refused" in r.json()["error"]["message"]
            assert sha["a2"][:12] in r.json()["error"]["message"]
            load.wait_for(20)
            # 4. a broken config too, by SIGHUP (logged and counted)
            sf.write_model(model, REVERSED)
            gw.config_path.write_text(config.replace("[llms.", "typo = 1\n[llms.", 1))
            gw.signal(signal.SIGHUP)
            _wait_log(gw, "typo")
            load.wait_for(20)
            assert gw.get("/healthz").json()["sha256"] == sha["a2"]
        assert not load.errors, load.errors[:3]
        assert load.results and all(status == 200 for _, status, _ in load.results), [
            r for r in load.results if r[1] != 200
        ][:3]
        # every answer came from one whole pair: its model's choice for its sha
        which = {v: k[0] for k, v in sha.items()}
        seen = set()
        for kind, _, body in load.results:
            if kind == "route":
                pair = which[body["model"]["sha256"]]
                seen.add(pair)
                assert body["llms"] == [BEST[pair]]
            else:
                assert body["model"] == "strong"  # the only upstream, whatever the model
        assert seen == {"a", "b"}
        text = gw.get("/metrics").text
        assert sf.metric(text, "irt_serve_reloads_total", result="ok") == 2
        assert sf.metric(text, "irt_serve_reloads_total", result="error") == 2
        assert sf.metric(text, "irt_serve_model_info", sha256=sha["a2"]) == 1
        assert sf.metric(text, "irt_serve_model_info", sha256=sha["b"]) is None
        log = gw.log()
        assert log.count("reload refused") == 2 and "Traceback" not in log
    finally:
        gw.stop()
        stub.stop()


def _wait_sha(gw: sf.Gateway, sha: str) -> None:
    deadline = time.monotonic() + 60
    while gw.get("/healthz").json()["sha256"] != sha:
        assert time.monotonic() < deadline, "SIGHUP did not reload"
        time.sleep(0.05)


def _wait_log(gw: sf.Gateway, text: str) -> None:
    deadline = time.monotonic() + 60
    while text not in gw.log():
        assert time.monotonic() < deadline, f"{text!r} never logged"
        time.sleep(0.05)


def test_reload_without_tokens_only_from_this_machine(tmp_path):
    sf.require_embedder()
    model = sf.write_model(tmp_path / "m.safetensors")
    gw = sf.Gateway(model, sf.toml(server={"max_batch": 8}), tmp_path)
    try:
        gw.wait_ready("/healthz")
        r = gw.post("/admin/reload", token=None)  # from 127.0.0.1: accepted
        assert r.status_code == 200 and "reloaded" in r.json()["message"]
        # no upstreams: the model alone still routes; chat says why it cannot
        assert gw.post("/v1/route", {"texts": ["x"]}, token=None).json()["llms"] == ["strong"]
        r = gw.post("/v1/chat/completions", {"model": "irt-router", "messages": [{"role": "user", "content": "x"}]}, token=None)  # fmt: skip
        assert r.status_code == 503 and "no upstream" in r.json()["error"]["message"]
    finally:
        gw.stop()
