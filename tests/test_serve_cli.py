"""``irt-fast serve`` as a command: a route-only install lists it and says what to install; a
bad config, an unknown LLM, a missing environment variable or a corrupt model stops it before
it listens (exit status 2, the problem named); several workers serve and sum their metrics."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import httpx
import pytest
from serve_fixtures import (
    SECRETS,
    Gateway,
    child_env,
    free_port,
    metric,
    require_embedder,
    toml,
    write_model,
)


def _serve(model, config_text, tmp_path, env=None):
    cfg = tmp_path / "router.toml"
    cfg.write_text(config_text)
    port = free_port()
    p = subprocess.run(
        [sys.executable, "-m", "irt_fast", "serve", "--model", str(model), "--config", str(cfg),
         "--port", str(port)],
        capture_output=True, text=True, env=env or child_env(**SECRETS), timeout=120,
    )  # fmt: skip
    with socket.socket() as s:  # nothing is listening
        assert s.connect_ex(("127.0.0.1", port)) != 0
    return p


BLOCK = (
    "import sys\nfor m in ('starlette', 'uvicorn', 'prometheus_client'): sys.modules[m] = None\n"
)


def test_a_route_only_install_lists_serve_and_says_what_to_install(tmp_path):
    code = BLOCK + (
        "import irt_fast\n"
        "from irt_fast.cli import build_parser, main\n"
        "assert 'serve' in build_parser().format_help()\n"
        "sys.exit(main(['serve', '--model', 'm.safetensors', '--config', 'r.toml']))\n"
    )
    p = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=child_env(), timeout=120
    )
    assert p.returncode == 2, p.stderr
    assert "pip install 'irt_fast[serve]'" in p.stderr and "starlette" in p.stderr


@pytest.mark.parametrize(
    "config, fragment",
    [
        ({"server": {"batch_windw_ms": 1}}, "[server] batch_windw_ms: unknown key"),
        ({"llms": {"gpt-9": {"base_url": "http://127.0.0.1:9/v1"}}}, "no LLM named 'gpt-9'"),
        (
            {"llms": {"strong": {"base_url": "http://127.0.0.1:9/v1", "api_key_env": "NOPE_KEY"}}},
            "environment variable NOPE_KEY is not set",
        ),
        ({"auth": {"api_keys_env": "NOPE_TOKENS"}}, "NOPE_TOKENS is not set"),
    ],
)
def test_a_bad_config_stops_the_start(tmp_path, config, fragment):
    require_embedder()
    model = write_model(tmp_path / "m.safetensors")
    p = _serve(model, toml(**config), tmp_path)
    assert p.returncode == 2 and p.stderr.startswith("error: "), p.stderr
    assert fragment in p.stderr and "Traceback" not in p.stderr


def test_a_corrupt_model_stops_the_start(tmp_path):
    model = tmp_path / "m.safetensors"
    model.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage")
    p = _serve(model, toml(server={"max_batch": 4}), tmp_path)
    assert p.returncode == 2 and "error: " in p.stderr and "Traceback" not in p.stderr
    p = _serve(tmp_path / "absent.safetensors", toml(), tmp_path)
    assert p.returncode == 2 and "absent.safetensors" in p.stderr


def test_two_workers_serve_and_sum_their_metrics(tmp_path):
    require_embedder()
    model = write_model(tmp_path / "m.safetensors")
    gw = Gateway(model, toml(server={"max_batch": 64}), tmp_path, workers=2)
    try:
        gw.wait_ready("/healthz", timeout=180)
        deadline = time.monotonic() + 180
        while len(_pids(gw.get("/metrics", token=None).text)) < 2:  # both workers started
            assert time.monotonic() < deadline, gw.log()
            time.sleep(0.2)
        with httpx.Client(base_url=gw.url, timeout=30) as c:
            for i in range(30):
                r = c.post("/v1/route", json={"texts": [f"question {i}"]})
                assert r.status_code == 200 and r.json()["llms"] == ["strong"]
        # both workers' files are read at every scrape, whichever worker answers it
        text = gw.get("/metrics", token=None).text
        assert metric(text, "irt_serve_requests_total", endpoint="/v1/route", status="200") == 30
        assert len(_pids(text)) == 2
        # a reload asks the parent to replace both workers, one by one
        write_model(model, (-1.5, 0.0, 1.5, 3.0))
        r = httpx.post(gw.url + "/admin/reload", timeout=60)
        assert r.status_code == 200 and "restarting all 2 workers" in r.json()["message"]
        deadline, fresh = time.monotonic() + 180, 0
        while fresh < 20:  # 20 answers in a row from the new model, whichever worker
            assert time.monotonic() < deadline, gw.log()
            r = httpx.post(gw.url + "/v1/route", json={"texts": ["q"]}, timeout=30)
            assert r.status_code == 200
            fresh = fresh + 1 if r.json()["llms"] == ["spare"] else 0
    finally:
        gw.stop()
    assert "Traceback" not in gw.log()


def _pids(metrics_text: str) -> set[str]:
    """Worker pids in the multiprocess model_info series."""
    lines = [ln for ln in metrics_text.splitlines() if ln.startswith("irt_serve_model_info{")]
    return {ln.split('pid="')[1].split('"')[0] for ln in lines if 'pid="' in ln}
