#!/usr/bin/env bash
# Ferry vs Kinto 26.x throughput benchmark (wrk, 16 connections).
#
# Usage:  bench/run.sh                 # from anywhere; DURATION=10s by default
#         DURATION=30s bench/run.sh
#         FERRY_BIN=/path/to/ferry bench/run.sh   # skip the release build
#
# What it does, one server after the other so they never compete for the
# 2 cores with each other (wrk itself does share the machine with the server):
#   1. builds Ferry in release mode (.build-release/) unless FERRY_BIN is set,
#      installs wrk (apt) and Kinto 26.5 (pip, into bench/.venv) if missing;
#   2. starts the server on a free port with empty storage (Ferry: fresh temp
#      data dir; Kinto: memory backend), seeds bucket `bench`, collection
#      `users` and $RECORDS records through /v1/batch (bench/seed.py);
#   3. runs three wrk lines: GET one record, GET a page of 100 records changed
#      since a mid timestamp, PUT one record (bench/put.lua); on Ferry the same
#      three lines again signed in with an account and with an API token, and
#      the two reads without credentials once the collection grants read to
#      system.Everyone;
#   4. prints a Markdown table of req/s and the ratio Ferry/Kinto, with the
#      non-2xx and socket-error counts: a line with errors is not a valid number.
# Every step is bounded by `timeout`, and both servers are stopped on exit.
set -euo pipefail

cd "$(dirname "$0")/.."          # the repo root: every path below is relative to it
DURATION=${DURATION:-10s}
RECORDS=${RECORDS:-10000}
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

ensure_wrk
ensure_kinto "$VENV"               # sets KINTO_VERSION

# ---- helpers --------------------------------------------------------------

rm -rf "$WORK"
mkdir -p "$WORK"
FERRY_DATA=$(mktemp -d "${TMPDIR:-/tmp}/ferry-bench.XXXXXX")
SERVER_PID=""

cleanup() { stop_server; rm -rf "$FERRY_DATA"; }
trap cleanup EXIT
trap 'exit 130' INT TERM



# Results: RPS_<server>_<test>, ERR_<server>_<test>, LAT_<server>_<test>.
declare -A RPS ERR LAT
declare -a ACCOUNT_MS            # time of the 1st and 2nd request with the account, ms

run_wrk() {  # $1 server, $2 test name, $3 url, $4.. extra wrk args
  # The Authorization header is $WRK_AUTH, $AUTH when WRK_AUTH is unset, none when it is "".
  local server=$1 test=$2 url=$3; shift 3
  local out="$WORK/wrk-$server-$test.txt" rps lat non2xx sock
  log "$server: $test ($DURATION)"
  wrk_run "$out" "$CONNECTIONS" "$THREADS" "${WRK_AUTH-$AUTH}" "$url" "$@"
  read -r rps lat non2xx sock < <(wrk_stats "$out")
  RPS[$server,$test]=$rps
  LAT[$server,$test]=$lat
  ERR[$server,$test]="$non2xx/$sock"
}

# The three lines, identical for both servers. Reads run before the PUT line
# so they see exactly the seeded data set on both servers.
bench_server() {  # $1 server name, $2 port
  local server=$1 port=$2 base="http://127.0.0.1:$2"
  log "$server: seeding $RECORDS records"
  local mid
  mid=$(timeout 600 python3 bench/seed.py 127.0.0.1 "$port" "$USERPASS" "$RECORDS")
  MID=$mid
  # Sanity requests with curl before measuring (a full page of 100 for the list).
  check_api "$server" "$base$RECORDS_PATH" "$mid" "$AUTH"
  run_wrk "$server" get "$base$RECORDS_PATH/u00042"
  run_wrk "$server" list "$base$RECORDS_PATH?_since=$mid&_limit=100"
  BENCH_AUTH="$AUTH" BENCH_RECORDS="$RECORDS" BENCH_PATH="$RECORDS_PATH" \
    run_wrk "$server" put "$base$RECORDS_PATH" -s bench/put.lua
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

# ---- 2. Ferry -------------------------------------------------------------

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

# ---- 3. Kinto -------------------------------------------------------------

# basicauth, bucket creation for any authenticated user, logging at WARNING (kinto_ini in lib.sh).
INI="$WORK/kinto.ini"
kinto_ini "$VENV" "$INI" --backend memory --cache-backend memory

PORT=$(free_port)
log "starting Kinto $KINTO_VERSION on 127.0.0.1:$PORT (memory backend, waitress)"
"$VENV/bin/kinto" start --ini "$INI" --port "$PORT" > "$WORK/kinto.log" 2>&1 &
SERVER_PID=$!
wait_ready "$PORT" "$WORK/kinto.log"
bench_server kinto "$PORT"
stop_server

# ---- 4. report ------------------------------------------------------------

valid() { wrk_valid "$1"; }          # $1 "non2xx/socket"
cell() {  # $1 server, $2 test: req/s, or INVALID with the error counts
  wrk_cell "${RPS[$1,$2]}" "${ERR[$1,$2]}"
}

echo
echo "Ferry ($FERRY) vs Kinto $KINTO_VERSION (memory backend) — $RECORDS records," \
     "wrk -c $CONNECTIONS -t $THREADS -d $DURATION, $(nproc) cores"
echo
INVALID=0
echo "| test | ferry req/s | kinto req/s | ratio |"
echo "| --- | ---: | ---: | ---: |"
for test in get list put; do
  name=$(line_name "$test")
  if valid "${ERR[ferry,$test]}" && valid "${ERR[kinto,$test]}"; then
    ratio=$(awk -v f="${RPS[ferry,$test]}" -v k="${RPS[kinto,$test]}" \
      'BEGIN { if (k > 0) printf "%.1f×", f / k; else print "n/a" }')
  else
    ratio="n/a (errors)"
  fi
  fcell=$(cell ferry $test); kcell=$(cell kinto $test)
  case "$fcell$kcell" in *INVALID*) INVALID=1 ;; esac
  echo "| $name | $fcell | $kcell | $ratio |"
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
echo "| test | server | avg latency | non-2xx | socket errors |"
echo "| --- | --- | ---: | ---: | ---: |"
for test in get list put; do
  for server in ferry ferry-account ferry-token ferry-anonymous kinto; do
    [ -n "${RPS[$server,$test]:-}" ] || continue
    echo "| $test | $server | ${LAT[$server,$test]} | ${ERR[$server,$test]%/*} | ${ERR[$server,$test]#*/} |"
  done
done
echo
echo "wrk outputs: $WORK/wrk-*.txt; server logs: $WORK/ferry.log, $WORK/kinto.log"
# Exit 2 when a line had errors, so a script or CI calling this notices.
if [ "$INVALID" -ne 0 ]; then echo "some lines had errors: their req/s are not valid" >&2; exit 2; fi
