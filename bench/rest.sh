#!/usr/bin/env bash
# REST source benchmark: the same users read page by page from a plain Flask +
# SQLite API and loaded into SQLite by Ferry's REST connector and by dlt's
# rest_api source, against a client that merely lists the pages (the ceiling).
#
# Usage:  bench/rest.sh                        # RECORDS=100000 by default
#         RECORDS=2000 bench/rest.sh
#         FERRY_BIN=/path/to/ferry bench/rest.sh   # skip the release build
#         SKIP_FERRY=1 bench/rest.sh           # only the listing and dlt lines
#         PER_PAGE=500 bench/rest.sh           # page size of every line (1..1000)
#
# What it does, one line after the other so they never compete for the 2 cores:
#   1. builds Ferry in release mode (.build-release/) unless FERRY_BIN or
#      SKIP_FERRY is set; installs sqlite3 and GNU time (apt) if missing, and
#      dlt, SQLAlchemy, Flask and Flask-SQLAlchemy (pip, pinned in lib.sh, into
#      bench/.venv) unless installed;
#   2. starts Tests/FerrySyncTests/Fixtures/users_api.py --seed $RECORDS on a
#      free port (its database in bench/.work/rest/run/), and checks it answers
#      total = RECORDS before timing anything;
#   3. times each line with its peak RSS (/usr/bin/time %M, the client's; the
#      API server is the same process for every line and is not counted), each
#      bounded by `timeout`:
#        API listing: bench/rest_list.py GETs /users?page=P&per_page=$PER_PAGE
#                     until the last page and counts the records (the ceiling)
#        Ferry:       ferry sync rest+http://…/users sqlite:…#users (page pagination)
#        dlt:         bench/dlt_rest.py (rest_api_source, page_number paginator,
#                     sqlalchemy destination)
#   4. checks every output (the listing saw RECORDS distinct ids; each SQLite
#      table has RECORDS rows, RECORDS distinct ids and usernames and the seeded
#      sum of ages; Ferry's JSON report read RECORDS and failed none), marks a
#      line INVALID otherwise, and prints a Markdown table with the number of
#      API requests each line made (the API's /_stats).
# The API server is stopped on exit. Exit status 2 when a line is INVALID.
set -euo pipefail

cd "$(dirname "$0")/.."          # the repo root: every path below is relative to it
RECORDS=${RECORDS:-100000}
PER_PAGE=${PER_PAGE:-1000}
SKIP_FERRY=${SKIP_FERRY:-0}
RUN=bench/.work/rest/run          # git-ignored scratch: this run's databases, outputs and logs
VENV=bench/.venv                  # git-ignored venv (Kinto for run.sh, dlt and Flask here)
API=Tests/FerrySyncTests/Fixtures/users_api.py

case $RECORDS in ''|*[!0-9]*) echo "RECORDS must be a whole number, not '$RECORDS'" >&2; exit 1 ;; esac
[ "$RECORDS" -ge 1 ] || { echo "RECORDS must be at least 1" >&2; exit 1; }
case $PER_PAGE in ''|*[!0-9]*) echo "PER_PAGE must be a whole number, not '$PER_PAGE'" >&2; exit 1 ;; esac
[ "$PER_PAGE" -ge 1 ] && [ "$PER_PAGE" -le 1000 ] || { echo "PER_PAGE must be 1..1000 (the API's limit)" >&2; exit 1; }
# Upper bound of one timed line: 5 minutes plus 4 ms a record (100k: 11.7 min).
LIMIT=$(( 300 + RECORDS / 250 ))

. bench/lib.sh                     # log, find_ferry, stop_server, ensure_bench_venv,
                                   # apt_install, timed, bad, check_rows, check_report

# ---- 1. tools -------------------------------------------------------------

command -v sqlite3 >/dev/null 2>&1 || { log "installing sqlite3 (apt-get)"; apt_install sqlite3; }
[ -x /usr/bin/time ] || { log "installing GNU time (apt-get)"; apt_install time; }
command -v curl >/dev/null 2>&1 || { log "installing curl (apt-get)"; apt_install curl; }

