#!/usr/bin/env bash
# Real-time benchmark (issue 5): end-to-end latency of `ferry sync … --follow`, and how
# many change streams one server holds while keeping p99 under 100 ms.
#
# Usage:  bench/follow.sh                       # builds Ferry (release) first
#         FERRY_BIN=/path/to/ferry bench/follow.sh   # use this binary, no build
#         SECONDS_PER_RATE=5 FANOUT="100 1000" VIAS=stream bench/follow.sh   # shorter
#         VIAS= bench/follow.sh                 # only the fan-out (FANOUT= only the latency)
#
# What it does (about 3 minutes with the defaults), one line after the other:
#   1. latency: for each way of following (VIAS: stream, long-poll, poll with
#      --poll-interval 1s) a fresh `ferry serve` and `ferry sync <collection>
#      sqlite:…#users --follow --follow-via WAY`; bench/follow_latency.py writes
#      one warm-up record and waits for it, then PUTs records at RATES writes/s
#      (10, 100, 1000; SECONDS_PER_RATE each) and polls the SQLite target every
#      ~1 ms (read-only, WAL). Latency = when the row appears - when the server
#      acknowledged the PUT. The follower gets SIGTERM at the end and must exit 0.
#   2. fan-out: for each N in FANOUT (100 250 500 1000 2000) a fresh server with
#      FERRY_MAX_STREAMS above N; bench/stream_fanout.py opens N event streams
#      (asyncio, raw sockets), PUTs FANOUT_RECORDS records at FANOUT_RATE/s and
#      notes when each stream sees each record. Latency = seen - acknowledged,
#      over every (stream, record) pair. Also the CPU time the server and the
#      streams' reader used per write (/proc/PID/stat, getrusage).
#   3. prints one Markdown table per part and a verdict against the targets:
#      p99 < 50 ms for --follow (stream), p99 < 100 ms for fan-out.
# A line is INVALID (exit status 2) when a write failed, a record never arrived,
# a stream was refused or missed a record, or the follower did not stop cleanly.
# Every process is stopped on exit; outputs and logs stay in bench/.work/follow/run/.
# The Python clients run on the same cores as Ferry: on a small machine they are
# part of what is measured.
set -euo pipefail

cd "$(dirname "$0")/.."          # the repo root: every path below is relative to it
SECONDS_PER_RATE=${SECONDS_PER_RATE:-10}
RATES=${RATES:-10,100,1000}
VIAS=${VIAS-stream long-poll poll}   # VIAS= skips part 1
FANOUT=${FANOUT-100 250 500 1000 2000}   # FANOUT= skips part 2
FANOUT_RECORDS=${FANOUT_RECORDS:-20}
FANOUT_RATE=${FANOUT_RATE:-5}
FOLLOW_TARGET_MS=50               # the issue's targets, p99
FANOUT_TARGET_MS=100
WORK=bench/.work/follow           # git-ignored scratch
RUN=$WORK/run                     # this run's databases, results and logs
USERPASS=alice:pw                 # Ferry's server takes any user:password (basicauth)

. bench/lib.sh                     # log, find_ferry, stop_pid, stop_server, free_port, wait_ready,
                                   # bounded, stop_child, bad, field, rows

case $SECONDS_PER_RATE in ''|*[!0-9]*) echo "SECONDS_PER_RATE must be a whole number of seconds" >&2; exit 1 ;; esac

# ---- 1. tools -------------------------------------------------------------

command -v sqlite3 >/dev/null 2>&1 || { log "installing sqlite3 (apt-get)"; apt_install sqlite3; }
find_ferry

# Every stream is a socket on both ends (client and server inherit this limit).
MAX_N=0
for n in $FANOUT; do [ "$n" -le "$MAX_N" ] || MAX_N=$n; done
NEED_FILES=$(( MAX_N + 1000 ))
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$NEED_FILES" ]; then
  ulimit -n "$NEED_FILES" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
  [ "$(ulimit -n)" -ge "$NEED_FILES" ] || log "ulimit -n is $(ulimit -n), below the $NEED_FILES that $MAX_N streams need"
