# Shared by bench/run.sh, bench/server_pg.sh, bench/sync.sh, bench/rest.sh, bench/follow.sh and bench/postgres.sh:
# sourced from the repo root, after `set -euo pipefail`.
# The caller keeps SERVER_PID set to the server it started (or "").

log() { printf '==> %s\n' "$*" >&2; }

# Sets FERRY to $FERRY_BIN, or builds Ferry in release mode. A separate scratch
# path, so this never fights over .build/ with a debug build or `swift test`
# running in the same checkout.
find_ferry() {
  if [ -n "${FERRY_BIN:-}" ]; then
    FERRY=$FERRY_BIN
  else
    log "building Ferry (release, .build-release/)"
    timeout 3600 swift build -c release --scratch-path .build-release >&2
    FERRY="$(swift build -c release --scratch-path .build-release --show-bin-path)/ferry"
  fi
  [ -x "$FERRY" ] || { echo "ferry binary not found: $FERRY" >&2; exit 1; }
}

# Sets CEILING to $CEILING_BIN, or builds the ferry-ceiling product (bench/Ceiling) in the
# same release build as find_ferry: after a full build of .build-release it is already there,
# and this build only checks it.
find_ceiling() {
  if [ -n "${CEILING_BIN:-}" ]; then
    CEILING=$CEILING_BIN
  else
    log "building ferry-ceiling (release, .build-release/)"
    timeout 3600 swift build -c release --scratch-path .build-release --product ferry-ceiling >&2
    CEILING="$(swift build -c release --scratch-path .build-release --show-bin-path)/ferry-ceiling"
  fi
  [ -x "$CEILING" ] || { echo "ferry-ceiling binary not found: $CEILING" >&2; exit 1; }
}

stop_pid() {  # $1 pid of a child this script started: SIGTERM, SIGKILL after 5 s; returns its exit status
  # Only that process, by its pid. Status 137 (128 + 9): it had to be killed.
  local pid=$1 rc=0
  [ -n "$pid" ] || return 0
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || rc=$?
  return "$rc"
}

stop_server() {
  stop_pid "$SERVER_PID" || true
  SERVER_PID=""
}

