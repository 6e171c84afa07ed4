#!/usr/bin/env bash
# Ferry against its ceiling and Kinto 26.x: throughput benchmark (wrk, 16 connections).
#
# Usage:  bench/run.sh                 # from anywhere; DURATION=10s by default
#         DURATION=30s bench/run.sh
#         FERRY_BIN=/path/to/ferry CEILING_BIN=/path/to/ferry-ceiling bench/run.sh   # skip the release build
#         KINTO=0 bench/run.sh         # ceiling and Ferry only (quick A/B runs)
#
# What it does, one server after the other so they never compete for the
# 2 cores with each other (wrk itself does share the machine with the server):
#   1. builds Ferry and ferry-ceiling in release mode (.build-release/) unless
#      FERRY_BIN is set (then only ferry-ceiling, unless CEILING_BIN is set too),
#      installs wrk (apt) and Kinto 26.5 (pip, into bench/.venv) if missing;
#   2. the ceiling (bench/Ceiling): bare Hummingbird 2 answering the same three
#      lines with the same routing and JSON work and no storage; nothing to seed;
#   3. each other server on a free port with empty storage (Ferry: fresh temp
#      data dir; Kinto: memory backend), seeded with bucket `bench`, collection
#      `users` and $RECORDS records through /v1/batch (bench/seed.py); Kinto twice,
#      once "empty" ($KINTO_EMPTY_RECORDS records, just what the lines read) and
#      once seeded with $RECORDS;
#   4. three wrk lines on each: GET one record, GET a page of 100 records changed
#      since a mid timestamp, PUT one record (bench/put.lua); on Ferry the same
#      three lines again signed in with an account and with an API token, and
#      the two reads without credentials once the collection grants read to
#      system.Everyone;
#   5. prints Markdown tables: req/s, Ferry as a % of the ceiling and its ratio to
#      each Kinto, p50/p99 latencies, with the non-2xx and socket-error counts: a
#      line with errors is not a valid number.
# Every step is bounded by `timeout`, and every server is stopped on exit.
set -euo pipefail

cd "$(dirname "$0")/.."          # the repo root: every path below is relative to it
DURATION=${DURATION:-10s}
RECORDS=${RECORDS:-10000}
KINTO=${KINTO:-1}                 # 0: skip both Kinto runs
# "Empty" Kinto: just what the lines read — u00042 for GET, and after _since=<mid> (record
# 125) 124 records, so the list line still gets a full page of 100 and a next page.
KINTO_EMPTY_RECORDS=${KINTO_EMPTY_RECORDS:-250}
CONNECTIONS=16
THREADS=2
WORK=bench/.work                  # git-ignored scratch: kinto.ini, logs, wrk outputs
VENV=bench/.venv                  # git-ignored venv holding Kinto
USERPASS=bench:bench              # any user:password is a principal (basicauth)
AUTH="Basic $(printf %s "$USERPASS" | base64)"
RECORDS_PATH=/v1/buckets/bench/collections/users/records

. bench/lib.sh                     # log, find_ferry, stop_server, free_port, wait_ready, wrk_run, check_api, kinto_ini…

# ---- 1. tools -------------------------------------------------------------

find_ferry
find_ceiling

ensure_wrk
[ "$KINTO" = 0 ] || ensure_kinto "$VENV"   # sets KINTO_VERSION

# ---- helpers --------------------------------------------------------------

rm -rf "$WORK"
mkdir -p "$WORK"
FERRY_DATA=$(mktemp -d "${TMPDIR:-/tmp}/ferry-bench.XXXXXX")
SERVER_PID=""

cleanup() { stop_server; rm -rf "$FERRY_DATA"; }
trap cleanup EXIT
trap 'exit 130' INT TERM



# Results per [server,test]: req/s, "non2xx/socket" errors, average latency, p50 and p99 (ms).
declare -A RPS ERR LAT P50 P99
declare -a ACCOUNT_MS            # time of the 1st and 2nd request with the account, ms

