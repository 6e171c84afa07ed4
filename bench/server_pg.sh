#!/usr/bin/env bash
# The Ferry server vs Kinto 26.x, both on PostgreSQL, with 1 and 2 server processes
# (wrk, 16 connections in all). Issue 6: Ferry at least 10× Kinto.
#
# Usage:  bench/server_pg.sh                          # DURATION=10s, RECORDS=10000
#         DURATION=30s bench/server_pg.sh
#         FERRY_BIN=/path/to/ferry bench/server_pg.sh  # skip the release build
#         LINEUPS="ferry1 kinto1" bench/server_pg.sh   # only some line-ups
#
# What it does:
#   1. builds Ferry in release mode (.build-release/) unless FERRY_BIN is set,
#      installs wrk (apt) and Kinto 26.5 with its PostgreSQL extra (pip, into
#      bench/.venv) if missing; starts one throwaway PostgreSQL server (initdb +
#      pg_ctl on a temporary folder and a free port, default settings; start_pg
#      in lib.sh) that every line-up uses;
#   2. runs four line-ups one after the other, never two at once: Ferry with 1
#      and 2 `ferry serve` processes, Kinto with 1 and 2 `kinto start` (waitress,
#      4 threads each) processes; each line-up gets a database of its own, made
#      empty, that all its processes share;
#   3. seeds bucket `bench`, collection `users` and $RECORDS records through the
#      first process (/v1/batch, bench/seed.py), checks with curl that every
#      process answers the record and a full page of 100 (so the second process
#      does read the shared database), runs ANALYZE on the database (ANALYZE=0:
#      not), then times three lines: GET one record,
#      GET a page of 100 records changed since a mid timestamp, PUT one record
#      (bench/put.lua). One process: one wrk, 16 connections, 2 threads. Two
#      processes: two wrk at the same time, 8 connections and 1 thread each, one
#      per process (the PUT lines start at opposite ends of the id range); their
#      req/s and errors are summed;
#   4. prints a Markdown table of req/s, the ratios Ferry ÷ Kinto and 2 ÷ 1
#      processes, the latencies and error counts, and the load average (uptime)
#      before and after each line-up, and during the PUT line how many backends
#      wait for a lock (pg_stat_activity, sampled every 0.2 s: writers that queue
#      on one row show there). req/s counts 2xx answers; Kinto's 409
#      "please retry" answers to writes that meet in one millisecond are counted
#      apart (see run_line). A line with any other non-2xx answer or a socket
#      error is INVALID (exit status 2).
# Every step is bounded by `timeout`; servers and PostgreSQL are stopped and
# their folders removed on exit, Ctrl-C included.
set -euo pipefail

cd "$(dirname "$0")/.."          # the repo root: every path below is relative to it
DURATION=${DURATION:-10s}
RECORDS=${RECORDS:-10000}
LINEUPS=${LINEUPS:-ferry1 ferry2 kinto1 kinto2}
ANALYZE=${ANALYZE:-1}             # 0: time the lines on tables PostgreSQL has no statistics for yet
CONNECTIONS=16                    # in all: 16 for one process, 8 + 8 for two
WORK=bench/.work/server_pg        # git-ignored scratch: kinto.ini, logs, wrk outputs
VENV=bench/.venv                  # git-ignored venv holding Kinto
USERPASS=bench:bench              # any user:password is a principal (basicauth)
AUTH="Basic $(printf %s "$USERPASS" | base64)"
RECORDS_PATH=/v1/buckets/bench/collections/users/records
# Kinto's SQLAlchemy pools: one engine for storage + permission (same URL), one for
# the cache. waitress runs 4 threads, so 10 connections a pool is never the limit;
# Ferry's pool is 10 connections a process too (its default).
KINTO_POOL_SIZE=10

. bench/lib.sh                     # log, find_ferry, stop_pid, free_port, wait_ready, start_pg, wrk_run, check_api, kinto_ini…