free_port() {
  # Let the kernel pick a free port; it is released again right away.
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

wait_ready() {  # $1 port, $2 log file, $3 the server's pid ($SERVER_PID): wait (max 60 s) for the heartbeat
  for _ in $(seq 600); do
    if curl -fsS -o /dev/null "http://127.0.0.1:$1/v1/__heartbeat__" 2>/dev/null; then return 0; fi
    if ! kill -0 "${3:-$SERVER_PID}" 2>/dev/null; then
      echo "server exited during start-up; log:" >&2; cat "$2" >&2; return 1
    fi
    sleep 0.1
  done
  echo "server did not answer /v1/__heartbeat__ within 60 s; log:" >&2; cat "$2" >&2
  return 1
}

# ---- bench/.venv: the Python packages of sync.sh and rest.sh ----------------
# dlt and SQLAlchemy (the dlt lines) and Flask + Flask-SQLAlchemy (the users API
# that rest.sh serves, Tests/FerrySyncTests/Fixtures/users_api.py), pinned; all
# install on Python 3.11 and run offline. setuptools<82 keeps Kinto (same venv,
# bench/run.sh) satisfied, as dlt would otherwise pull a newer one. Werkzeug is
# pinned with Flask: the API's "drop" fault uses its server's socket.
DLT_VERSION=1.31.0
SQLALCHEMY_VERSION=2.1.9
FLASK_VERSION=3.1.3
FLASK_SQLALCHEMY_VERSION=3.1.1
WERKZEUG_VERSION=3.1.9

ensure_bench_venv() {  # $1 venv: create it if missing, install the pinned packages unless there
  local venv=$1 want have
  [ -x "$venv/bin/python" ] || { log "creating $venv"; python3 -m venv "$venv"; }
  want="$DLT_VERSION $SQLALCHEMY_VERSION $FLASK_VERSION $FLASK_SQLALCHEMY_VERSION $WERKZEUG_VERSION"
  have=$("$venv/bin/python" -c 'import importlib.metadata as m
print(*(m.version(p) for p in ("dlt", "sqlalchemy", "flask", "flask-sqlalchemy", "werkzeug")))' 2>/dev/null || true)
  if [ "$have" != "$want" ]; then
    log "installing dlt $DLT_VERSION, SQLAlchemy $SQLALCHEMY_VERSION, Flask $FLASK_VERSION," \
        "Flask-SQLAlchemy $FLASK_SQLALCHEMY_VERSION and Werkzeug $WERKZEUG_VERSION into $venv"
    timeout 900 "$venv/bin/pip" install -q "dlt[sqlalchemy]==$DLT_VERSION" "sqlalchemy==$SQLALCHEMY_VERSION" \
      "flask==$FLASK_VERSION" "flask-sqlalchemy==$FLASK_SQLALCHEMY_VERSION" "werkzeug==$WERKZEUG_VERSION" \
      'setuptools<82' >&2
  fi
}

# ---- timed lines (sync.sh, rest.sh) -------------------------------------------
# The caller sets RUN (outputs go to $RUN/KEY.out, .err, .rss), LIMIT (seconds a
# line may take) and RECORDS, keeps CHILD_PID="" and declares
#   declare -A SECS RSS RC MOVED BAD
# per line (key): SECS seconds, RSS peak KB, RC exit status, MOVED records it
# carried (for records/s), BAD why it is INVALID (empty: valid).

SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
APT_UPDATED=0
apt_install() {  # $1 package
  if [ "$APT_UPDATED" -eq 0 ]; then timeout 600 $SUDO apt-get update >&2; APT_UPDATED=1; fi
  timeout 600 $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y "$1" >&2
}

stop_child() {
  # The running line: `timeout` (or time(1) with `timeout` under it). timeout
  # runs the command in a process group of its own, so a Ctrl-C does not reach
  # it, and time(1) ignores SIGINT: stop it here, by its pid and its group.
  [ -n "$CHILD_PID" ] || return 0
  local t
  t=$(pgrep -x -P "$CHILD_PID" timeout 2>/dev/null || true)
  [ -n "$t" ] || t=$CHILD_PID
  kill -TERM "$t" 2>/dev/null || true          # timeout passes it on to the command
  for _ in $(seq 50); do kill -0 "$t" 2>/dev/null || break; sleep 0.1; done
  kill -KILL -- "-$t" 2>/dev/null || true      # timeout's group: the command and its children
  kill "$CHILD_PID" 2>/dev/null || true
  wait "$CHILD_PID" 2>/dev/null || true
  CHILD_PID=""
}

bounded() {  # $1 output file, $2.. command: run it under `timeout` within $LIMIT
  # In the background and waited for, so an INT or TERM sent to the script
  # runs its trap at once (cleanup then stops the line) instead of after it.
  local out=$1; shift
  local rc=0
  "$@" < /dev/null > "$out" &
  CHILD_PID=$!
  wait "$CHILD_PID" || rc=$?
  CHILD_PID=""
  return "$rc"
}

timed() {  # $1 key, $2.. command: stdout -> $RUN/$1.out, stderr -> $RUN/$1.err
  local key=$1; shift
  local t0 t1 rc=0
  log "$key"
  t0=$(date +%s.%N)
  # time(1) reports the largest max RSS among the processes it waited for
  # (timeout and the command): the command's, in practice.
  bounded "$RUN/$key.out" /usr/bin/time -f '%M' -o "$RUN/$key.rss" \
    timeout -k 10 "$LIMIT" "$@" 2> "$RUN/$key.err" || rc=$?
  t1=$(date +%s.%N)
  SECS[$key]=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
  RSS[$key]=$(tail -n 1 "$RUN/$key.rss" 2>/dev/null | tr -cd 0-9)
  RC[$key]=$rc
  MOVED[$key]=$RECORDS
  BAD[$key]=""
  if [ "$rc" -ne 0 ]; then
    if [ "$rc" -eq 124 ]; then bad "$key" "timed out after ${LIMIT} s"; else bad "$key" "exit status $rc"; fi
    log "$key failed ($rc); last lines of $RUN/$key.err:"; tail -n 5 "$RUN/$key.err" >&2 || true
  fi
}

line_name() {  # $1 get, list or put: the wrk line's name in the tables of run.sh and server_pg.sh
  case $1 in
    get)  echo "GET one record" ;;
    list) echo "GET records?_since=<mid>&_limit=100" ;;
    put)  echo "PUT one record" ;;
  esac
}

