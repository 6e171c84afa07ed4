"""The `ferry serve` process the Python tests talk to (one per test module).

The binary comes from FERRY_BIN (default `.build/debug/ferry` under the repo root).
Account passwords are hashed with 1,000 PBKDF2 rounds instead of 210,000, so that
creating accounts in tests is fast; everything else is the server's default.
"""

import contextlib
import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests

REPO_ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    # Bind port 0 to let the kernel pick a free port, then release it for Ferry.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve(extra_env=None, extra_args=()):
    """A `ferry serve` on a free port and a fresh data folder; yields its `/v1` URL."""
    binary = Path(os.environ.get("FERRY_BIN", REPO_ROOT / ".build" / "debug" / "ferry"))
    if not binary.is_file():
        pytest.fail(f"ferry binary not found at {binary}: run `swift build` or set FERRY_BIN")
    data_dir = tempfile.mkdtemp(prefix="ferry-pytest-")
    port = _free_port()
    log = open(Path(data_dir) / "server.log", "wb")
    proc = subprocess.Popen(
        [str(binary), "serve", "--host", "127.0.0.1", "--port", str(port),
         "--data", data_dir, "--log-level", "warning", *extra_args],
        stdout=log, stderr=subprocess.STDOUT,
        env={**os.environ, "FERRY_PASSWORD_ROUNDS": "1000", **(extra_env or {})},
    )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        # Wait (bounded) until the heartbeat answers, failing fast if ferry exits.
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                log.flush()
                pytest.fail(f"ferry exited with {proc.returncode}: "
                            f"{(Path(data_dir) / 'server.log').read_text(errors='replace')}")
            try:
                if requests.get(f"{url}/__heartbeat__", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("ferry did not answer /v1/__heartbeat__ within 30 s")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="module")
def server_url():
    with serve() as url:
        yield url