FERRY=""
if [ "$SKIP_FERRY" != 1 ]; then
  find_ferry
fi

ensure_bench_venv "$VENV"

# ---- 2. the API ------------------------------------------------------------

rm -rf "$RUN"
mkdir -p "$RUN"
SERVER_PID=""
CHILD_PID=""     # the line being run (see bounded)
cleanup() { stop_child; stop_server; }
trap cleanup EXIT
trap 'exit 130' INT TERM

# Per line (key): SECS seconds, RSS peak KB, RC exit status, MOVED records it
# carried (for records/s), BAD why it is INVALID (empty: valid). See timed in lib.sh.
declare -A SECS RSS RC MOVED BAD REQUESTS

# Port 0: the API binds a free port itself and prints it, so no other process
# can take the port between choosing and binding it.
log "starting $API --seed $RECORDS"
t0=$(date +%s.%N)
"$VENV/bin/python" "$API" --db "$RUN/api.db" --port 0 --seed "$RECORDS" > "$RUN/api.out" 2> "$RUN/api.err" &
SERVER_PID=$!
PORT=""
for _ in $(seq 1200); do   # 120 s
  PORT=$(sed -n 's|^listening on http://127\.0\.0\.1:\([0-9][0-9]*\)$|\1|p' "$RUN/api.out")
  [ -z "$PORT" ] || break
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    echo "users_api.py exited during start-up; log:" >&2; cat "$RUN/api.err" >&2; exit 1
  fi
  sleep 0.1
done
[ -n "$PORT" ] || { echo "users_api.py did not start within 120 s; log:" >&2; cat "$RUN/api.err" >&2; exit 1; }
BASE="http://127.0.0.1:$PORT"
log "API on $BASE, seeded in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s"

json_get() {  # $1 URL, $2 Python expression on the answer `j`: prints its value
  curl -fsS "$1" | python3 -c 'import json, sys; j = json.load(sys.stdin); print(eval(sys.argv[1]))' "$2"
}
total=$(json_get "$BASE/users?per_page=1" 'j["total"]')
[ "$total" = "$RECORDS" ] || { echo "the API holds $total users, expected $RECORDS" >&2; exit 1; }

api_gets() { json_get "$BASE/_stats" 'j["requests"]["GET"]'; }

timed_api() {  # timed, plus the number of API requests the line made
  local key=$1 before
  before=$(api_gets)
  timed "$@"
  REQUESTS[$key]=$(( $(api_gets) - before ))
}

# Beyond the row count: distinct ids and usernames, and the seeded ages
# (age = id % 90 + 10) summed, so a line that repeats or loses records fails.
EXPECTED_AGES=$(python3 -c 'import sys; print(sum(i % 90 + 10 for i in range(1, int(sys.argv[1]) + 1)))' "$RECORDS")
check_table() {  # $1 key, $2 db
  local got
  check_rows "$1" "$2" "$RECORDS"
  got=$(sqlite3 "$2" "SELECT count(DISTINCT id) || ' ' || count(DISTINCT username) || ' ' || sum(age) FROM users" 2>/dev/null || true)
  [ "$got" = "$RECORDS $RECORDS $EXPECTED_AGES" ] \
    || bad "$1" "distinct ids, usernames, sum(age) = ${got:-?}, expected $RECORDS $RECORDS $EXPECTED_AGES"
}

# ---- 3. the lines ------------------------------------------------------------

LINES=(list)
timed_api list "$VENV/bin/python" bench/rest_list.py "$BASE" "$PER_PAGE"
for f in records unique_ids; do
  n=$(field "$RUN/list.out" "$f")
  [ "$n" = "$RECORDS" ] || bad list "$f=${n:-?}, expected $RECORDS"
done