fi

# ---- helpers --------------------------------------------------------------

rm -rf "$RUN"
mkdir -p "$RUN"
SERVER_PID=""
SERVER_DATA=""
FOLLOW_PID=""
CHILD_PID=""     # the Python client being run (see bounded)

cleanup() {
  stop_child
  stop_pid "$FOLLOW_PID" || true
  stop_server
  if [ -n "$SERVER_DATA" ]; then rm -rf "$SERVER_DATA"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

declare -A BAD       # per line key: why it is INVALID (empty: valid); see bad in lib.sh
declare -A RUNS      # per way of following: the runs of ferry sync that moved records

start_server() {  # $1 name of its log: a fresh server on a free port ($PORT) with bucket main, collection users
  SERVER_DATA=$(mktemp -d "${TMPDIR:-/tmp}/ferry-follow-bench.XXXXXX")
  PORT=$(free_port)
  "$FERRY" serve --host 127.0.0.1 --port "$PORT" --data "$SERVER_DATA" --log-level warning \
    > "$RUN/$1-server.log" 2>&1 &
  SERVER_PID=$!
  wait_ready "$PORT" "$RUN/$1-server.log"
  COLLECTION="http://127.0.0.1:$PORT/v1/buckets/main/collections/users"
  curl -fsS -o /dev/null -u "$USERPASS" -X PUT -H 'Content-Type: application/json' -d '{}' "http://127.0.0.1:$PORT/v1/buckets/main"
  curl -fsS -o /dev/null -u "$USERPASS" -X PUT -H 'Content-Type: application/json' -d '{}' "$COLLECTION"
}

end_server() {  # $1 line key, $2 log name: stop the server, drop its data, keep what it logged at warning or above
  stop_server
  rm -rf "$SERVER_DATA"
  SERVER_DATA=""
  if [ -s "$RUN/$2-server.log" ]; then
    NOTES+=("$1: the server logged $(wc -l < "$RUN/$2-server.log") line(s) at warning or above, first: $(head -c 200 "$RUN/$2-server.log" | head -n 1)")
  fi
}

ms() {  # $1 milliseconds (may be empty): one decimal, or n/a
  awk -v x="$1" 'BEGIN { if (x == "") print "n/a"; else printf "%.1f", x }'
}

NOTES=()

# ---- 2. latency of --follow ---------------------------------------------------

IFS=, read -r -a RATE_LIST <<< "$RATES"
LAT_LINES=()
for via in $VIAS; do
  extra=(--follow-via "$via")
  [ "$via" != poll ] || extra+=(--poll-interval 1s)
  log "--follow via $via: rates $RATES writes/s, $SECONDS_PER_RATE s each"
  start_server "follow-$via"
  # Started straight from this shell, so that $! is Ferry itself (not a subshell).
  FERRY_SOURCE_AUTH=$USERPASS "$FERRY" sync "$COLLECTION" "sqlite:$RUN/$via.db#users" --follow "${extra[@]}" \
    --state "$RUN/state-$via.db" --dead-letter "$RUN/dead-letter-$via.jsonl" \
    > "$RUN/follow-$via.out" 2> "$RUN/follow-$via.err" &
  FOLLOW_PID=$!
  # Bounded: the warm-up (60 s at most), every rate, and the drains.
  limit=$(( 120 + ${#RATE_LIST[@]} * (SECONDS_PER_RATE + 30) ))
  rc=0
  bounded "$RUN/follow-$via.py.out" timeout -k 10 "$limit" \
    python3 bench/follow_latency.py "$PORT" "$RUN/$via.db" "$RATES" "$SECONDS_PER_RATE" "$RUN/follow-$via" \
      --auth "$USERPASS" --drain 10 || rc=$?
  frc=0
  stop_pid "$FOLLOW_PID" || frc=$?
  FOLLOW_PID=""
  written=1      # the warm-up record
  for rate in "${RATE_LIST[@]}"; do
    key="$via,$rate"
    LAT_LINES+=("$key")
    BAD[$key]=""
    res="$RUN/follow-$via-$rate.json"
    if [ "$rc" -ne 0 ] || [ ! -s "$res" ]; then bad "$key" "follow_latency.py failed ($rc), see its output above"; continue; fi
    n=$(field "$res" missing); [ "$n" = 0 ] || bad "$key" "$n record(s) never arrived"
    n=$(field "$res" errors);  [ "$n" = 0 ] || bad "$key" "$n PUT(s) failed: $(field "$res" first_errors)"
    written=$(( written + $(field "$res" written) ))
  done
  # Every record once: the rows of the target = every acknowledged PUT (the warm-up included).
  n=$(rows "$RUN/$via.db")
  if [ "$rc" -eq 0 ] && [ "$n" != "$written" ]; then
    for rate in "${RATE_LIST[@]}"; do bad "$via,$rate" "${n:-no} rows in $via.db, expected $written"; done
  fi
  if [ "$frc" -ne 0 ]; then
    for rate in "${RATE_LIST[@]}"; do bad "$via,$rate" "the follower exited with status $frc after SIGTERM"; done
  fi
  RUNS[$via]=$(grep -c . "$RUN/follow-$via.out" || true)
  # Its stderr holds the "following …" and "SIGTERM …" notices; anything else is worth a look.
  other=$(grep -v -e '^ferry: following ' -e '^ferry: SIGTERM: ' "$RUN/follow-$via.err" || true)
  if [ -n "$other" ]; then
    NOTES+=("--follow via $via: ferry sync wrote on stderr: $(printf %s "$other" | head -n 3 | tr '\n' ' ' | head -c 400)")
  fi
  end_server "--follow via $via" "follow-$via"
done

# ---- 3. fan-out of event streams ------------------------------------------

FAN_LINES=()
for n in $FANOUT; do
  log "fan-out: $n streams, $FANOUT_RECORDS records at $FANOUT_RATE/s"
  FERRY_MAX_STREAMS=$(( n + 100 )) start_server "fanout-$n"
  key="fanout,$n"
  FAN_LINES+=("$key")
  BAD[$key]=""
  res="$RUN/fanout-$n.json"
  rc=0
  bounded "$RUN/fanout-$n.py.out" timeout -k 10 $(( 120 + n / 10 )) \
    python3 bench/stream_fanout.py "$PORT" "$n" "$res" --records "$FANOUT_RECORDS" --rate "$FANOUT_RATE" \
      --auth "$USERPASS" --server-pid "$SERVER_PID" --drain 10 || rc=$?
  if [ "$rc" -ne 0 ] || [ ! -s "$res" ]; then
    bad "$key" "stream_fanout.py failed ($rc), see its output above"
  else
    v=$(field "$res" opened);  [ "$v" = "$n" ] || bad "$key" "$v of $n streams opened ($(field "$res" first_errors))"
    v=$(field "$res" records); [ "$v" = "$FANOUT_RECORDS" ] || bad "$key" "$v of $FANOUT_RECORDS PUTs acknowledged"
    v=$(field "$res" complete_streams); [ "$v" = "$n" ] || bad "$key" "$v of $n streams got every record"
  fi
  end_server "fan-out $n" "fanout-$n"
done

# ---- 4. report ------------------------------------------------------------

valid() { [ -z "${BAD[$1]}" ]; }
INVALID=0
LOAD=$(cut -d' ' -f1-3 /proc/loadavg)

echo
echo "Real-time benchmark — $(nproc) cores (load average $LOAD at the end), Ferry $FERRY"
echo
echo "--follow: a PUT on the server → its row in the SQLite target (${SECONDS_PER_RATE} s per rate)"
echo
echo "| follow via | writes/s | achieved/s | records | p50 ms | p99 ms | max ms | missing |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for key in "${LAT_LINES[@]}"; do
  via=${key%,*} rate=${key#*,} res="$RUN/follow-${key%,*}-${key#*,}.json"
  label=$via; [ "$via" != poll ] || label="poll (1 s)"
  if [ -s "$res" ]; then
    p99=$(ms "$(field "$res" p99_ms)")
    valid "$key" || { p99="INVALID ($p99; ${BAD[$key]})"; INVALID=1; }
    echo "| $label | $rate | $(field "$res" achieved) | $(field "$res" written) | $(ms "$(field "$res" p50_ms)") | $p99 |" \
         "$(ms "$(field "$res" max_ms)") | $(field "$res" missing) |"
  else
    INVALID=1
    echo "| $label | $rate | INVALID (${BAD[$key]}) | | | | | |"
  fi
done
echo
for via in $VIAS; do echo "- via $via: ferry sync made ${RUNS[$via]:-?} run(s) that moved records."; done
echo
echo "Fan-out: one server, N event streams, $FANOUT_RECORDS records at $FANOUT_RATE/s; latency over every (stream, record) pair"
echo
echo "| streams | opened in s | pairs seen | p50 ms | p99 ms | max ms | every stream got every record | server RSS MB | CPU ms per write: server / client |"
echo "| ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |"
BEST_N=""
for key in "${FAN_LINES[@]}"; do
  n=${key#*,} res="$RUN/fanout-$n.json"
  if [ -s "$res" ]; then
    p99raw=$(field "$res" p99_ms)
    p99=$(ms "$p99raw")
    all="yes"; valid "$key" || { all="no: ${BAD[$key]}"; INVALID=1; }
    echo "| $n | $(field "$res" open_seconds) | $(field "$res" seen)/$(field "$res" pairs) | $(ms "$(field "$res" p50_ms)") | $p99 |" \
         "$(ms "$(field "$res" max_ms)") | $all | $(field "$res" server_rss_mb) |" \
         "$(field "$res" server_cpu_ms_per_record) / $(field "$res" client_cpu_ms_per_record) |"
    if valid "$key" && awk -v p="$p99raw" -v t="$FANOUT_TARGET_MS" 'BEGIN { exit !(p != "" && p < t) }'; then
      if [ -z "$BEST_N" ] || [ "$n" -gt "$BEST_N" ]; then BEST_N=$n; fi
    fi
  else
    INVALID=1
    echo "| $n | INVALID (${BAD[$key]}) | | | | | | | |"
  fi
done
echo

# Verdicts against the issue's targets.
met=() missed=()
for key in "${LAT_LINES[@]}"; do
  [ "${key%,*}" = stream ] || continue
  res="$RUN/follow-stream-${key#*,}.json"
  p99=$( [ -s "$res" ] && field "$res" p99_ms || true)
  if valid "$key" && awk -v p="$p99" -v t="$FOLLOW_TARGET_MS" 'BEGIN { exit !(p != "" && p < t) }'; then
    met+=("${key#*,}/s")
  else
    missed+=("${key#*,}/s (p99 $(ms "$p99") ms)")
  fi
done
if [ ${#met[@]} -gt 0 ] || [ ${#missed[@]} -gt 0 ]; then
  echo "Verdict --follow (stream, p99 < $FOLLOW_TARGET_MS ms): met at ${met[*]:-no rate}; missed at ${missed[*]:-no rate}."
fi
if [ ${#FAN_LINES[@]} -gt 0 ]; then
  echo "Verdict fan-out (p99 < $FANOUT_TARGET_MS ms, every stream gets every record): largest N measured that holds: ${BEST_N:-none}."
fi
for note in "${NOTES[@]}"; do echo "- $note"; done
echo
echo "Results, databases and logs: $RUN/"
if [ "$INVALID" -ne 0 ]; then echo "some lines are INVALID: their numbers are not valid" >&2; exit 2; fi
