"""Every shell block of the guides in docs/guides runs, as a reader would run it, and the
test fails when one breaks: so the guides cannot rot.

How a guide runs:
- Its ```sh blocks, in order, in one `bash` with `set -euo pipefail`, in an empty temporary
  folder, with `ferry` (FERRY_BIN's folder) and the test venv's `python3` (Flask, for the
  REST fixture API) first on PATH, and FERRY_SRC set to this checkout (guides start the
  fixture API from there). Each block is announced on stderr, so a failure names its block.
- Ports: the guides use 8888, 8889 (Ferry servers), 8080 (a load balancer) and 5000 (a REST
  API); the test replaces each by a free port before running, so a server you run yourself
  on 8888 and parallel runs do not collide.
- Background commands (servers, `--follow`, `--every`, `ferry run`): guides start them with
  `&`. The guide runs in a process group of its own, which the test ends (SIGTERM, then
  SIGKILL) when the last block is done or the time limit (`GUIDE_TIMEOUT` seconds) is over.
- Blocks that cannot run here say so in their info string, GitHub showing only its first word:
  ```` ```sh no-run: why ````, e.g. a command with the reader's own database URL (the test
  provides a throwaway one instead). A `no-run` without a reason fails the test.
- `needs=TOOL` in the info string: the block runs only where TOOL is installed (nginx for the
  load balancer guide; CI installs it). Without it the block is skipped, saying so, and a
  `nginx.conf` the guide wrote is checked for its structure only (balanced braces, every
  directive ended by `;`), not by nginx itself.
- `<!-- guide-test: postgres -->` in a guide: the test starts a throwaway PostgreSQL cluster
  (initdb + pg_ctl on a free port) and exports its URL as FERRY_DATABASE. Without PostgreSQL
  the guide is skipped, saying so, unless FERRY_REQUIRE_POSTGRES=1 (CI), where it fails.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
GUIDES = REPO_ROOT / "docs" / "guides"
PORTS = ("8888", "8889", "8080", "5000")
GUIDE_TIMEOUT = int(os.environ.get("GUIDE_TIMEOUT", "180"))
SHELLS = ("sh", "bash", "shell", "console")


def ferry_binary() -> Path:
    binary = Path(os.environ.get("FERRY_BIN", REPO_ROOT / ".build" / "debug" / "ferry"))
    if not binary.is_file():
        pytest.fail(f"ferry binary not found at {binary}: run `swift build` or set FERRY_BIN")
    return binary


def guide_files():
    return sorted(p for p in GUIDES.glob("*.md") if p.name != "README.md")


class Block:
    def __init__(self, line, info, text):
        self.line = line
        self.info = info
        self.text = text
        words = info.split()
        self.language = words[0] if words else ""
        self.no_run = bool(words) and len(words) > 1 and words[1].startswith("no-run")
        self.reason = info.split("no-run", 1)[1].lstrip(":").strip() if self.no_run else ""
        self.needs = [w.split("=", 1)[1] for w in words[1:] if w.startswith("needs=")]

    @property
    def is_shell(self):
        return self.language in SHELLS


def blocks(path: Path):
    """The fenced code blocks of a Markdown file, with the line of their opening fence."""
    found, current, fence = [], None, None
    for number, line in enumerate(path.read_text().splitlines(), 1):
        stripped = line.strip()
        if current is None:
            match = re.match(r"^(`{3,}|~{3,})(.*)$", stripped)
            if match:
                fence, current = match.group(1), Block(number, match.group(2).strip(), "")
        elif stripped.startswith(fence) and stripped.strip("`~") == "":
            found.append(current)
            current = None
        else:
            current.text += line + "\n"
    assert current is None, f"{path}: a code block opened at line {current.line} is never closed"
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def nginx_structure_problems(text: str):
    """Problems a reader would hit in an nginx configuration, found without nginx: unbalanced
    braces, a directive not ended by `;`."""
    problems, depth = [], 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        depth += line.count("{") - line.count("}")
        if depth < 0:
            problems.append(f"line {number}: a }} closes nothing")
        if not (line.endswith(";") or line.endswith("{") or line.endswith("}")):
            problems.append(f"line {number}: {line!r} does not end with ; {{ or }}")
    if depth != 0:
        problems.append(f"{depth} unclosed {{")
    return problems


class ThrowawayPostgres:
    """initdb + pg_ctl on a temporary folder and a free port (as Tests/Support/PostgresCluster.swift)."""

    def __init__(self):
        self.bin = self.bin_directory()
        if self.bin is None:
            message = "PostgreSQL is not installed (no initdb/pg_ctl; apt-get install postgresql)"
            if os.environ.get("FERRY_REQUIRE_POSTGRES") == "1":
                pytest.fail(message)
            pytest.skip(message)
        self.directory = tempfile.mkdtemp(prefix="ferry-guide-pg-")
        self.as_root = os.geteuid() == 0
        password = Path(self.directory) / "password"
        password.write_text("guide-password")
        if self.as_root:
            subprocess.run(["chown", "-R", "postgres", self.directory], check=True)
        self.run("initdb", "-D", f"{self.directory}/data", "-U", "ferry", "--pwfile", str(password),
                 "--auth", "scram-sha-256", "-E", "UTF8", "--no-sync")
        self.port = free_port()
        options = (f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c synchronous_commit=off -c max_connections=100")
        self.run("pg_ctl", "-D", f"{self.directory}/data", "-l", f"{self.directory}/server.log",
                 "-o", options, "-w", "-t", "60", "start")
        self.url = f"postgres://ferry:guide-password@127.0.0.1:{self.port}/postgres"

    @staticmethod
    def bin_directory():
        candidates = []
        if os.environ.get("FERRY_PG_BIN"):
            candidates.append(os.environ["FERRY_PG_BIN"])
        if shutil.which("pg_config"):
            out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
            candidates.append(out.stdout.strip())
        versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: -int(p.parent.name)
                          if p.parent.name.isdigit() else 0) if Path("/usr/lib/postgresql").is_dir() else []
        candidates += [str(p) for p in versions]
        candidates += os.environ.get("PATH", "").split(":")
        for c in candidates:
            if c and os.access(f"{c}/initdb", os.X_OK) and os.access(f"{c}/pg_ctl", os.X_OK):
                return c
        return None

    def run(self, tool, *arguments):
        command = [f"{self.bin}/{tool}", *arguments]
        if self.as_root:
            command = ["runuser", "-u", "postgres", "--"] + command
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            pytest.fail(f"{tool} failed: {result.stdout}{result.stderr}")

    def stop(self):
        command = [f"{self.bin}/pg_ctl", "-D", f"{self.directory}/data", "-m", "immediate", "stop"]
        if self.as_root:
            command = ["runuser", "-u", "postgres", "--"] + command
        subprocess.run(command, capture_output=True)
        shutil.rmtree(self.directory, ignore_errors=True)


def script_of(guide: Path, ports: dict):
    """The bash script of a guide: its runnable blocks in order, each announced; and the notes
    on blocks skipped."""
    lines = ["set -euo pipefail"]
    notes = []
    for block in blocks(guide):
        if not block.is_shell:
            continue
        if block.no_run:
            assert block.reason, f"{guide.name}:{block.line}: a no-run block must say why (```sh no-run: why)"
            continue
        missing = [tool for tool in block.needs if shutil.which(tool) is None]
        if missing:
            notes.append(f"{guide.name}:{block.line}: skipped, {', '.join(missing)} not installed")
            continue
        text = block.text
        for port, replacement in ports.items():
            text = re.sub(rf"\b{port}\b", str(replacement), text)
        lines.append(f"echo '::guide block at {guide.name}:{block.line}' >&2")
        lines.append(text)
    lines.append("echo '::guide done' >&2")
    return "\n".join(lines) + "\n", notes


def stop_group(process):
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.killpg(process.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)


@pytest.mark.parametrize("guide", guide_files(), ids=lambda p: p.stem)
def test_guide_runs(guide, tmp_path):
    binary = ferry_binary()
    ports = {port: free_port() for port in PORTS}
    script, notes = script_of(guide, ports)
    env = {
        **os.environ,
        "PATH": os.pathsep.join([str(binary.parent), str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        "FERRY_SRC": str(REPO_ROOT),
        "HOME": str(tmp_path),
    }
    for name in ("FERRY_SOURCE_AUTH", "FERRY_TARGET_AUTH", "FERRY_WEBHOOK_SECRET", "FERRY_DATABASE", "FERRY_PORT"):
        env.pop(name, None)
    postgres = None
    if "<!-- guide-test: postgres -->" in guide.read_text():
        postgres = ThrowawayPostgres()
        env["FERRY_DATABASE"] = postgres.url
    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / "guide.sh").write_text(script)
    log_path = tmp_path / "guide.log"
    started = time.monotonic()
    try:
        with open(log_path, "wb") as log:
            process = subprocess.Popen(["bash", str(tmp_path / "guide.sh")], cwd=work, env=env,
                                       stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       start_new_session=True)
            try:
                status = process.wait(timeout=GUIDE_TIMEOUT)
            except subprocess.TimeoutExpired:
                status = None
            finally:
                stop_group(process)
    finally:
        if postgres:
            postgres.stop()
    output = log_path.read_text(errors="replace")
    last_block = ([l for l in output.splitlines() if l.startswith("::guide block at ")] or ["::guide block at ?"])[-1]
    where = last_block.removeprefix("::guide block at ")
    tail = "\n".join(output.splitlines()[-60:])
    if status is None:
        pytest.fail(f"{guide.name}: still running after {GUIDE_TIMEOUT} s, in the block at {where}:\n{tail}")
    assert status == 0 and "::guide done" in output, f"{guide.name}: the block at {where} failed (exit {status}):\n{tail}"
    for conf in work.rglob("nginx.conf"):
        if shutil.which("nginx") is None:
            problems = nginx_structure_problems(conf.read_text())
            assert not problems, f"{conf.name}: {problems}"
            notes.append(f"{guide.name}: nginx not installed: nginx.conf checked for structure only")
    print(f"{guide.name}: ran in {time.monotonic() - started:.1f} s" + "".join(f"\n  note: {n}" for n in notes))
    for note in notes:
        warnings.warn(note)


def test_every_guide_is_linked_from_the_readme_and_the_guides_index():
    readme = (REPO_ROOT / "README.md").read_text()
    index = (GUIDES / "README.md").read_text()
    for guide in guide_files():
        assert f"docs/guides/{guide.name}" in readme, f"README.md does not link {guide.name}"
        assert f"({guide.name})" in index, f"docs/guides/README.md does not link {guide.name}"


def test_the_harness_catches_a_broken_block(tmp_path):
    """A failing command fails its guide, named by line; a no-run block without a reason is refused."""
    guide = tmp_path / "broken.md"
    guide.write_text("# Broken\n\n```sh\necho fine\n```\n\n```sh\nfalse\necho never\n```\n")
    script, _ = script_of(guide, {})
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True)
    assert result.returncode != 0 and "::guide done" not in result.stderr
    assert "broken.md:7" in result.stderr.splitlines()[-1]
    guide.write_text("```sh no-run\necho x\n```\n")
    with pytest.raises(AssertionError, match="must say why"):
        script_of(guide, {})
    assert nginx_structure_problems("http {\n  listen 80\n") == ["line 2: 'listen 80' does not end with ; { or }", "1 unclosed {"]
    assert nginx_structure_problems("events {}\nhttp { server { listen 80; } }\n") == []