# ---- 1. tools and PostgreSQL ------------------------------------------------

find_ferry
ensure_wrk
ensure_kinto "$VENV" postgresql    # sets KINTO_VERSION

rm -rf "$WORK"
mkdir -p "$WORK"
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/ferry-bench-server-pg.XXXXXX")   # Ferry's --data folders
SERVER_PID=""
SERVERS=()                        # pids of the running line-up's servers
WRKS=()                           # pids of the running line's wrk (their subshells)

stop_servers() {
  local pid
  for pid in "${SERVERS[@]}"; do stop_pid "$pid" || true; done
  SERVERS=()
  SERVER_PID=""
}
stop_wrks() {  # on Ctrl-C during a line: each wrk's `timeout` passes the TERM on to wrk
  local pid t
  for pid in "${WRKS[@]}"; do
    for t in $(pgrep -P "$pid" 2>/dev/null || true); do kill "$t" 2>/dev/null || true; done
    kill "$pid" 2>/dev/null || true
  done
  WRKS=()
}
cleanup() { stop_wrks; stop_servers; stop_pg; rm -rf "$SCRATCH"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

start_pg
PG_VERSION=$(PGCONNECT_TIMEOUT=10 pg_psql postgres -c 'SHOW server_version' | awk '{ print $1 }')
log "PostgreSQL $PG_VERSION on 127.0.0.1:$PG_PORT ($PG_DIR)"

fresh_db() {  # $1 database: drop it if there, create it empty
  # Bounded by the server (pg_psql is a function, which `timeout` cannot run).
  PGCONNECT_TIMEOUT=10 PGOPTIONS='-c statement_timeout=60000' \
    pg_psql postgres -c "DROP DATABASE IF EXISTS $1" -c "CREATE DATABASE $1"
}

# ---- servers ------------------------------------------------------------------

declare -a PORTS
# One server secret for every Ferry process: basicauth user ids are an HMAC keyed with
# it, so processes with secrets of their own (each generates one into its --data
# folder) would see the same user as different principals and answer 403 to each
# other's objects. (Kinto's processes share userid_hmac_secret through their kinto.ini.)
FERRY_SECRET=$(python3 -c 'import secrets; print(secrets.token_hex(32))')

start_ferry() {  # $1 database, $2 processes: sets PORTS and SERVERS
  local db=$1 n=$2 i port
  PORTS=()
  for i in $(seq "$n"); do
    port=$(free_port)
    mkdir -p "$SCRATCH/$db-$i"
    log "starting Ferry $i/$n on 127.0.0.1:$port (database $db)"
    # The URL and the secret in the environment, not in flags (ps shows flags).
    FERRY_DATABASE=$(pg_url "$db") FERRY_SECRET=$FERRY_SECRET "$FERRY" serve --host 127.0.0.1 --port "$port" --data "$SCRATCH/$db-$i" \
      --log-level warning > "$WORK/$db-$i.log" 2>&1 &
    SERVER_PID=$!
    SERVERS+=("$SERVER_PID")
    # One at a time: the first migrates the schema.
    wait_ready "$port" "$WORK/$db-$i.log"
    PORTS+=("$port")
  done
}

start_kinto() {  # $1 database, $2 processes: sets PORTS and SERVERS
  local db=$1 n=$2 i port ini="$WORK/$1.ini" url
  url="postgresql://$PG_USER:$PG_PASSWORD@127.0.0.1:$PG_PORT/$db"
  kinto_ini "$VENV" "$ini" --backend postgresql --cache-backend postgresql
  sed -i \
    -e "s#^kinto\\.\\(storage\\|permission\\|cache\\)_url = .*#kinto.\\1_url = $url#" \
    -e "s#^\\# kinto\\.\\(storage\\|permission\\|cache\\)_pool_size = .*#kinto.\\1_pool_size = $KINTO_POOL_SIZE#" \
    "$ini"
  [ "$(grep -c "^kinto\\.[a-z]*_url = $url\$" "$ini")" = 3 ] || { echo "kinto.ini: the three backend URLs were not set" >&2; exit 1; }
  [ "$(grep -c "^kinto\\.[a-z]*_pool_size = $KINTO_POOL_SIZE\$" "$ini")" = 3 ] || { echo "kinto.ini: the pool sizes were not set" >&2; exit 1; }
  log "kinto migrate (database $db)"
  timeout 300 "$VENV/bin/kinto" migrate --ini "$ini" < /dev/null > "$WORK/$db-migrate.log" 2>&1 \
    || { cat "$WORK/$db-migrate.log" >&2; exit 1; }
  PORTS=()
  for i in $(seq "$n"); do
    port=$(free_port)
    log "starting Kinto $KINTO_VERSION $i/$n on 127.0.0.1:$port (database $db, waitress)"
    "$VENV/bin/kinto" start --ini "$ini" --port "$port" > "$WORK/$db-$i.log" 2>&1 &
    SERVER_PID=$!
    SERVERS+=("$SERVER_PID")
    wait_ready "$port" "$WORK/$db-$i.log"
    PORTS+=("$port")
  done
}

# ---- measuring ------------------------------------------------------------------

# Per line-up and test, summed over the processes: RPS 2xx answers a second, ALL
# answers a second, ERR "non2xx/socket" (409s left out), CONFLICT the 409 answers;
# LAT average latency, one per wrk ("a / b").
# Kinto answers 409 "Integrity constraint violated, please retry" when two writes to
# one collection get the same millisecond (its timestamp trigger; unique index on
# parent_id, resource_name, last_modified): that is its documented behaviour under
# concurrent writers, not a fault of the benchmark, so those lines stay valid, their
# 409s are counted apart (put.lua's BENCH_STATUS tally) and only the 2xx answers
# count as req/s. Any other non-2xx answer or socket error makes the line INVALID.
declare -A RPS ALL LAT ERR CONFLICT LOAD WAITING

lock_waits() {  # $1 database: every 0.2 s until killed, how many of its backends wait for a lock, and on what
  # ("count|event,event,…": transactionid and tuple are row locks, object is NOTIFY's queue at commit)
  while :; do
    pg_psql "$1" -c "SELECT count(*), coalesce(string_agg(wait_event, ','), '') FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'" 2>/dev/null || true
    sleep 0.2
  done
}

run_line() {  # $1 line-up, $2 test, $3 path and query, $4.. extra wrk args
  local lineup=$1 test=$2 path=$3 n=${#PORTS[@]} i ok=0 all=0 lat="" non2xx=0 sock=0 c409=0 r l e s q c out
  shift 3
  log "$lineup: $test ($DURATION, $n wrk)"
  for i in $(seq 0 $((n - 1))); do
    out="$WORK/wrk-$lineup-$test-$i.txt"
    # The PUT lines of two wrk start at opposite ends of the id range.
    BENCH_STATUS=1 BENCH_OFFSET=$(( i * RECORDS / n )) BENCH_AUTH="$AUTH" BENCH_RECORDS="$RECORDS" BENCH_PATH="$RECORDS_PATH" \
      wrk_run "$out" $((CONNECTIONS / n)) $((2 / n)) "$AUTH" "http://127.0.0.1:${PORTS[$i]}$path" "$@" &
    WRKS+=("$!")
  done
  # While the writes run: how many of the line-up's backends wait for a lock (a row lock that
  # writers queue on shows here), sampled.
  local sampler="" samples="$WORK/lock-waits-$lineup-$test.txt"
  if [ "$test" = put ]; then lock_waits "$lineup" > "$samples" & sampler=$!; fi
  for i in "${!WRKS[@]}"; do
    wait "${WRKS[$i]}" || { echo "$lineup: $test: wrk $i failed" >&2; exit 1; }
  done
  WRKS=()
  if [ -n "$sampler" ]; then
    kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null || true
    # The mean, then the lock kinds waited on, most waited first (share of all waits).
    WAITING[$lineup,$test]=$(awk -F'|' '{ s += $1; n++; k = split($2, e, ","); for (i = 1; i <= k; i++) kind[e[i]]++ }
      END { printf "%.1f", n ? s / n : 0; sep = " ("
            for (x in kind) list[x] = kind[x]
            while (length(list) > 0) { best = ""; for (x in list) if (best == "" || list[x] > list[best]) best = x
                                       printf "%s%s %d %%", sep, best, 100 * list[best] / s; sep = ", "; delete list[best] }
            if (sep == ", ") printf ")" }' "$samples")
  fi
  for i in $(seq 0 $((n - 1))); do
    out="$WORK/wrk-$lineup-$test-$i.txt"
    read -r r l e s < <(wrk_stats "$out")
    q=$(awk '$2 == "requests" && $3 == "in" { print $1 }' "$out")      # "4681 requests in 10.01s, …"
    c=$(awk '$1 == "status" && $2 == "409:" { print $3 }' "$out")
    # 2xx a second: wrk's req/s times the share of answers that were 2xx.
    ok=$(awk -v a="$ok" -v r="$r" -v q="${q:-0}" -v e="$e" 'BEGIN { printf "%.2f", a + (q > 0 ? r * (q - e) / q : 0) }')
    all=$(awk -v a="$all" -v r="$r" 'BEGIN { printf "%.2f", a + r }')
    lat="${lat:+$lat / }$l"
    non2xx=$((non2xx + e)); sock=$((sock + s)); c409=$((c409 + ${c:-0}))
  done
  RPS[$lineup,$test]=$ok
  ALL[$lineup,$test]=$all
  LAT[$lineup,$test]=$lat
  ERR[$lineup,$test]="$((non2xx - c409))/$sock"
  CONFLICT[$lineup,$test]=$c409
}

load1() { awk '{ print $1 }' /proc/loadavg; }   # the 1-minute load average

bench_lineup() {  # $1 line-up: ferry1, ferry2, kinto1 or kinto2
  local lineup=$1 server=${1%[0-9]} n=${1#"${1%[0-9]}"} mid port before
  fresh_db "$lineup"
  before=$(load1)
  "start_$server" "$lineup" "$n"
  log "$lineup: seeding $RECORDS records through 127.0.0.1:${PORTS[0]}"
  mid=$(timeout 900 python3 bench/seed.py 127.0.0.1 "${PORTS[0]}" "$USERPASS" "$RECORDS")
  if [ "$ANALYZE" = 1 ]; then
    # What autovacuum does within a minute or so of a bulk load. Without statistics the
    # planner may pick a poor index: on Ferry's fresh tables it served the primary-key lookup
    # of GET one record through objects_modified, filtering all 10,000 rows.
    log "$lineup: ANALYZE"
    PGCONNECT_TIMEOUT=10 PGOPTIONS='-c statement_timeout=300000' pg_psql "$lineup" -c ANALYZE
  fi
  for port in "${PORTS[@]}"; do
    check_api "$lineup (127.0.0.1:$port)" "http://127.0.0.1:$port$RECORDS_PATH" "$mid" "$AUTH"
  done
  # Reads before the PUT line, so they see exactly the seeded data set.
  run_line "$lineup" get "$RECORDS_PATH/u00042"
  run_line "$lineup" list "$RECORDS_PATH?_since=$mid&_limit=100"
  run_line "$lineup" put "$RECORDS_PATH" -s bench/put.lua
  LOAD[$lineup]="$before → $(load1)"
  stop_servers
}

# ---- 2. the line-ups, one after the other ------------------------------------------

UPTIME_START=$(uptime)
for lineup in $LINEUPS; do
  case $lineup in ferry1|ferry2|kinto1|kinto2) ;; *) echo "unknown line-up: $lineup (ferry1 ferry2 kinto1 kinto2)" >&2; exit 1 ;; esac
  bench_lineup "$lineup"
done
UPTIME_END=$(uptime)

# ---- 3. report ------------------------------------------------------------------

INVALID=0
for key in "${!ERR[@]}"; do wrk_valid "${ERR[$key]}" || INVALID=1; done
cell() {  # $1 line-up, $2 test: req/s (2xx), INVALID with the error counts, or "—" when not run
  if [ -z "${RPS[$1,$2]:-}" ]; then printf '—'; return; fi
  wrk_cell "${RPS[$1,$2]}" "${ERR[$1,$2]}"
  [ "${CONFLICT[$1,$2]}" -eq 0 ] || printf ' (+%s 409/s)' \
    "$(awk -v a="${ALL[$1,$2]}" -v b="${RPS[$1,$2]}" 'BEGIN { printf "%.1f", a - b }')"
}
ratio_of() {  # $1, $2 line-ups, $3 test: req/s of $1 ÷ $2 ("—" when either was not run or had errors)
  if [ -z "${RPS[$1,$3]:-}" ] || [ -z "${RPS[$2,$3]:-}" ]; then echo "—"
  elif wrk_valid "${ERR[$1,$3]}" && wrk_valid "${ERR[$2,$3]}"; then ratio "${RPS[$1,$3]}" "${RPS[$2,$3]}"
  else echo "n/a (errors)"; fi
}

echo
echo "Ferry ($FERRY) vs Kinto $KINTO_VERSION, both on PostgreSQL $PG_VERSION (one throwaway server," \
     "a database per line-up$([ "$ANALYZE" = 1 ] && echo ", analyzed after seeding")) — $RECORDS records," \
     "wrk $CONNECTIONS connections in all, $DURATION a line, $(nproc) cores"
echo
echo "| test | ferry ×1 req/s | ferry ×2 req/s | kinto ×1 req/s | kinto ×2 req/s |" \
     "ferry ÷ kinto, ×1 | ferry ÷ kinto, ×2 | ferry ×2 ÷ ×1 | kinto ×2 ÷ ×1 |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for test in get list put; do
  name=$(line_name "$test")
  row="| $name"
  for lineup in ferry1 ferry2 kinto1 kinto2; do row="$row | $(cell "$lineup" "$test")"; done
  row="$row | $(ratio_of ferry1 kinto1 "$test") | $(ratio_of ferry2 kinto2 "$test")"
  row="$row | $(ratio_of ferry2 ferry1 "$test") | $(ratio_of kinto2 kinto1 "$test") |"
  echo "$row"
done
echo
echo "req/s counts 2xx answers only; (+N 409/s): Kinto's \"Integrity constraint violated, please retry\"" \
     "answers to writes that met in the same millisecond, which a client must retry."
echo
echo "| test | line-up | avg latency (per wrk) | 409 (retry) | other non-2xx | socket errors | backends waiting for a lock (mean) |"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: |"
for test in get list put; do
  for lineup in ferry1 ferry2 kinto1 kinto2; do
    [ -n "${RPS[$lineup,$test]:-}" ] || continue
    echo "| $test | $lineup | ${LAT[$lineup,$test]} | ${CONFLICT[$lineup,$test]} | ${ERR[$lineup,$test]%/*} | ${ERR[$lineup,$test]#*/} | ${WAITING[$lineup,$test]:-—} |"
  done
done
echo
echo "Load average (1 min), before → after each line-up:" \
     "$(for l in ferry1 ferry2 kinto1 kinto2; do [ -z "${LOAD[$l]:-}" ] || printf '%s %s; ' "$l" "${LOAD[$l]}"; done)"
echo "uptime at start: $UPTIME_START"
echo "uptime at end:   $UPTIME_END"
echo
echo "wrk outputs: $WORK/wrk-*.txt; server logs: $WORK/*.log"
# Exit 2 when a line had errors, so a script or CI calling this notices.
if [ "$INVALID" -ne 0 ]; then echo "some lines had errors: their req/s are not valid" >&2; exit 2; fi