run_wrk() {  # $1 server, $2 test name, $3 url, $4.. extra wrk args
  # The Authorization header is $WRK_AUTH, $AUTH when WRK_AUTH is unset, none when it is "".
  local server=$1 test=$2 url=$3; shift 3
  local out="$WORK/wrk-$server-$test.txt" rps lat non2xx sock p50 p99
  log "$server: $test ($DURATION)"
  wrk_run "$out" "$CONNECTIONS" "$THREADS" "${WRK_AUTH-$AUTH}" "$url" "$@"
  read -r rps lat non2xx sock < <(wrk_stats "$out")
  read -r p50 p99 < <(wrk_percentiles "$out")
  RPS[$server,$test]=$rps
  LAT[$server,$test]=$lat
  ERR[$server,$test]="$non2xx/$sock"
  P50[$server,$test]=$p50
  P99[$server,$test]=$p99
}

# The three lines, identical for every server. Reads run before the PUT line
# so they see exactly the seeded data set.
bench_lines() {  # $1 server name, $2 port, $3 _since value, $4 records the PUT line cycles through
  local server=$1 base="http://127.0.0.1:$2" mid=$3 records=$4
  # Sanity requests with curl before measuring (a full page of 100 for the list).
  check_api "$server" "$base$RECORDS_PATH" "$mid" "$AUTH"
  run_wrk "$server" get "$base$RECORDS_PATH/u00042"
  run_wrk "$server" list "$base$RECORDS_PATH?_since=$mid&_limit=100"
  BENCH_AUTH="$AUTH" BENCH_RECORDS="$records" BENCH_PATH="$RECORDS_PATH" \
    run_wrk "$server" put "$base$RECORDS_PATH" -s bench/put.lua
}

bench_server() {  # $1 server name, $2 port, $3 records to seed (default $RECORDS)
  local server=$1 port=$2 records=${3:-$RECORDS} mid
  log "$server: seeding $records records"
  mid=$(timeout 600 python3 bench/seed.py 127.0.0.1 "$port" "$USERPASS" "$records")
  MID=$mid
  bench_lines "$server" "$port" "$mid" "$records"
}

start_kinto() {  # $1 name (kinto-empty, kinto-seeded): a fresh Kinto (memory backend) in SERVER_PID, port in PORT
  PORT=$(free_port)
  log "starting Kinto $KINTO_VERSION as $1 on 127.0.0.1:$PORT (memory backend, waitress)"
  "$VENV/bin/kinto" start --ini "$INI" --port "$PORT" > "$WORK/$1.log" 2>&1 &
  SERVER_PID=$!
  wait_ready "$PORT" "$WORK/$1.log"
}

# The same lines on Ferry, signed in another way ($1: account, token or anonymous; $2 the
# Authorization header, "" for none). Anonymous has no PUT line: only reads are granted.
bench_auth() {  # $1 name, $2 Authorization header, $3 port
  local name=$1 header=$2 base="http://127.0.0.1:$3"
  check_api "ferry ($name)" "$base$RECORDS_PATH" "$MID" "$header"
  WRK_AUTH="$header" run_wrk "ferry-$name" get "$base$RECORDS_PATH/u00042"
  WRK_AUTH="$header" run_wrk "ferry-$name" list "$base$RECORDS_PATH?_since=$MID&_limit=100"
  [ -n "$header" ] || return 0
  WRK_AUTH="$header" BENCH_AUTH="$header" BENCH_RECORDS="$RECORDS" BENCH_PATH="$RECORDS_PATH" \
    run_wrk "ferry-$name" put "$base$RECORDS_PATH" -s bench/put.lua
}

# ---- 2. the ceiling ---------------------------------------------------------

# Bare Hummingbird, no storage: nothing to seed. Its page is the same for any query;
# a 13-digit _since keeps the request line as long as the other servers'.
PORT=$(free_port)
log "starting the ceiling on 127.0.0.1:$PORT ($CEILING)"
"$CEILING" --port "$PORT" > "$WORK/ceiling.log" 2>&1 &
SERVER_PID=$!
wait_ready "$PORT" "$WORK/ceiling.log"
bench_lines ceiling "$PORT" "$(date +%s%3N)" "$RECORDS"
stop_server

# ---- 3. Ferry -------------------------------------------------------------

# An API token for the authentication lines: the server gets only its SHA-256.
"$FERRY" token bench > "$WORK/token.txt"
TOKEN=$(awk '/^token:/ {print $2}' "$WORK/token.txt")
TOKEN_ENTRY=$(sed -n 's/^server: tokens: \["\(.*\)"\]$/\1/p' "$WORK/token.txt")
[ -n "$TOKEN" ] && [ -n "$TOKEN_ENTRY" ] || { echo "ferry token printed no token" >&2; exit 1; }

