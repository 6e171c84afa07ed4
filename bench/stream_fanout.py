#!/usr/bin/env python3
"""Fan-out of Ferry's change streams (bench/follow.sh, part 2). Stdlib only.

    stream_fanout.py PORT STREAMS OUT_JSON [--records 20] [--rate 5] [--auth USER:PASS]
                     [--server-pid PID] [--drain S]

Opens STREAMS event streams on /v1/buckets/main/collections/users of the Ferry server on
127.0.0.1:PORT (`Accept: text/event-stream`, raw asyncio sockets, at most 100 connecting at
a time) and waits until each has answered 200 and sent its opening comment. A writer process
(its own process, so no GIL sits between an answer and its timestamp) then PUTs --records
records at --rate per second over one keep-alive connection, noting each answer's
last_modified and the time.time_ns() right after it. Each stream de-chunks its body, splits
it into events and notes when (time.time_ns() on the data_received call that completed the
event) it first saw each event `id:` (= the record's last_modified). Latency of a
(stream, record) pair = seen - acknowledged.

Writes OUT_JSON: {"streams", "opened", "refused", "open_seconds", "records", "pairs", "seen",
"complete_streams", "p50_ms", "p99_ms", "max_ms", "server_rss_mb", "server_cpu_ms_per_record",
"client_cpu_ms_per_record", "errors"}; "refused" counts streams not answered 200 (e.g. 503
over max_streams), "complete_streams" those that got every record within --drain seconds of
the last write. The CPU columns are the CPU time the server (/proc/PID/stat) and this
process (the streams' reader, not the writer) used from the first write until every stream
had every record (or the drain ended), divided by the records written.
"""
import argparse
import asyncio
import base64
import json
import multiprocessing as mp
import os
import resource
import sys
import time

from paced import paced_puts, percentile

COLLECTION = "/v1/buckets/main/collections/users"


class Stream(asyncio.Protocol):
    """One event stream: HTTP/1.1 response head, then a chunked body of SSE events."""

    def __init__(self, request, expected):
        self.request = request
        self.head = bytearray()
        self.status = None
        self.raw = bytearray()         # body bytes not de-chunked yet
        self.need = 0                  # payload bytes left in the current chunk
        self.crlf = 0                  # CRLF bytes left after the current chunk
        self.chunked = False
        self.sse = bytearray()         # de-chunked text not split into events yet
        self.seen = {}                 # event id (last_modified) -> first time seen (ns)
        self.opened = asyncio.get_running_loop().create_future()   # True after the opening comment
        self.expected = expected       # set of ids to wait for (filled by the writer's answers)
        self.done = asyncio.Event()
        self.closed = False
        self.error = None

    def connection_made(self, transport):
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data):
        now = time.time_ns()
        if self.status is None:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            head, rest = bytes(self.head[:end]), bytes(self.head[end + 4:])
            lines = head.split(b"\r\n")
            try:
                self.status = int(lines[0].split()[1])
            except (IndexError, ValueError):
                self.status = 0
            self.chunked = any(l.lower().startswith(b"transfer-encoding:") and b"chunked" in l.lower() for l in lines[1:])
            if self.status != 200:
                self.error = f"HTTP {self.status}"
                if not self.opened.done():
                    self.opened.set_result(False)
                self.transport.close()
                return
            data = rest
        if self.chunked:
            self.raw += data
            self._dechunk()
        else:
            self.sse += data
        self._events(now)

    def _dechunk(self):
        raw = self.raw
        while raw:
            if self.need:
                take = min(self.need, len(raw))
                self.sse += raw[:take]
                del raw[:take]
                self.need -= take
                if self.need == 0:
                    self.crlf = 2
                continue
            if self.crlf:
                take = min(self.crlf, len(raw))
                del raw[:take]
                self.crlf -= take
                continue
            end = raw.find(b"\r\n")
            if end < 0:
                return
            size = int(bytes(raw[:end]).split(b";")[0], 16)
            del raw[:end + 2]
            if size == 0:
                self.error = self.error or "the stream ended"
                return
            self.need = size

    def _events(self, now):
        sse = self.sse
        while True:
            end = sse.find(b"\n\n")
            if end < 0:
                return
            event = bytes(sse[:end])
            del sse[:end + 2]
            if not self.opened.done():
                # The first block is the opening comment (retry + ": ferry change stream …").
                self.opened.set_result(True)
            for line in event.split(b"\n"):
                if line.startswith(b"id:"):
                    ident = int(line[3:].strip())
                    self.seen.setdefault(ident, now)
                elif line.startswith(b"event: error"):
                    self.error = "event: error: " + event.decode(errors="replace")[:200]
            count, ids = self.expected
            if count and all(i in self.seen for i in ids):
                self.done.set()

    def connection_lost(self, exc):
        self.closed = True
        if self.error is None:
            self.error = f"connection lost: {exc!r}" if exc else "connection closed"
        if not self.opened.done():
            self.opened.set_result(False)
        self.done.set()


def writer(port, auth, records, rate, start_ns, out):
    """PUTs `records` records at `rate`/s from start_ns; sends ([(last_modified, ack ns)], [errors])."""
    acks, errors = [], []
    items = ((start_ns + k * 1e9 / rate, f"{COLLECTION}/records/fan-{k:04d}", {"name": f"user {k}", "age": k % 90, "email": f"fan{k}@example.com"})
             for k in range(records))
    for path, status, payload, ack in paced_puts(port, auth, items):
        name = "PUT " + path.rsplit("/", 1)[1]
        if status is None:
            errors.append(f"{name}: {payload}")
        elif status in (200, 201):
            try:
                acks.append((json.loads(payload)["data"]["last_modified"], ack))
            except (ValueError, KeyError) as error:
                errors.append(f"{name}: {error!r}")
        else:
            errors.append(f"{name}: HTTP {status}")
    out.send((acks, errors))
    out.close()


