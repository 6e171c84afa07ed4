#!/usr/bin/env python3
"""End-to-end latency of `ferry sync … --follow` (bench/follow.sh, part 1). Stdlib only.

    follow_latency.py PORT DB RATES SECONDS OUT_PREFIX [--auth USER:PASS] [--drain S]

Writers PUT records into /v1/buckets/main/collections/users of the Ferry server on
127.0.0.1:PORT at a steady RATE writes/s (one keep-alive http.client connection each; one
writer up to 300/s, more above, each a process of its own so no GIL sits between a
response and its timestamp). Each record's acknowledgement time is time.time_ns() right
after its 2xx answer is read. A reader process polls the SQLite target DB (read-only, WAL)
every ~1 ms with `SELECT rowid, id FROM users WHERE rowid > ?` and notes when each id first
shows up. Latency = seen - acknowledged (both wall-clock, same host).

First one warm-up record is written and waited for (up to 60 s: it also makes Ferry create
the table), then each rate in RATES (comma-separated) runs for SECONDS, and the script
waits up to --drain seconds for the stragglers. For each rate it writes OUT_PREFIX-RATE.json:
{"rate", "written", "seconds", "achieved", "seen", "missing", "p50_ms", "p99_ms", "max_ms",
"errors"} and prints one line to stderr: written = acknowledged PUTs, errors = PUTs that
failed, missing = acknowledged records not in the target after the drain. The reader's
1 ms period adds ~0.5 ms on average.
"""
import argparse
import base64
import json
import math
import multiprocessing as mp
import sqlite3
import sys
import time

from paced import paced_puts, percentile

RECORDS = "/v1/buckets/main/collections/users/records/"


def fmt(ms):
    return "n/a" if ms is None else f"{ms:.1f}"


def reader(db, stop, out):
    """Polls the target every ~1 ms; sends {id: first-seen ns} when `stop` is set."""
    seen = {}
    conn = None
    last = 0
    while True:
        stopping = stop.is_set()   # read before the last poll, so that poll still counts
        try:
            if conn is None:
                conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1.0, isolation_level=None)
            rows = conn.execute("SELECT rowid, id FROM users WHERE rowid > ? ORDER BY rowid", (last,)).fetchall()
            now = time.time_ns()
            for rowid, rid in rows:
                seen.setdefault(rid, now)
            if rows:
                last = rows[-1][0]
        except sqlite3.OperationalError:
            # The file or the table is not there yet (Ferry creates it with the first record).
            if conn is not None:
                conn.close()
                conn = None
        if stopping:
            break
        time.sleep(0.001)
    out.send(seen)
    out.close()


def writer(port, auth, ids, start_ns, period_ns, out):
    """PUTs `ids` at start_ns + k * period_ns; sends ({id: ack ns}, [errors])."""
    acks, errors = {}, []
    items = ((start_ns + k * period_ns, RECORDS + rid, {"name": f"user {rid}", "age": k % 90, "email": f"{rid}@example.com"})
             for k, rid in enumerate(ids))
    for path, status, payload, ack in paced_puts(port, auth, items):
        rid = path[len(RECORDS):]
        if status is None:
            errors.append(f"{rid}: {payload}")
        elif 200 <= status < 300:
            acks[rid] = ack
        else:
            errors.append(f"{rid}: HTTP {status}")
    out.send((acks, errors))
    out.close()


def write_at(port, auth, ids, rate):
    """Writes `ids` at `rate` per second, spread over enough writer processes; returns (acks, errors, seconds)."""
    n_writers = max(1, math.ceil(rate / 300))
    start = time.time_ns() + 50_000_000          # 50 ms for the processes to start
    period = int(1e9 / rate)
    procs = []
    for w in range(n_writers):
        # Writer w takes ids w, w+n, w+2n, ... : together they keep the overall schedule.
        mine = ids[w::n_writers]
        receive, send = mp.Pipe(duplex=False)
        p = mp.Process(target=writer, args=(port, auth, mine, start + w * period, period * n_writers, send))
        p.start()
        procs.append((p, receive))
    acks, errors = {}, []
    for p, receive in procs:
        a, e = receive.recv()
        acks.update(a)
        errors.extend(e)
        p.join()
    # From the first due time to the last answer, plus the one period the last write stands for.
    last_ack = max(acks.values()) if acks else time.time_ns()
    return acks, errors, (last_ack - start) / 1e9 + 1 / rate


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("db")
    parser.add_argument("rates")
    parser.add_argument("seconds", type=float)
    parser.add_argument("out_prefix")
    parser.add_argument("--auth", default="alice:pw")
    parser.add_argument("--drain", type=float, default=5.0)
    args = parser.parse_args()
    auth = "Basic " + base64.b64encode(args.auth.encode()).decode()
    rates = [int(r) for r in args.rates.split(",")]

    stop = mp.Event()
    receive, send = mp.Pipe(duplex=False)
    rp = mp.Process(target=reader, args=(args.db, stop, send))
    rp.start()

    def arrived(ids, timeout):
        """Waits (polling the DB every 50 ms) until every id is in the table; returns the missing ones."""
        deadline = time.monotonic() + timeout
        wanted = set(ids)
        while True:
            try:
                with sqlite3.connect(f"file:{args.db}?mode=ro", uri=True, timeout=1.0) as conn:
                    for chunk in range(0, len(ids), 500):
                        part = ids[chunk:chunk + 500]
                        q = "SELECT id FROM users WHERE id IN (%s)" % ",".join("?" * len(part))
                        wanted.difference_update(r[0] for r in conn.execute(q, part))
            except sqlite3.OperationalError:
                pass
            if not wanted or time.monotonic() > deadline:
                return wanted
            time.sleep(0.05)

    results = []
    try:
        acks, errors, _ = write_at(args.port, auth, ["warmup"], 1)
        if errors or arrived(["warmup"], 60):
            print(f"follow_latency: the warm-up record did not arrive in the target within 60 s ({errors})", file=sys.stderr)
            sys.exit(1)
        for rate in rates:
            ids = [f"r{rate}-{k:06d}" for k in range(int(rate * args.seconds))]
            acks, errors, seconds = write_at(args.port, auth, ids, rate)
            missing = arrived(list(acks), args.drain)
            results.append((rate, ids, acks, errors, seconds, missing))
    finally:
        stop.set()
        seen = receive.recv() if receive.poll(10) else {}
        rp.join(5)

    for rate, ids, acks, errors, seconds, missing in results:
        lat = sorted((seen[i] - acks[i]) / 1e6 for i in acks if i in seen)
        result = {
            "rate": rate, "written": len(acks), "seconds": round(seconds, 3),
            "achieved": round(len(acks) / seconds, 1) if seconds > 0 else 0,
            "seen": len(lat), "missing": len(missing),
            "p50_ms": percentile(lat, 50), "p99_ms": percentile(lat, 99), "max_ms": lat[-1] if lat else None,
            "errors": len(errors), "first_errors": errors[:5],
        }
        with open(f"{args.out_prefix}-{rate}.json", "w") as f:
            json.dump(result, f)
        print(f"follow_latency: {rate}/s: {result['written']} written at {result['achieved']}/s, p50 {fmt(result['p50_ms'])} ms,"
              f" p99 {fmt(result['p99_ms'])} ms, max {fmt(result['max_ms'])} ms, {result['missing']} missing,"
              f" {result['errors']} failed", file=sys.stderr)


if __name__ == "__main__":
    main()