users_data() {  # $RECORDS users in $DATA/users.jsonl and users.csv (bench/gen_users.py; kept between runs): sets JSONL and CSV
  if [ ! -f "$DATA/users.jsonl" ] || [ ! -f "$DATA/users.csv" ]; then
    log "generating $RECORDS users in $DATA"
    bounded /dev/null timeout -k 10 "$LIMIT" python3 bench/gen_users.py "$RECORDS" "$DATA"
  fi
  JSONL=$(cd "$DATA" && pwd)/users.jsonl
  CSV=$(cd "$DATA" && pwd)/users.csv
}

bad() {  # $1 key, $2 reason: mark the line INVALID (reasons accumulate)
  BAD[$1]="${BAD[$1]:+${BAD[$1]}; }$2"
}

rows() {  # $1 SQLite file: rows in its table users (empty when unreadable)
  sqlite3 "$1" 'SELECT count(*) FROM users' 2>/dev/null || true
}

check_rows() {  # $1 key, $2 db, $3 expected rows
  local n; n=$(rows "$2")
  [ "$n" = "$3" ] || bad "$1" "${n:-no} rows in $(basename "$2"), expected $3"
}

field() {  # $1 file with a JSON object (Ferry's report), $2 field: its value (empty if missing)
  python3 -c 'import json, sys
try:
    v = json.loads(open(sys.argv[1]).read()).get(sys.argv[2])
except Exception:
    v = None
print("" if v is None else v)' "$1" "$2"
}

check_report() {  # $1 key, then FIELD=VALUE pairs the JSON report must hold
  local key=$1; shift
  local pair got
  for pair in "$@"; do
    got=$(field "$RUN/$key.out" "${pair%%=*}")
    [ "$got" = "${pair#*=}" ] || bad "$key" "report ${pair%%=*}=${got:-?}, expected ${pair#*=}"
  done
}

# ---- table cells ------------------------------------------------------------

ratio() {  # $1 numerator, $2 denominator: "3.2×" (n/a when the denominator is 0)
  awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.1f×", a / b; else print "n/a" }'
}

per_second() {  # $1 records, $2 seconds: records/s grouped by thousands ("68,965")
  awk -v n="$1" -v s="$2" 'BEGIN { if (s > 0) print grouped(int(n / s)); else print "n/a" }
    function grouped(x,  t) { t = ""; while (x >= 1000) { t = sprintf(",%03d", x % 1000) t; x = int(x / 1000) }; return x t }'
}

megabytes() {  # $1 kilobytes: megabytes with one decimal
  awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'
}

say_vs_dlt() {  # $1 Ferry's line key, $2 label: the time and memory ratios of Ferry to dlt
  # (uses the calling script's valid, SECS and RSS)
  if valid dlt && valid "$1"; then
    echo "$2: dlt's time ÷ Ferry's = $(ratio "${SECS[dlt]}" "${SECS[$1]}")" \
         "(above 1×: Ferry is faster); Ferry's peak RSS ÷ dlt's = $(ratio "${RSS[$1]:-0}" "${RSS[dlt]:-0}")."
  else
    echo "Ferry vs dlt: n/a (a line is INVALID)"
  fi
}

# ---- a throwaway PostgreSQL (postgres.sh) -------------------------------------
# start_pg: initdb + pg_ctl start on a temporary folder and a free port, password
# authentication (scram-sha-256), the server's default settings otherwise; sets
# PG_BIN, PG_DIR and PG_PORT. stop_pg stops it and removes the folder (call it
# from the caller's cleanup). PostgreSQL refuses to run as root: as root, the
# server programs run as the postgres user (runuser).
PG_USER=bench
PG_PASSWORD=bench-password
PG_BIN=""
PG_DIR=""
PG_PORT=""

pg_bin() {  # the folder of initdb/pg_ctl/psql: $FERRY_PG_BIN, pg_config --bindir, the newest /usr/lib/postgresql/*/bin, PATH
  local dir
  for dir in "${FERRY_PG_BIN:-}" "$(pg_config --bindir 2>/dev/null || true)" \
             $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5 -n -r) \
             "$(dirname "$(command -v pg_ctl 2>/dev/null || echo /nonexistent/x)")"; do
    if [ -n "$dir" ] && [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ] && [ -x "$dir/psql" ]; then echo "$dir"; return 0; fi
  done
  return 1
}