PORT=$(free_port)
log "starting Ferry on 127.0.0.1:$PORT ($FERRY)"
FERRY_TOKENS="$TOKEN_ENTRY" "$FERRY" serve --host 127.0.0.1 --port "$PORT" --data "$FERRY_DATA" --log-level warning \
  > "$WORK/ferry.log" 2>&1 &
SERVER_PID=$!
wait_ready "$PORT" "$WORK/ferry.log"
bench_server ferry "$PORT"
# Authentication cost: the same lines with an account (default 210,000 PBKDF2 rounds: only
# the first request pays, verified credentials are remembered) and with an API token.
# Both get write on the bucket, as the basicauth user has.
curl -fsS -o /dev/null -X PUT -H 'Content-Type: application/json' "http://127.0.0.1:$PORT/v1/accounts/benchacct" \
  -d '{"data": {"password": "bench account password"}}'
curl -fsS -o /dev/null -X PATCH -H "Authorization: $AUTH" -H 'Content-Type: application/json' \
  "http://127.0.0.1:$PORT/v1/buckets/bench" -d '{"permissions": {"write": ["account:benchacct", "token:bench"]}}'
ACCOUNT_AUTH="Basic $(printf %s 'benchacct:bench account password' | base64 -w0)"
# The first request with the account pays the PBKDF2 hash; the next ones find it remembered.
for i in 1 2; do
  ACCOUNT_MS[$i]=$(curl -fsS -o /dev/null -w '%{time_total}' -H "Authorization: $ACCOUNT_AUTH" \
    "http://127.0.0.1:$PORT$RECORDS_PATH/u00042" | awk '{ printf "%.1f", $1 * 1000 }')
done
bench_auth account "$ACCOUNT_AUTH" "$PORT"
bench_auth token "Bearer $TOKEN" "$PORT"
# Reads without credentials, last (so the lines above ran on exactly the same permissions).
curl -fsS -o /dev/null -X PATCH -H "Authorization: $AUTH" -H 'Content-Type: application/json' \
  "http://127.0.0.1:$PORT/v1/buckets/bench/collections/users" -d '{"permissions": {"read": ["system.Everyone"]}}'
bench_auth anonymous "" "$PORT"
stop_server

# ---- 4. Kinto, empty and seeded ---------------------------------------------

if [ "$KINTO" != 0 ]; then
  # basicauth, bucket creation for any authenticated user, logging at WARNING (kinto_ini in lib.sh).
  INI="$WORK/kinto.ini"
  kinto_ini "$VENV" "$INI" --backend memory --cache-backend memory
  # A fresh process each time: the memory backend starts empty.
  start_kinto kinto-empty
  bench_server kinto-empty "$PORT" "$KINTO_EMPTY_RECORDS"
  stop_server
  start_kinto kinto-seeded
  bench_server kinto-seeded "$PORT"
  stop_server
fi

# ---- 5. report ------------------------------------------------------------

valid() { wrk_valid "$1"; }          # $1 "non2xx/socket"
cell() {  # $1 server, $2 test: req/s, or INVALID with the error counts
  wrk_cell "${RPS[$1,$2]}" "${ERR[$1,$2]}"
}
ratio() {  # $1 server, $2 other server, $3 test, $4 "%" or "×": $1's req/s against $2's
  if valid "${ERR[$1,$3]}" && valid "${ERR[$2,$3]}"; then
    awk -v a="${RPS[$1,$3]}" -v b="${RPS[$2,$3]}" -v how="$4" 'BEGIN {
      if (b <= 0) print "n/a"; else if (how == "%") printf "%.0f %%", 100 * a / b; else printf "%.1f×", a / b }'
  else
    echo "n/a (errors)"
  fi
}
latencies() { echo "${P50[$1,$2]} / ${P99[$1,$2]}"; }   # $1 server, $2 test: "p50 / p99" in ms

echo
if [ "$KINTO" = 0 ]; then
  echo "Ferry ($FERRY) against its ceiling (bare Hummingbird, no storage) — $RECORDS records," \
       "wrk -c $CONNECTIONS -t $THREADS -d $DURATION, $(nproc) cores; Kinto skipped (KINTO=0)"
