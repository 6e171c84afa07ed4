#!/usr/bin/env bash
# The server's work per reconciliation round (issue 17): the time of one POST .../reconcile
# on a collection of N records, by what happened since the previous round. The server keeps
# each collection's items and applies the writes since (ReconcileItemsCache): a round costs
# the writes since, not the collection. The first round of a collection (cold) reads it in
# full; before the items were kept up to date, every round after any write cost that much
# (the kept items were dropped when the collection's timestamp moved), so the "x cold" column
# is the ratio to what those rounds cost before.
#
# Usage:  bench/reconcile_rounds.sh                    # builds Ferry (release) first
#         FERRY_BIN=/path/to/ferry N=200000 bench/reconcile_rounds.sh
#
# The message is the one an exchange starts with: one fingerprint over every id (a wrong one,
# so the server sums the collection and splits it 16 ways). Writes are PUTs of existing
# records (new contents) in batches of 25, not timed. Outputs stay in bench/.work/reconcile-rounds/.
set -euo pipefail

cd "$(dirname "$0")/.."
N=${N:-200000}
WORK=bench/.work/reconcile-rounds
USERPASS=alice:pw
SERVER_PID=""

. bench/lib.sh

find_ferry
rm -rf "$WORK" && mkdir -p "$WORK"
trap 'stop_server' EXIT

python3 bench/gen_users.py "$N" "$WORK" >/dev/null
PORT=$(free_port)
"$FERRY" serve --port "$PORT" --data "$WORK/data" --log-level warning >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
wait_ready "$PORT" "$WORK/server.log"
COLLECTION="http://127.0.0.1:$PORT/v1/buckets/main/collections/users"
export FERRY_SOURCE_AUTH=$USERPASS FERRY_TARGET_AUTH=$USERPASS
log "loading $N records into the server"
"$FERRY" sync "file:$WORK/users.jsonl" "$COLLECTION" --json --state "$WORK/state.db" >"$WORK/load.json"

python3 - "$PORT" "$USERPASS" "$N" <<'PY'
import base64, http.client, json, os, random, statistics, sys, time
port, auth, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
headers = {"Authorization": "Basic " + base64.b64encode(auth.encode()).decode()}
conn = http.client.HTTPConnection("127.0.0.1", port)
base = "/v1/buckets/main/collections/users"
width = max(7, len(str(n)))
rng = random.Random(17)

def request(method, path, body=None, extra=None):
    h = dict(headers, **(extra or {}))
    conn.request(method, path, body=body, headers=h)
    r = conn.getresponse()
    data = r.read()
    if r.status >= 300:
        raise SystemExit(f"{method} {path}: {r.status} {data[:300]!r}")
    return data

def round_ms():
    body = bytes([0xF1, 0x00, 0x01]) + os.urandom(16)
    t = time.perf_counter()
    reply = request("POST", base + "/reconcile", body, {"Content-Type": "application/vnd.ferry.reconcile"})
    elapsed = (time.perf_counter() - t) * 1000
    assert reply[0] == 0xF1 and len(reply) > 100, "the server should split the collection"
    return elapsed

def write(count):
    for start in range(0, count, 25):
        reqs = [{"method": "PUT", "path": base + "/records/u%0*d" % (width, rng.randrange(1, n + 1)),
                 "body": {"data": {"username": "w%d" % rng.randrange(10**9), "age": rng.randrange(100)}}}
                for _ in range(min(25, count - start))]
        request("POST", "/v1/batch", json.dumps({"requests": reqs}).encode(), {"Content-Type": "application/json"})

rows = []
cold = round_ms()
rows.append(("first round (cold: reads the collection)", 1, cold))
rows.append(("no write since the last round", 20, statistics.median(round_ms() for _ in range(20))))
for writes, reps in [(1, 10), (25, 5), (100, 5), (1000, 3), (10000, 1)]:
    times = []
    for _ in range(reps):
        write(writes)
        times.append(round_ms())
    rows.append((f"{writes} writes since the last round", reps, statistics.median(times)))
print()
print(f"| N | since the last round | rounds timed | median ms per round | x cold (a round after any write, before) |")
print("| --- | --- | --- | --- | --- |")
for what, reps, ms in rows:
    print(f"| {n} | {what} | {reps} | {ms:.1f} | {ms / cold:.3f} |")
PY
