"""/health from a freshly started server process: the first probe answers at once."""
import os
import socket
import subprocess
import sys
import time

import httpx

from tests.conftest import ROOT


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_listening(process: subprocess.Popen, port: int, within_s: float = 120.0) -> None:
    """Poll the TCP port (not /health) so the first HTTP request is the probe under test."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read()
        with socket.socket() as client:
            if client.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError("uvicorn did not start listening")


def test_first_health_probe_answers_within_a_second_of_start(tmp_path):
    port = free_port()
    env = {**os.environ, "MODELS_DIR": str(tmp_path), "LIPSYNC_LOG_LEVEL": "WARNING"}
    process = subprocess.Popen([sys.executable, "-m", "uvicorn", "server:app", "--host", "127.0.0.1",
                                "--port", str(port), "--log-level", "warning"],
                               cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    try:
        wait_until_listening(process, port)
        health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1.0).json()  # a readiness probe's timeout
        assert health["status"] == "ok" and health["device"] in ("cpu", "cuda")
        assert isinstance(health["gpu_available"], bool)
    finally:
        process.terminate()
        process.wait(timeout=30)