def cpu_seconds(pid):
    """user + system CPU seconds of a process so far (/proc/PID/stat), None if unreadable."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def rss_mb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


async def run(args):
    auth = "Basic " + base64.b64encode(args.auth.encode()).decode()
    request = (f"GET {COLLECTION}/records HTTP/1.1\r\nHost: 127.0.0.1:{args.port}\r\n"
               f"Authorization: {auth}\r\nAccept: text/event-stream\r\n\r\n").encode()
    loop = asyncio.get_running_loop()
    # [count, ids]: shared by every stream, filled in once the writer's answers are known.
    expected = [0, set()]
    streams = []
    gate = asyncio.Semaphore(100)
    errors = []

    async def open_one():
        async with gate:
            try:
                _, stream = await loop.create_connection(lambda: Stream(request, expected), "127.0.0.1", args.port)
            except OSError as error:
                errors.append(f"connect: {error!r}")
                return
            streams.append(stream)
            try:
                await asyncio.wait_for(stream.opened, 30)
            except asyncio.TimeoutError:
                stream.error = stream.error or "no opening comment within 30 s"

    t0 = time.monotonic()
    await asyncio.gather(*(open_one() for _ in range(args.streams)))
    open_seconds = time.monotonic() - t0
    good = [s for s in streams if s.status == 200 and s.opened.done() and s.opened.result()]
    refused = args.streams - len(good)
    for s in streams:
        if s not in good and s.error:
            errors.append(s.error)
    server_rss = rss_mb(args.server_pid) if args.server_pid else None

    # CPU used while the records go out and arrive: the server's, and this process's (the streams' reader).
    server_cpu0 = cpu_seconds(args.server_pid) if args.server_pid else None
    client_cpu0 = time.process_time()
    # The writer, in a process of its own; the event loop keeps reading the streams meanwhile.
    receive, send = mp.Pipe(duplex=False)
    start = time.time_ns() + 200_000_000
    proc = mp.Process(target=writer, args=(args.port, auth, args.records, args.rate, start, send))
    proc.start()
    while not receive.poll():
        await asyncio.sleep(0.05)
    acks, write_errors = receive.recv()
    proc.join()
    errors.extend(write_errors)
    expected[0] = len(acks)
    expected[1] = {lm for lm, _ in acks}
    for s in good:
        if all(i in s.seen for i in expected[1]):
            s.done.set()
    try:
        await asyncio.wait_for(asyncio.gather(*(s.done.wait() for s in good)), args.drain)
    except asyncio.TimeoutError:
        pass

    server_cpu1 = cpu_seconds(args.server_pid) if args.server_pid else None
    client_cpu = time.process_time() - client_cpu0
    server_cpu = server_cpu1 - server_cpu0 if server_cpu0 is not None and server_cpu1 is not None else None

    latencies = []
    complete = 0
    for s in good:
        got = 0
        for lm, ack in acks:
            t = s.seen.get(lm)
            if t is not None:
                latencies.append((t - ack) / 1e6)
                got += 1
        if got == len(acks) and not s.closed:
            complete += 1
        elif s.error and not s.closed:
            errors.append(s.error)
    for s in streams:
        if not s.closed:
            s.transport.close()
    await asyncio.sleep(0.1)
    latencies.sort()
    distinct = []
    for e in errors:
        if e not in distinct:
            distinct.append(e)
    return {
        "streams": args.streams, "opened": len(good), "refused": refused, "open_seconds": round(open_seconds, 2),
        "records": len(acks), "pairs": len(good) * len(acks), "seen": len(latencies), "complete_streams": complete,
        "p50_ms": percentile(latencies, 50), "p99_ms": percentile(latencies, 99),
        "max_ms": latencies[-1] if latencies else None, "server_rss_mb": server_rss,
        "server_cpu_ms_per_record": round(server_cpu * 1000 / len(acks), 1) if server_cpu is not None and acks else None,
        "client_cpu_ms_per_record": round(client_cpu * 1000 / len(acks), 1) if acks else None,
        "errors": len(errors), "first_errors": distinct[:5],
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("streams", type=int)
    parser.add_argument("out")
    parser.add_argument("--records", type=int, default=20)
    parser.add_argument("--rate", type=float, default=5)
    parser.add_argument("--auth", default="alice:pw")
    parser.add_argument("--server-pid", type=int)
    parser.add_argument("--drain", type=float, default=10)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < args.streams + 100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, args.streams + 1000), hard))
    result = asyncio.run(run(args))
    with open(args.out, "w") as f:
        json.dump(result, f)
    fmt = lambda ms: "n/a" if ms is None else f"{ms:.1f}"
    print(f"stream_fanout: {result['opened']}/{args.streams} streams open in {result['open_seconds']} s,"
          f" {result['seen']}/{result['pairs']} (stream, record) pairs seen, p50 {fmt(result['p50_ms'])} ms,"
          f" p99 {fmt(result['p99_ms'])} ms, max {fmt(result['max_ms'])} ms, server RSS {result['server_rss_mb']} MB,"
          f" CPU per record: server {result['server_cpu_ms_per_record']} ms, client {result['client_cpu_ms_per_record']} ms",
          file=sys.stderr)


if __name__ == "__main__":
    main()