as_postgres() {  # runs a server program, as the postgres user when we are root
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start_pg() {
  PG_BIN=$(pg_bin) || { echo "PostgreSQL is not installed (no initdb/pg_ctl/psql; set FERRY_PG_BIN or apt-get install postgresql)" >&2; return 1; }
  PG_DIR=$(mktemp -d "${TMPDIR:-/tmp}/ferry-bench-pg.XXXXXX")
  printf %s "$PG_PASSWORD" > "$PG_DIR/password"
  if [ "$(id -u)" -eq 0 ]; then chown -R postgres "$PG_DIR"; fi
  as_postgres "$PG_BIN/initdb" -D "$PG_DIR/data" -U "$PG_USER" --pwfile "$PG_DIR/password" \
    --auth scram-sha-256 -E UTF8 > "$PG_DIR/initdb.log" 2>&1 || { cat "$PG_DIR/initdb.log" >&2; return 1; }
  PG_PORT=$(free_port)
  # Output to the log, never to our stdout: the server outlives pg_ctl and would hold a pipe open.
  as_postgres "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 \
    -o "-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1" start > /dev/null 2>&1 \
    || { echo "pg_ctl start failed:" >&2; cat "$PG_DIR/server.log" >&2; return 1; }
}

stop_pg() {
  [ -n "$PG_DIR" ] || return 0
  as_postgres "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w stop > /dev/null 2>&1 || true
  rm -rf "$PG_DIR"
  PG_DIR=""
}

pg_psql() {  # $1 database, then psql arguments (-c SQL …): unaligned, tuples only, stop at the first error
  local db=$1; shift
  PGPASSWORD=$PG_PASSWORD "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" -d "$db" -v ON_ERROR_STOP=1 -Atq "$@"
}

pg_url() {  # $1 database: its postgres:// URL (add #TABLE)
  echo "postgres://$PG_USER:$PG_PASSWORD@127.0.0.1:$PG_PORT/$1"
}

# ---- HTTP load with wrk, Kinto (run.sh, server_pg.sh) -------------------------
# wrk_run and wrk_stats measure one line; check_api is the curl sanity check before
# timing; ensure_kinto and kinto_ini install and configure Kinto 26.5 like Ferry
# (basicauth, any authenticated user creates buckets, logging at WARNING).

ensure_wrk() {
  command -v wrk >/dev/null 2>&1 && return 0
  log "installing wrk (apt-get)"
  apt_install wrk
}

wrk_timeout() {  # $1 wrk duration (10, 10s, 2m, 1h): seconds one wrk run may take (the duration + 60 s)
  case $1 in
    *h) echo $(( ${1%h} * 3600 + 60 )) ;;
    *m) echo $(( ${1%m} * 60 + 60 )) ;;
    *s) echo $(( ${1%s} + 60 )) ;;
    *)  echo $(( $1 + 60 )) ;;
  esac
}

wrk_run() {  # $1 output file, $2 connections, $3 threads, $4 Authorization header ("" for none), $5 url, $6.. extra wrk args
  # For $DURATION, bounded by `timeout`. --timeout 10s: a slow answer counts as
  # latency, not as a socket error. --latency prints the percentiles (wrk_percentiles).
  local out=$1 connections=$2 threads=$3 auth=$4 url=$5 header=()
  shift 5
  [ -z "$auth" ] || header=(-H "Authorization: $auth")
  timeout "$(wrk_timeout "$DURATION")" wrk -c "$connections" -t "$threads" -d "$DURATION" --timeout 10s --latency \
    "${header[@]}" "$@" "$url" > "$out"
}

wrk_stats() {  # $1 wrk output: "REQ/S AVG-LATENCY NON-2XX SOCKET-ERRORS" on one line
  # wrk prints "Socket errors: connect 0, read 0, write 0, timeout 0" (summed here)
  # and "Non-2xx or 3xx responses: N" only when there is at least one.
  awk '/^Requests\/sec:/ { rps = $2 }
       $1 == "Latency" && lat == "" { lat = $2 }
       /Non-2xx or 3xx responses:/ { non2xx = $NF }
       /Socket errors:/ { for (i = 3; i <= NF; i++) if ($i ~ /^[0-9]+,?$/) sock += $i + 0 }
       END { print (rps == "" ? 0 : rps), (lat == "" ? "?" : lat), non2xx + 0, sock + 0 }' "$1"
}