else
  echo "Ferry ($FERRY) against its ceiling (bare Hummingbird, no storage) and Kinto $KINTO_VERSION" \
       "(memory backend; empty: $KINTO_EMPTY_RECORDS records, seeded: $RECORDS) — $RECORDS records in Ferry," \
       "wrk -c $CONNECTIONS -t $THREADS -d $DURATION, $(nproc) cores"
fi
echo
INVALID=0
SERVERS="ceiling ferry"
[ "$KINTO" = 0 ] || SERVERS="$SERVERS kinto-empty kinto-seeded"
if [ "$KINTO" = 0 ]; then
  echo "| test | ceiling req/s | ferry req/s | ferry % of ceiling | ceiling p50 / p99 ms | ferry p50 / p99 ms |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: |"
else
  echo "| test | ceiling req/s | ferry req/s | ferry % of ceiling | kinto (empty) req/s | kinto (seeded) req/s |" \
       "ferry ÷ kinto (empty) | ferry ÷ kinto (seeded) | ceiling p50 / p99 ms | ferry p50 / p99 ms |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
fi
for test in get list put; do
  row="| $(line_name "$test") | $(cell ceiling $test) | $(cell ferry $test) | $(ratio ferry ceiling $test %) |"
  if [ "$KINTO" != 0 ]; then
    row="$row $(cell kinto-empty $test) | $(cell kinto-seeded $test) |"
    row="$row $(ratio ferry kinto-empty $test ×) | $(ratio ferry kinto-seeded $test ×) |"
  fi
  row="$row $(latencies ceiling $test) | $(latencies ferry $test) |"
  case "$row" in *INVALID*) INVALID=1 ;; esac
  echo "$row"
done
echo
echo "Authentication cost on Ferry (same server, same data; ratios to basicauth):"
echo
echo "| test | basicauth req/s | account req/s | token req/s | anonymous req/s |" \
     "account ÷ basicauth | token ÷ basicauth | anonymous ÷ basicauth |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for test in get list put; do
  ratio_of() {  # $1 server: its req/s ÷ basicauth's ("—" for a line not run)
    if [ -z "${RPS[$1,$test]:-}" ]; then echo "—"
    elif valid "${ERR[$1,$test]}" && valid "${ERR[ferry,$test]}"; then
      awk -v a="${RPS[$1,$test]}" -v b="${RPS[ferry,$test]}" 'BEGIN { if (b > 0) printf "%.2f×", a / b; else print "n/a" }'
    else echo "n/a (errors)"; fi; }
  acell=$(cell ferry-account $test); tcell=$(cell ferry-token $test); ncell="—"
  [ -z "${RPS[ferry-anonymous,$test]:-}" ] || ncell=$(cell ferry-anonymous $test)
  case "$acell$tcell$ncell" in *INVALID*) INVALID=1 ;; esac
  echo "| $test | $(cell ferry $test) | $acell | $tcell | $ncell |" \
       "$(ratio_of ferry-account) | $(ratio_of ferry-token) | $(ratio_of ferry-anonymous) |"
done
echo
echo "First request with the account (PBKDF2, 210,000 rounds): ${ACCOUNT_MS[1]} ms; the second: ${ACCOUNT_MS[2]} ms."
echo
echo "| test | server | avg latency | p50 ms | p99 ms | non-2xx | socket errors |"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: |"
for test in get list put; do
  for server in ceiling ferry ferry-account ferry-token ferry-anonymous kinto-empty kinto-seeded; do
    [ -n "${RPS[$server,$test]:-}" ] || continue
    echo "| $test | $server | ${LAT[$server,$test]} | ${P50[$server,$test]} | ${P99[$server,$test]} |" \
         "${ERR[$server,$test]%/*} | ${ERR[$server,$test]#*/} |"
  done
done
echo
logs=""; for server in $SERVERS; do logs="${logs:+$logs, }$WORK/$server.log"; done
echo "wrk outputs: $WORK/wrk-*.txt; server logs: $logs"
# Exit 2 when a line had errors, so a script or CI calling this notices.
if [ "$INVALID" -ne 0 ]; then echo "some lines had errors: their req/s are not valid" >&2; exit 2; fi
