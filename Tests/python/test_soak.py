"""bench/soak.sh, bounded: half a minute of mixed load (reads, writes, batches, 20 open streams,
a webhook to a local receiver, a `--follow` job) on one `ferry serve`, which must end with no
error, flat memory and descriptors, every change delivered and `ferry verify` equal.

The real soak is `bench/soak.sh` (10 minutes, 200 streams); this keeps the script working and
catches what breaks under a short mixed load.
"""

import os
import subprocess
from pathlib import Path

from conftest import REPO_ROOT


def test_a_short_soak_has_no_error_and_ends_equal(tmp_path):
    binary = Path(os.environ.get("FERRY_BIN", REPO_ROOT / ".build" / "debug" / "ferry"))
    env = {**os.environ, "FERRY_BIN": str(binary), "SOAK_SECONDS": "30", "STREAMS": "20", "RATE": "40",
           "SAMPLE": "5", "HEAP_SAMPLE": "1", "SOAK_WORK": str(tmp_path / "soak")}
    run = subprocess.run([str(REPO_ROOT / "bench" / "soak.sh")], env=env, capture_output=True, text=True, timeout=400)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-6000:]
    assert "| all |" in output and "ferry verify: equal" in output, output[-6000:]
    # Memory was judged by the heap in use the server reported, not left unchecked.
    assert "heap in use less SQLite" in output, output[-6000:]
    # The table counted real traffic: requests of every kind, and the streams read events.
    for kind in ("read", "write", "batch"):
        line = next(l for l in output.splitlines() if l.startswith(f"| {kind} |"))
        assert int(line.split("|")[2]) > 0, line
