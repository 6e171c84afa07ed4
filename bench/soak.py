#!/usr/bin/env python3
"""Soak test of one `ferry serve` (bench/soak.sh runs it). Stdlib only.

    soak.py FERRY_BIN WORK_DIR [--seconds 600] [--streams 200] [--rate 200] [--sample 60]
            [--heap-sample 5] [--max-growth-mb 32] [--max-fd-growth 16]

Starts a fresh `ferry serve` (data in WORK_DIR/data) and keeps, for --seconds, a mixed load
on bucket `main`, collection `users`:

- writers: PUT updates of seeded records, PUT new records, DELETE some of those again;
- readers: GET one record, GET a page sorted by `-last_modified`, GET a filtered, sorted page;
- batches: POST /v1/batch of 25 PUTs;
- --streams event streams (`Accept: text/event-stream`) held open the whole time, read by one
  thread (a stream that ends early is an error);
- a webhook delivering every change to a receiver in this process (loopback, so the server
  runs with FERRY_WEBHOOK_ALLOW_HOSTS=127.0.0.1); every delivery's signature is checked;
- `ferry sync <collection> sqlite:…#users --follow` (stream) into WORK_DIR/target.db.

The writers, readers and batches share --rate requests/s (each thread paced; they are
closed-loop below it). Every --sample seconds it notes the server's RSS (/proc/PID/status
VmRSS) and open file descriptors (/proc/PID/fd); every --heap-sample seconds it reads the
server's heap in use and SQLite's share of it from /metrics (`ferry_memory_heap_bytes`,
`ferry_memory_sqlite_bytes`). After the load: waits for the webhook's
cursor and the follower to catch up, stops the follower (SIGTERM, must exit 0), runs
`ferry verify <collection> sqlite:…#users` (must be equal), and prints the tables.

Exit status 0 when: no request failed (any answer but the expected one, or no answer, is an
error), no stream ended early, the webhook received every change with no failed attempt,
the follower exited 0 and `ferry verify` is equal, the heap in use less SQLite's share grew by
at most --max-growth-mb from the fifth after the warm-up (the first fifth) to the last fifth
(medians of each, as the heap swings with the requests in flight), and open descriptors by at
most --max-fd-growth. The resident set is reported, not judged: it also counts memory the
allocator keeps free for reuse (`ferry serve` asks glibc to keep up to 64 MiB a heap), so it
rises for a while without anything leaking; SQLite's page caches grow with the database up to
their `cache_size`.
Exit status 1 otherwise.
"""
import argparse
import base64
import hashlib
import hmac
import http.client
import http.server
import json
import os
import random
import selectors
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

AUTH = "alice:soak-secret"
HEADERS = {"Authorization": "Basic " + base64.b64encode(AUTH.encode()).decode(), "Content-Type": "application/json"}
BUCKET = "/v1/buckets/main"
COLLECTION = BUCKET + "/collections/users"
SEEDED = 1000
SECRET = "soak-webhook-secret-0123456789"


def percentile(values, p):
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Client:
    """One keep-alive connection; `call` times the request and records it under `kind`."""

    def __init__(self, port, stats):
        self.port = port
        self.stats = stats
        self.connection = None

    def call(self, kind, method, path, body=None, expect=(200,)):
        payload = None if body is None else json.dumps(body)
        start = time.perf_counter()
        try:
            if self.connection is None:
                self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            self.connection.request(method, path, body=payload, headers=HEADERS)
            response = self.connection.getresponse()
            data = response.read()
            status = response.status
        except (OSError, http.client.HTTPException) as error:
            if self.connection is not None:
                self.connection.close()
            self.connection = None
            self.stats.record(kind, time.perf_counter() - start, f"{method} {path}: {error!r}")
            return None
        problem = None if status in expect else f"{method} {path}: {status} {data[:300]!r}"
        self.stats.record(kind, time.perf_counter() - start, problem)
        return json.loads(data) if data and problem is None and method != "HEAD" else None


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.latencies = {}
        self.errors = {}
        self.samples = []
        self.heap = []  # (second, heap in use MB, SQLite's share MB)

    def record(self, kind, seconds, problem):
        with self.lock:
            self.latencies.setdefault(kind, []).append(seconds * 1000)
            if problem:
                self.errors.setdefault(kind, []).append(problem)