if [ -n "$FERRY" ]; then
  LINES+=(ferry)
  timed_api ferry "$FERRY" sync "rest+$BASE/users" "sqlite:$RUN/ferry.db#users" \
    --source-rest pagination=page --source-rest items=/data --source-rest size_param=per_page \
    --source-rest page_size="$PER_PAGE" --mode full --state "$RUN/state-rest.db" --json
  check_table ferry "$RUN/ferry.db"
  check_report ferry read="$RECORDS" failed=0
fi

LINES+=(dlt)
# Telemetry off, and every dlt file (config lookup, pipeline state, load
# packages) under $RUN/dlt rather than ~/.dlt or ./.dlt.
timed_api dlt env RUNTIME__DLTHUB_TELEMETRY=false DLT_DATA_DIR="$RUN/dlt" DLT_PROJECT_DIR="$RUN/dlt" \
  "$VENV/bin/python" bench/dlt_rest.py "$BASE" "$RUN/dlt.db" "$RUN/dlt/pipelines" "$PER_PAGE"
check_table dlt "$RUN/dlt.db"

SERVER_HWM=$(awk '/^VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$SERVER_PID/status" 2>/dev/null || true)
stop_server

# ---- 4. report ------------------------------------------------------------

name() {
  case $1 in
    list)  echo "API listing: rest_list.py, /users?page=P (ceiling)" ;;
    ferry) echo "Ferry: rest+http → SQLite (page pagination)" ;;
    dlt)   echo "dlt $DLT_VERSION rest_api → SQLite (page_number)" ;;
  esac
}
valid() { [ -z "${BAD[$1]}" ]; }

echo
echo "REST benchmark — $RECORDS records, $PER_PAGE a page, $(nproc) cores; API: users_api.py on Flask $FLASK_VERSION" \
     "+ Flask-SQLAlchemy $FLASK_SQLALCHEMY_VERSION (werkzeug $WERKZEUG_VERSION threaded server, SQLite WAL);" \
     "dlt $DLT_VERSION + SQLAlchemy $SQLALCHEMY_VERSION${FERRY:+; Ferry $FERRY}"
echo
INVALID=0
echo "| line | seconds | records/s | peak RSS MB | rows | API requests | time vs listing |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
for key in "${LINES[@]}"; do
  secs=${SECS[$key]}
  rate=$(per_second "${MOVED[$key]}" "$secs")
  rss=$(megabytes "${RSS[$key]:-0}")
  if [ "$key" = list ]; then
    got=$(field "$RUN/list.out" records); vs="—"
  else
    got=$(rows "$RUN/$key.db")
    if valid "$key" && valid list; then vs=$(ratio "$secs" "${SECS[list]}"); else vs="n/a"; fi
  fi
  cell=$secs
  if ! valid "$key"; then cell="INVALID ($secs; ${BAD[$key]})"; INVALID=1; fi
  echo "| $(name "$key") | $cell | $rate | $rss | ${got:-?} | ${REQUESTS[$key]:-?} | $vs |"
done
echo
echo "rows: records the listing counted, or rows in the line's SQLite table. The API server" \
     "(not in the RSS column) peaked at ${SERVER_HWM:-?} MB (VmHWM)."
if [ -n "$FERRY" ]; then
  say_vs_dlt ferry "Ferry/dlt"
  if valid list && valid ferry; then
    pct=$(awk -v a="${SECS[list]}" -v b="${SECS[ferry]}" 'BEGIN { if (b > 0) printf "%.0f", 100 * a / b; else print "n/a" }')
    echo "Ferry/API listing: Ferry's time ÷ the listing's = $(ratio "${SECS[ferry]}" "${SECS[list]}")" \
         "(Ferry loads at $pct % of the rate a client merely reading the pages gets)."
  else
    echo "Ferry vs API listing: n/a (a line is INVALID)"
  fi
fi
echo
echo "Outputs, reports and logs: $RUN/ (*.out, *.err, *.db; the API's log: api.err)"
if [ "$INVALID" -ne 0 ]; then echo "some lines are INVALID: their numbers are not valid" >&2; exit 2; fi
