#!/usr/bin/env bash
# Statements PostgreSQL receives per request from `ferry serve` (issue 14): the three lines of
# bench/server_pg.sh, each sent a few times, counted from PostgreSQL's own log
# (`log_statement = all`), split into those of the request's connection and those of the
# process's timestamp clock (TimestampClock: its allocations, `WITH old AS …`).
#
# Usage:  FERRY_BIN=/path/to/ferry bench/pg_statements.sh          # one binary
#         FERRY_BIN=a FERRY_BIN_B=b bench/pg_statements.sh          # two, side by side
#         N=20 bench/pg_statements.sh                                # requests per line (default 10)
#
# One throwaway PostgreSQL server (start_pg in lib.sh); per binary a fresh database, bucket
# `bench`, collection `users` and 200 records seeded through /batch, then, with statement
# logging on for that database only: N GETs of one record, N pages of 100 `_since` a mid
# timestamp (of 200), N PUTs that replace a record (bench/put.lua's request), N PUTs of new
# records. Prints statements per request (the log's `statement:`/`execute` lines; a named
# prepared statement counts once per execution, never for its one-time parse).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-10}
. bench/lib.sh
. bench/pg_lib.sh

BINS=("${FERRY_BIN:?set FERRY_BIN to a ferry binary}")
[ -n "${FERRY_BIN_B:-}" ] && BINS+=("$FERRY_BIN_B")
pg_scratch pg-statements

start_pg
AUTH="Basic $(printf %s bench:bench | base64)"
LOG="$PG_DIR/server.log"

count_since() {  # $1 byte offset into the log, $2 database: "total clock" statements since
  tail -c +"$(( $1 + 1 ))" "$LOG" | awk -v db="$2" '
    /pg_try_advisory_lock|: SELECT 1$/ { next }   # the leader election, every 2 s: not a request
    /LOG:  (statement|execute [^:]*):/ {
      n++
      if ($0 ~ /WITH old AS \(SELECT last_modified FROM timestamps/) c++
    }
    END { printf "%d %d\n", n, c }'
}

declare -A RESULT
for b in "${!BINS[@]}"; do
  bin=${BINS[$b]}
  db="stmts$b"
  pg_psql postgres -c "CREATE DATABASE $db"
  port=$(free_port)
  mkdir -p "$SCRATCH/data$b"
  FERRY_DATABASE=$(pg_url "$db") FERRY_SECRET=0123456789abcdef0123456789abcdef "$bin" serve --host 127.0.0.1 --port "$port" \
    --data "$SCRATCH/data$b" --log-level warning > "$SCRATCH/serve$b.log" 2>&1 &
  SERVER_PID=$!
  wait_ready "$port" "$SCRATCH/serve$b.log"
  base="http://127.0.0.1:$port/v1/buckets/bench/collections/users/records"
  curl -sf -X PUT -H "Authorization: $AUTH" "http://127.0.0.1:$port/v1/buckets/bench" > /dev/null
  curl -sf -X PUT -H "Authorization: $AUTH" "http://127.0.0.1:$port/v1/buckets/bench/collections/users" > /dev/null
  python3 - "$port" "$AUTH" <<'EOF'
import json, sys, urllib.request
port, auth = sys.argv[1], sys.argv[2]
reqs = [{"method": "PUT", "path": "/buckets/bench/collections/users/records/u%05d" % i,
         "body": {"data": {"username": "user%05d" % i, "age": 20 + i % 50}}} for i in range(200)]
r = urllib.request.Request("http://127.0.0.1:%s/v1/batch" % port, data=json.dumps({"requests": reqs}).encode(),
                           headers={"Authorization": auth, "Content-Type": "application/json"}, method="POST")
urllib.request.urlopen(r).read()
EOF
  mid=$(curl -sf -H "Authorization: $AUTH" "$base/u00100" | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["last_modified"])')
  # Warm the pool's connections (their prepared statements are made on first use).
  for i in $(seq 30); do curl -sf -H "Authorization: $AUTH" "$base/u00001" > /dev/null; curl -sf -H "Authorization: $AUTH" "$base?_since=$mid&_limit=100" > /dev/null; done
  pg_psql postgres -c "ALTER DATABASE $db SET log_statement = 'all'"
  # New sessions only: restart the server so its connections take the setting.
  stop_pid "$SERVER_PID"
  FERRY_DATABASE=$(pg_url "$db") FERRY_SECRET=0123456789abcdef0123456789abcdef "$bin" serve --host 127.0.0.1 --port "$port" \
    --data "$SCRATCH/data$b" --log-level warning >> "$SCRATCH/serve$b.log" 2>&1 &
  SERVER_PID=$!
  wait_ready "$port" "$SCRATCH/serve$b.log"
  # Warm again (prepared statements of the new connections), one request at a time over the pool.
  for i in $(seq 30); do
    curl -sf -H "Authorization: $AUTH" "$base/u00001" > /dev/null
    curl -sf -H "Authorization: $AUTH" "$base?_since=$mid&_limit=100" > /dev/null
    curl -sf -X PUT -H "Authorization: $AUTH" -H 'Content-Type: application/json' -d '{"data":{"age":1}}' "$base/u00002" > /dev/null
    curl -sf -X PUT -H "Authorization: $AUTH" -H 'Content-Type: application/json' -d '{"data":{"age":1}}' "$base/warm$i" > /dev/null
  done
  sleep 0.5
  for line in get page put new; do
    start=$(stat -c %s "$LOG")
    for i in $(seq "$N"); do
      case $line in
        get)  curl -sf -H "Authorization: $AUTH" "$base/u00042" > /dev/null ;;
        page) curl -sf -H "Authorization: $AUTH" "$base?_since=$mid&_limit=100" > /dev/null ;;
        put)  curl -sf -X PUT -H "Authorization: $AUTH" -H 'Content-Type: application/json' \
                -d "{\"data\":{\"username\":\"user$i\",\"age\":$((18 + i))}}" "$base/u000$((10 + i))" > /dev/null ;;
        new)  curl -sf -X PUT -H "Authorization: $AUTH" -H 'Content-Type: application/json' \
                -d "{\"data\":{\"username\":\"new$i\",\"age\":$((18 + i))}}" "$base/new$i" > /dev/null ;;
      esac
    done
    sleep 0.5   # the log is written by the server's backends
    read -r total clock < <(count_since "$start" "$db")
    RESULT[$b,$line]=$(awk -v t="$total" -v c="$clock" -v n="$N" 'BEGIN { printf "%.1f + %.1f", (t - c) / n, c / n }')
  done
  stop_pid "$SERVER_PID"
  SERVER_PID=""
done

echo
echo "Statements per request (on the request's connection + on the timestamp clock's), $N requests a line:"
echo
header="| request |"; rule="| --- |"
for b in "${!BINS[@]}"; do header+=" ${BINS[$b]} |"; rule+=" ---: |"; done
echo "$header"; echo "$rule"
for line in get page put new; do
  case $line in
    get) name="GET one record" ;; page) name="GET records?_since=<mid>&_limit=100" ;;
    put) name="PUT one record (replace)" ;; new) name="PUT one record (new)" ;;
  esac
  row="| $name |"
  for b in "${!BINS[@]}"; do row+=" ${RESULT[$b,$line]} |"; done
  echo "$row"
done
