#!/usr/bin/env bash
# Where a request's CPU goes on PostgreSQL (issue 14): `perf record -g` of the Ferry process and
# its PostgreSQL backends together, and PostgreSQL's own per-statement times (pg_stat_statements),
# under the page-of-100 and the PUT lines of bench/pg_cpu.sh, for one binary.
#
# Usage:  FERRY_BIN=/path/to/ferry bench/pg_profile.sh [list put]
#
# A throwaway PostgreSQL (start_pg in lib.sh) with pg_stat_statements loaded; bucket `bench`,
# collection `users`, 2,000 records, ANALYZE; per line a fresh `ferry serve`, 2 s of wrk to warm
# it, then 8 s of wrk (2 threads, 16 connections) while perf samples the server and the backends.
# Prints, per line: req/s, the samples' shares by process (ferry / postgres) and by library, the
# top symbols (self), and the statements by total execution time. perf data stays in
# bench/.work/pg_profile/ (perf report -i FILE for more).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
. bench/pg_lib.sh
BIN=${FERRY_BIN:?set FERRY_BIN}
LINES=${*:-list put}
OUT=bench/.work/pg_profile
mkdir -p "$OUT"
pg_scratch pg-profile
start_pg
pg_psql postgres -c "ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'"
as_postgres "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 \
  -o "-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1" restart > /dev/null 2>&1
pg_psql postgres -c "ALTER SYSTEM SET pg_stat_statements.track_planning = on"
pg_psql postgres -c "SELECT pg_reload_conf()" > /dev/null
AUTH="Basic $(printf %s bench:bench | base64)"
db=prof
pg_psql postgres -c "CREATE DATABASE $db"
pg_psql "$db" -c "CREATE EXTENSION pg_stat_statements"
port=$(free_port)
serve() { pg_serve "$BIN" "$db" "$port" "$SCRATCH/data"; }
serve
pg_seed_users "$port" "$AUTH"
stop_pid "$SERVER_PID" || true; SERVER_PID=""
pg_psql "$db" -c "ANALYZE"
postmaster=$(head -1 "$PG_DIR/data/postmaster.pid")
for line in $LINES; do
  serve
  pg_line_args "$port" "$line"
  pg_psql "$db" -c "SELECT pg_stat_statements_reset()" > /dev/null
  pids=$(echo "$SERVER_PID" $(pgrep -P "$postmaster") | tr ' ' ',')
  perf record -q -g -F 999 -p "$pids" -o "$OUT/$line.data" -- sleep 8 > /dev/null 2>&1 &
  perf_pid=$!
  out=$(BENCH_AUTH=$AUTH BENCH_RECORDS=2000 wrk -t2 -c16 -d8s -H "Authorization: $AUTH" "${args[@]}" 2>&1)
  wait "$perf_pid" || true
  echo "== $line: $(echo "$out" | awk '/Requests\/sec/ {print $2}') req/s"
  echo "calls | plans | plan us a call | exec us a call | statement"
  pg_psql "$db" -F ' | ' -c "SELECT calls, plans, round((total_plan_time / calls * 1000)::numeric, 1) AS plan_us_a_call, round((total_exec_time / calls * 1000)::numeric, 1) AS exec_us_a_call,
      left(regexp_replace(query, '\s+', ' ', 'g'), 110) FROM pg_stat_statements WHERE calls > 10 ORDER BY total_plan_time + total_exec_time DESC LIMIT 12"
  stop_pid "$SERVER_PID" || true; SERVER_PID=""
  echo "-- by process"
  perf report -i "$OUT/$line.data" --no-children -g none --sort comm --stdio 2>/dev/null | grep -v '^#' | grep '%' | head -8 || true
  echo "-- by library"
  perf report -i "$OUT/$line.data" --no-children -g none --sort dso --stdio 2>/dev/null | grep -v '^#' | grep '%' | head -12 || true
  echo "-- top symbols (self)"
  perf report -i "$OUT/$line.data" --no-children --sort comm,dso,sym --stdio -g none 2>/dev/null | grep -v '^#' | grep '%' | head -30 || true
done
