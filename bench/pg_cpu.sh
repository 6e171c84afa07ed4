#!/usr/bin/env bash
# CPU per request on PostgreSQL (issue 14): the Ferry process plus PostgreSQL's backends, for
# the three lines of bench/server_pg.sh, two binaries in turn (A B A B), one throwaway
# PostgreSQL (start_pg in lib.sh). On a shared machine req/s move with the load; CPU per
# request much less.
#
# Usage:  FERRY_BIN=/path/a FERRY_BIN_B=/path/b bench/pg_cpu.sh
#         FERRY_BIN=/path/a bench/pg_cpu.sh          # one binary, four runs (B is A)
#
# Per binary and pair: a fresh database, bucket `bench`, collection `users`, 2,000 records
# (/batch), ANALYZE; then per line a fresh `ferry serve`, 2 s of wrk to warm it, 8 s measured
# (2 threads, 16 connections; PUT: bench/put.lua), the server stopped. CPU: `utime + stime`
# of the server process over the 8 s, and PostgreSQL's backends over the same line (`pm`); wrk's own
# `user + sys` (the load generator shares the 2 cores: what a request costs the machine in all
# is ferry + PostgreSQL + wrk).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
. bench/pg_lib.sh
pg_scratch pg-cpu
start_pg
AUTH="Basic $(printf %s bench:bench | base64)"
tick=$(getconf CLK_TCK)
# PostgreSQL's CPU so far for this measure: the postmaster's reaped children (`cutime + cstime`)
# and what its client backends still alive have used (`utime + stime`). Those are the server's
# connections, reaped with their whole life's CPU once it stops: without them here, the CPU of the
# warm-up (and of the server's start) was counted against the 8 s line's requests.
pm() {
  local pid child total
  pid=$(head -1 "$PG_DIR/data/postmaster.pid")
  total=$(awk '{print $16+$17}' /proc/$pid/stat)
  for child in $(pgrep -P "$pid"); do
    if tr '\0' ' ' < /proc/$child/cmdline 2>/dev/null | grep -q "^postgres: $PG_USER "; then
      total=$((total + $(awk '{print $14+$15}' /proc/$child/stat 2>/dev/null || echo 0)))
    fi
  done
  echo "$total"
}
run() { # $1 label $2 bin $3 db
  local label=$1 bin=$2 db=$3 port line
  port=$(free_port)
  for line in get list put; do
    pg_serve "$bin" "$db" "$port" "$SCRATCH/$db"
    pg_line_args "$port" "$line"
    p0=$(pm); f0=$(awk '{print $14+$15}' /proc/$SERVER_PID/stat)
    out=$(BENCH_AUTH=$AUTH BENCH_RECORDS=2000 /usr/bin/time -f 'wrk-cpu %U %S' wrk -t2 -c16 -d8s -H "Authorization: $AUTH" "${args[@]}" 2>&1)
    f1=$(awk '{print $14+$15}' /proc/$SERVER_PID/stat)
    stop_pid "$SERVER_PID" || true; SERVER_PID=""
    sleep 0.5
    p1=$(pm)
    n=$(echo "$out" | awk '/requests in/ {print $1}')
    non2xx=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
    w=$(echo "$out" | awk '/^wrk-cpu/ {print $2 + $3}')
    awk -v l="$label" -v line="$line" -v n="$n" -v f=$((f1-f0)) -v p=$((p1-p0)) -v t="$tick" -v e="${non2xx:-0}" -v w="$w" \
      'BEGIN { printf "%s %s reqs=%d req/s=%.0f ferry_us=%.0f pg_us=%.0f total_us=%.0f wrk_us=%.0f non2xx=%s\n", l, line, n, n/8, f/t/n*1e6, p/t/n*1e6, (f+p)/t/n*1e6, w/n*1e6, e }'
  done
}
i=0
for pair in 1 2; do
  for who in A B; do
    i=$((i+1)); db="cpu$i"
    if [ $who = A ]; then bin=${FERRY_BIN:?set FERRY_BIN}; else bin=${FERRY_BIN_B:-$FERRY_BIN}; fi
    pg_seeded_db "$bin" "$db"
    run "$pair-$who" "$bin" "$db"
  done
done