wrk_percentiles() {  # $1 wrk output (run with --latency): "P50 P99" in milliseconds, "? ?" when missing
  # wrk prints "Latency Distribution" then lines like "     50%  635.91us" and "     99%    1.20ms".
  awk 'function ms(v) {
         if (v ~ /us$/) return sprintf("%.2f", v / 1000)
         if (v ~ /ms$/) return sprintf("%.2f", v + 0)
         if (v ~ /m$/)  return sprintf("%.0f", v * 60000)
         if (v ~ /s$/)  return sprintf("%.0f", v * 1000)
         return "?" }
       /Latency Distribution/ { dist = 1; next }
       dist && $1 == "50%" { p50 = ms($2) }
       dist && $1 == "99%" { p99 = ms($2) }
       END { print (p50 == "" ? "?" : p50), (p99 == "" ? "?" : p99) }' "$1"
}

wrk_valid() {  # $1 "non2xx/socket": true when both counts are zero
  [ "$1" = "0/0" ]
}

wrk_cell() {  # $1 req/s, $2 "non2xx/socket": the req/s, or INVALID with the error counts
  if wrk_valid "$2"; then printf '%s' "$1"
  else printf 'INVALID (%s; %s non-2xx, %s socket errors)' "$1" "${2%/*}" "${2#*/}"; fi
}

check_api() {  # $1 label, $2 records URL, $3 _since value, $4 Authorization header ("" for none)
  # A line is only worth timing if it answers 200 with the expected content: record
  # u00042, and a full page of 100 records changed since $3. Exits the script otherwise.
  local label=$1 url=$2 since=$3 auth=() code n
  [ -z "$4" ] || auth=(-H "Authorization: $4")
  code=$(curl -s -o /dev/null -w '%{http_code}' "${auth[@]}" "$url/u00042")
  [ "$code" = 200 ] || { echo "$label: GET record answered $code" >&2; exit 1; }
  n=$(curl -fsS "${auth[@]}" "$url?_since=$since&_limit=100" \
    | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["data"]))')
  [ "$n" = 100 ] || { echo "$label: list request returned $n records, not 100" >&2; exit 1; }
}

ensure_kinto() {  # $1 venv, $2 "" or postgresql: install Kinto 26.5 (with that extra) unless there; sets KINTO_VERSION
  local venv=$1 extra=${2:-} probe="import kinto"
  [ -z "$extra" ] || probe="import kinto, psycopg2, sqlalchemy, zope.sqlalchemy"
  [ -x "$venv/bin/python" ] || { log "creating $venv"; python3 -m venv "$venv"; }
  if ! "$venv/bin/python" -c "$probe" 2>/dev/null || [ ! -x "$venv/bin/kinto" ]; then
    log "installing Kinto 26.5${extra:+ [$extra]} into $venv"
    # 26.5 is the target; fall back to the newest 26.x if 26.5 is ever pulled.
    timeout 900 "$venv/bin/pip" install -q "kinto${extra:+[$extra]}==26.5.*" >&2 \
      || timeout 900 "$venv/bin/pip" install -q "kinto${extra:+[$extra]}>=26,<27" >&2
  fi
  KINTO_VERSION=$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("kinto"))')
}

kinto_ini() {  # $1 venv, $2 ini file, $3.. `kinto init` backend options (--backend memory …)
  # `kinto init` writes a config for the accounts plugin (multiauth.policies =
  # account, bucket creation for account:admin only). Switch it to Kinto's
  # built-in basicauth policy, where any user:password is a principal, and let
  # any authenticated user create buckets: the same rules as Ferry. Logging goes
  # down to WARNING (Ferry runs with --log-level warning too); the default DEBUG
  # console logging of every request would otherwise dominate Kinto's numbers.
  local venv=$1 ini=$2
  shift 2
  timeout 120 "$venv/bin/kinto" init --ini "$ini" "$@" </dev/null >&2
  sed -i \
    -e 's/^multiauth\.policies = .*/multiauth.policies = basicauth/' \
    -e 's/^kinto\.bucket_create_principals = .*/kinto.bucket_create_principals = system.Authenticated/' \
    -e '/^\[logger_root\]/,/^\[/ s/^level = .*/level = WARNING/' \
    -e '/^\[logger_kinto\]/,/^\[/ s/^level = .*/level = WARNING/' \
    "$ini"
  # Fail loudly if a future `kinto init` writes something these edits miss.
  grep -q '^multiauth\.policies = basicauth$' "$ini"
  grep -q '^kinto\.bucket_create_principals = system\.Authenticated$' "$ini"
}