def paced(stop, period, body):
    """Calls body() every `period` seconds (or as fast as it goes) until stop is set."""
    next_at = time.monotonic()
    while not stop.is_set():
        body()
        next_at += period
        delay = next_at - time.monotonic()
        if delay > 0:
            stop.wait(delay)
        else:
            next_at = time.monotonic()


def person(rng, n):
    return {"name": f"user {n}", "age": rng.randint(18, 90), "email": f"u{n}@example.org",
            "tags": rng.sample(["a", "b", "c", "d", "e"], 2), "score": rng.random()}


def writer(port, stats, stop, period, number):
    rng = random.Random(number)
    client = Client(port, stats)
    mine = []
    count = 0

    def step():
        nonlocal count
        count += 1
        choice = rng.random()
        if choice < 0.5:
            n = rng.randrange(SEEDED)
            client.call("write", "PUT", f"{COLLECTION}/records/s{n}", {"data": person(rng, n)}, expect=(200, 201))
        elif choice < 0.8 or not mine:
            rid = f"w{number}-{count}"
            if client.call("write", "PUT", f"{COLLECTION}/records/{rid}", {"data": person(rng, count)}, expect=(201,)) is not None:
                mine.append(rid)
        else:
            rid = mine.pop(rng.randrange(len(mine)))
            client.call("write", "DELETE", f"{COLLECTION}/records/{rid}")
    paced(stop, period, step)


def reader(port, stats, stop, period, number):
    rng = random.Random(1000 + number)
    client = Client(port, stats)

    def step():
        choice = rng.random()
        if choice < 0.6:
            client.call("read", "GET", f"{COLLECTION}/records/s{rng.randrange(SEEDED)}")
        elif choice < 0.8:
            client.call("read", "GET", f"{COLLECTION}/records?_limit=50&_sort=-last_modified")
        else:
            client.call("read", "GET", f"{COLLECTION}/records?gt_age={rng.randint(18, 90)}&in_tags=a,c&_sort=name,-age&_limit=20")
    paced(stop, period, step)


def batcher(port, stats, stop, period, number):
    rng = random.Random(2000 + number)
    client = Client(port, stats)
    count = 0

    def step():
        nonlocal count
        requests = []
        for _ in range(25):
            count += 1
            requests.append({"method": "PUT", "path": f"{COLLECTION}/records/b{number}-{count % 5000}",
                             "body": {"data": person(rng, count)}})
        answer = client.call("batch", "POST", "/v1/batch", {"requests": requests})
        if answer is not None:
            bad = [r["status"] for r in answer["responses"] if r["status"] not in (200, 201)]
            if bad:
                stats.record("batch", 0, f"batch sub-requests answered {bad[:5]}")
    paced(stop, period, step)


def streams(port, count, stats, stop, opened):
    """Opens `count` event streams and reads them until stop; a stream that ends is an error."""
    selector = selectors.DefaultSelector()
    request = (f"GET {COLLECTION}/records HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n"
               f"Authorization: {HEADERS['Authorization']}\r\n\r\n").encode()
    heads = {}
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        s.sendall(request)
        s.setblocking(False)
        heads[s] = bytearray()
        selector.register(s, selectors.EVENT_READ)
    events = 0
    while not stop.is_set():
        for key, _ in selector.select(timeout=0.5):
            s = key.fileobj
            try:
                data = s.recv(65536)
            except BlockingIOError:
                continue
            except OSError as error:
                data, problem = b"", repr(error)
            else:
                problem = "the server closed it"
            if not data:
                stats.record("stream", 0, f"a stream ended early: {problem}")
                selector.unregister(s)
                s.close()
                continue
            if s in heads:
                heads[s] += data
                if b"\r\n\r\n" in heads[s]:
                    head = bytes(heads.pop(s))
                    if not head.startswith(b"HTTP/1.1 200"):
                        stats.record("stream", 0, f"a stream was refused: {head[:200]!r}")
                    if not heads:
                        opened.set()
            events += data.count(b"\nid:")
    for key in list(selector.get_map().values()):
        key.fileobj.close()
    stats.stream_events = events


class Receiver(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), ReceiverHandler)
        self.lock = threading.Lock()
        self.deliveries = 0
        self.changes = 0
        self.largest = 0
        self.bad = []


class ReceiverHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        delivery = self.headers.get("Ferry-Delivery", "")
        fields = dict(part.split("=", 1) for part in self.headers.get("Ferry-Signature", "").split(",") if "=" in part)
        expected = hmac.new(SECRET.encode(), f"{fields.get('t')}.{delivery}.".encode() + body, hashlib.sha256).hexdigest()
        server = self.server
        with server.lock:
            if not hmac.compare_digest(expected, fields.get("sha256", "")):
                server.bad.append(f"delivery {delivery}: bad signature")
            else:
                message = json.loads(body)
                server.deliveries += 1
                server.changes += len(message["changes"])
                server.largest = max(server.largest, message["timestamp"])
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()


def process_sample(pid):
    rss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


def wait_until(predicate, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.5)
    return predicate()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("ferry")
    parser.add_argument("work")
    parser.add_argument("--seconds", type=int, default=600)
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--rate", type=float, default=200, help="requests/s over writers, readers and batches")
    parser.add_argument("--sample", type=float, default=60, help="seconds between memory samples")
    parser.add_argument("--heap-sample", type=float, default=5, help="seconds between heap samples (from /metrics)")
    parser.add_argument("--max-growth-mb", type=float, default=32, help="most the heap in use less SQLite may grow")
    parser.add_argument("--max-fd-growth", type=int, default=16)
    args = parser.parse_args()

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    (work / "data").mkdir(exist_ok=True)
    port = free_port()
    receiver = Receiver()
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    env = {**os.environ, "FERRY_WEBHOOK_ALLOW_HOSTS": "127.0.0.1", "FERRY_MAX_STREAMS": str(args.streams + 50),
           "FERRY_PASSWORD_ROUNDS": "1000"}
    server_log = open(work / "server.log", "wb")
    server = subprocess.Popen([args.ferry, "serve", "--host", "127.0.0.1", "--port", str(port), "--data", str(work / "data"),
                               "--log-level", "warning"], stdout=server_log, stderr=subprocess.STDOUT, env=env)
    follower = None
    stats = Stats()
    stats.stream_events = 0
    stop = threading.Event()
    threads = []
    notes = []
    try:
        def ready():
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                c.request("GET", "/v1/__heartbeat__")
                return c.getresponse().status == 200
            except OSError:
                return server.poll() is not None
        if not wait_until(ready, 60) or server.poll() is not None:
            sys.exit(f"soak: the server did not start; its log:\n{(work / 'server.log').read_text()}")

        setup = Client(port, Stats())
        setup.call("setup", "PUT", BUCKET, {}, expect=(200, 201))
        setup.call("setup", "PUT", COLLECTION, {}, expect=(200, 201))
        rng = random.Random(19)
        for start in range(0, SEEDED, 500):
            setup.call("setup", "POST", "/v1/batch", {"requests": [
                {"method": "PUT", "path": f"{COLLECTION}/records/s{n}", "body": {"data": person(rng, n)}}
                for n in range(start, min(start + 500, SEEDED))]})
        setup.call("setup", "PUT", f"{COLLECTION}/webhooks/soak",
                   {"data": {"url": f"http://127.0.0.1:{receiver.server_address[1]}/", "secret": SECRET, "since": 0}},
                   expect=(201,))
        if setup.stats.errors:
            sys.exit(f"soak: setting up failed: {setup.stats.errors}")

        follower_env = {**os.environ, "FERRY_SOURCE_AUTH": AUTH}
        follower = subprocess.Popen(
            [args.ferry, "sync", f"http://127.0.0.1:{port}{COLLECTION}", f"sqlite:{work / 'target.db'}#users", "--follow",
             "--state", str(work / "state.db"), "--dead-letter", str(work / "dead-letter.jsonl")],
            stdout=open(work / "follower.out", "wb"), stderr=open(work / "follower.err", "wb"), env=follower_env)

        opened = threading.Event()
        stream_thread = threading.Thread(target=streams, args=(port, args.streams, stats, stop, opened))
        stream_thread.start()
        if args.streams and not opened.wait(60):
            notes.append("not every stream had answered within 60 s")

        # Threads and their share of the rate: 2 writers (40 %), 3 readers (50 %), 1 batcher (10 %).
        plan = [(writer, 2, 0.4), (reader, 3, 0.5), (batcher, 1, 0.1)]
        for function, count, share in plan:
            for number in range(count):
                period = count / (args.rate * share)
                t = threading.Thread(target=function, args=(port, stats, stop, period, number))
                t.start()
                threads.append(t)

        started = time.monotonic()

        def heap_sampler():
            while not stop.is_set():
                try:
                    heap, sqlite = memory_sample(port)
                    stats.heap.append((time.monotonic() - started, heap, sqlite))
                except (OSError, http.client.HTTPException, ValueError):
                    pass  # a missed sample; the server's own failures show in the request counts
                stop.wait(args.heap_sample)
        heap_thread = threading.Thread(target=heap_sampler)
        heap_thread.start()
        threads.append(heap_thread)
        rss, fds = process_sample(server.pid)
        stats.samples.append((0.0, rss, fds))
        while True:
            left = args.seconds - (time.monotonic() - started)
            if left <= 0 or server.poll() is not None:
                break
            time.sleep(min(args.sample, left))
            if server.poll() is None:
                rss, fds = process_sample(server.pid)
                stats.samples.append((time.monotonic() - started, rss, fds))
        elapsed = time.monotonic() - started
        stop.set()
        for t in threads:
            t.join()
        stream_thread.join()
        if server.poll() is not None:
            sys.exit(f"soak: the server exited with {server.returncode}; its log:\n{(work / 'server.log').read_text()[-4000:]}")

        # Drain: the webhook's cursor reaches the collection's timestamp, and the follower is equal.
        check = Client(port, Stats())
        head = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        head.request("HEAD", f"{COLLECTION}/records", headers=HEADERS)
        latest = int(head.getresponse().getheader("ETag").strip('"'))
        webhook_caught_up = wait_until(lambda: receiver.largest >= latest, 120)
        hook = check.call("check", "GET", f"{COLLECTION}/webhooks/soak")
        hook = hook["data"] if hook else {}

        def verified():
            run = subprocess.run([args.ferry, "verify", f"http://127.0.0.1:{port}{COLLECTION}", f"sqlite:{work / 'target.db'}#users"],
                                 capture_output=True, text=True, env=follower_env)
            verified.output = run.stdout + run.stderr
            return run.returncode == 0
        verified.output = ""
        equal = wait_until(verified, 120)
        follower.terminate()
        try:
            follower_rc = follower.wait(30)
        except subprocess.TimeoutExpired:
            follower.kill()
            follower_rc = follower.wait()
        follower = None
        rss_end, fds_end = process_sample(server.pid)
        stats.samples.append((time.monotonic() - started, rss_end, fds_end))
        total_records = int(head_count(port))
    finally:
        stop.set()
        if follower is not None:
            follower.kill()
            follower.wait()
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        receiver.shutdown()

    # ---- the report ----
    kinds = ["read", "write", "batch"]
    requests_total = sum(len(stats.latencies.get(k, [])) for k in kinds)
    errors_total = sum(len(v) for v in stats.errors.values())
    everything = [x for k in kinds for x in stats.latencies.get(k, [])]
    print(f"\nSoak: {elapsed:.0f} s, {args.streams} streams, target {args.rate:g} req/s, "
          f"{total_records} live records at the end\n")
    print("| requests | count | req/s | errors | p50 ms | p99 ms |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for kind in kinds + ["all"]:
        values = everything if kind == "all" else stats.latencies.get(kind, [])
        errs = errors_total if kind == "all" else len(stats.errors.get(kind, []))
        print(f"| {kind} | {len(values)} | {len(values) / elapsed:.1f} | {errs} | {percentile(values, 50):.1f} | {percentile(values, 99):.1f} |")
    print(f"\nstreams: {args.streams} open, {stats.stream_events} events read, {len(stats.errors.get('stream', []))} ended or refused")
    print(f"webhook: {receiver.deliveries} deliveries, {receiver.changes} changes received, server counts "
          f"delivered {hook.get('delivered')}, failures {hook.get('failures')}, caught up: {webhook_caught_up}, "
          f"bad signatures: {len(receiver.bad)}")
    print(f"--follow: exit {follower_rc}; ferry verify: {'equal' if equal else 'NOT equal'}")
    def during(lo, hi, column):
        values = [h[column] for h in stats.heap if lo <= h[0] < hi and h[column] is not None]
        return percentile(values, 50) if values else float("nan")
    print("\n| second | server RSS MB | heap in use MB (median since the last row) | of it SQLite MB | open fds |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    previous = 0.0
    for at, rss, fds in stats.samples:
        print(f"| {at:.0f} | {rss:.1f} | {during(previous, at + 0.001, 1):.1f} | {during(previous, at + 0.001, 2):.1f} | {fds} |")
        previous = at + 0.001

    failures = []
    if errors_total:
        failures.append(f"{errors_total} request or stream errors, first: {[v[0] for v in stats.errors.values()][:4]}")
    if requests_total == 0:
        failures.append("no request was made")
    if not webhook_caught_up or receiver.bad or hook.get("failures"):
        failures.append(f"webhook: caught up {webhook_caught_up}, bad {receiver.bad[:3]}, failures {hook.get('failures')}, "
                        f"last error {hook.get('last_error')}")
    if follower_rc != 0:
        failures.append(f"the follower exited {follower_rc}: {(work / 'follower.err').read_text()[-1000:]}")
    if not equal:
        failures.append(f"ferry verify is not equal:\n{verified.output[-2000:]}")
    # Flat memory: the heap in use less SQLite's share, the fifth after the warm-up (the first
    # fifth) against the last fifth of the load, medians of each.
    fifth = elapsed / 5
    own = [(h[0], h[1] - h[2]) for h in stats.heap if h[1] is not None and h[2] is not None and h[0] <= elapsed]
    early = [v for t, v in own if fifth <= t < 2 * fifth]
    late = [v for t, v in own if t >= elapsed - fifth]
    during_load = [s for s in stats.samples if s[0] <= elapsed]
    after_warm_up = [s for s in during_load if s[0] >= fifth] or during_load
    base = after_warm_up[0]
    fd_growth = during_load[-1][2] - base[2]
    rss_growth = during_load[-1][1] - base[1]
    sqlite_end = next((h[2] for h in reversed(stats.heap) if h[2] is not None), float("nan"))
    if early and late:
        growth = percentile(late, 50) - percentile(early, 50)
        print(f"\nheap in use less SQLite, median of seconds {fifth:.0f}-{2 * fifth:.0f} against the last {fifth:.0f} s: "
              f"{percentile(early, 50):.1f} -> {percentile(late, 50):.1f} MB, {growth:+.1f} MB (at most +{args.max_growth_mb:g}); "
              f"SQLite at the end {sqlite_end:.1f} MB; RSS {rss_growth:+.1f} MB (reported, not judged); "
              f"fds {fd_growth:+d} (at most +{args.max_fd_growth})")
        if growth > args.max_growth_mb:
            failures.append(f"the heap in use (less SQLite) grew by {growth:.1f} MB after the warm-up")
    else:
        failures.append(f"no heap samples from /metrics ({len(stats.heap)} taken): is ferry_memory_heap_bytes there?")
    if fd_growth > args.max_fd_growth:
        failures.append(f"open descriptors grew by {fd_growth} after the warm-up")
    log = (work / "server.log").read_text(errors="replace")
    if log.strip():
        notes.append(f"the server logged (warning and above): {log.strip().splitlines()[0][:300]}")
    for note in notes:
        print(f"note: {note}")
    if failures:
        print("\nFAILED:\n- " + "\n- ".join(failures))
        sys.exit(1)
    print("\nOK: no errors, memory and descriptors flat, webhook and follower complete, verify equal")


def memory_sample(port):
    """The server's heap in use and SQLite's share of it, in MB, from /metrics."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", "/metrics")
    values = {}
    for line in connection.getresponse().read().decode().splitlines():
        name, _, value = line.partition(" ")
        if name in ("ferry_memory_heap_bytes", "ferry_memory_sqlite_bytes"):
            values[name] = float(value) / 1e6
    return values.get("ferry_memory_heap_bytes"), values.get("ferry_memory_sqlite_bytes")


def head_count(port):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("HEAD", f"{COLLECTION}/records", headers=HEADERS)
    return connection.getresponse().getheader("Total-Objects") or "?"


if __name__ == "__main__":
    main()
