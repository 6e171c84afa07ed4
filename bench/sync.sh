#!/usr/bin/env bash
# Whole-system sync benchmark: the same users loaded into SQLite by the sqlite3
# shell (the ceiling), by dlt, and by Ferry (straight from the file, and through
# a Ferry server, full then incremental).
#
# Usage:  bench/sync.sh                        # RECORDS=1000000 by default
#         RECORDS=20000 bench/sync.sh
#         FERRY_BIN=/path/to/ferry bench/sync.sh   # skip the release build
#         SKIP_FERRY=1 bench/sync.sh           # only the sqlite3 and dlt lines
#         SKIP_DLT=1 bench/sync.sh             # no dlt line (nothing to install from PyPI)
#         SKIP_SERVER=1 bench/sync.sh          # only the file loads (no Ferry server lines)
#
# What it does, one line after the other so they never compete for the 2 cores:
#   1. builds Ferry in release mode (.build-release/) unless FERRY_BIN or
#      SKIP_FERRY is set; installs sqlite3 and GNU time (apt) if missing, and
#      dlt + SQLAlchemy (pip, pinned, into bench/.venv) unless installed;
#   2. generates $RECORDS users as users.jsonl and users.csv (bench/gen_users.py,
#      kept in bench/.work/sync/data-$RECORDS/ and reused by later runs);
#   3. times each line with its peak RSS (/usr/bin/time %M, the largest process
#      of the line), each bounded by `timeout`:
#        sqlite3 .import of users.csv      (table created first with the same
#                                           shape as Ferry's: id TEXT PRIMARY KEY)
#        dlt: users.jsonl -> SQLite        (bench/dlt_load.py, sqlalchemy destination)
#        ferry sync file:users.jsonl sqlite:…#users --mode full
#        ferry sync file:users.csv sqlite:…#users --mode full
#        ferry sync file:users.jsonl http://…/collections/users --mode full   (seeds a Ferry server)
#        ferry sync http://…/collections/users sqlite:…#users --mode incremental   (1st run: full read)
#        bench/mutate_users.py changes 1 % on the server (0.8 % updates, 0.1 % creates,
#        0.1 % deletes, through /v1/batch), then the same incremental run again;
#        sqlite3 applying the same changes to a copy of the target as the full read
#        left it (the incremental's ceiling: .import into temporary tables, one
#        UPSERT and one DELETE, in one transaction);
#   4. checks every output (row count of each SQLite table = RECORDS, record
#      count on the server, Ferry's JSON report: nothing failed, and the second
#      incremental run moved exactly the changed records), marks a line INVALID
#      otherwise, and prints a Markdown table: each line's rate as a percentage of the
#      ceiling's (sqlite3 .import; the target is ≥ 70 % for the file loads) and, for
#      Ferry's file loads, as a multiple of dlt's (the target is ≥ 10×).
# The Ferry server is stopped on exit. Exit status 2 when a line is INVALID.
set -euo pipefail

cd "$(dirname "$0")/.."          # the repo root: every path below is relative to it
RECORDS=${RECORDS:-1000000}
SKIP_FERRY=${SKIP_FERRY:-0}
SKIP_DLT=${SKIP_DLT:-0}
SKIP_SERVER=${SKIP_SERVER:-0}
WORK=bench/.work/sync             # git-ignored scratch
DATA=$WORK/data-$RECORDS          # the generated files, kept between runs
RUN=$WORK/run                     # this run's databases, outputs and logs
VENV=bench/.venv                  # git-ignored venv (Kinto for run.sh, dlt here)
USERPASS=bench:bench              # Ferry's server takes any user:password
AUTH="Basic $(printf %s "$USERPASS" | base64)"
# dlt, SQLAlchemy (and Flask, for rest.sh) versions: pinned in bench/lib.sh.

case $RECORDS in ''|*[!0-9]*) echo "RECORDS must be a whole number, not '$RECORDS'" >&2; exit 1 ;; esac
[ "$RECORDS" -ge 1000 ] || { echo "RECORDS must be at least 1000 (the 1 % change needs 0.1 % >= 1)" >&2; exit 1; }
# Upper bound of one timed line: 5 minutes plus 4 ms a record (1M: 73 min).
LIMIT=$(( 300 + RECORDS / 250 ))

. bench/lib.sh                     # log, find_ferry, stop_server, free_port, wait_ready,
                                   # ensure_bench_venv, apt_install, timed, bad, check_rows, check_report

# ---- 1. tools -------------------------------------------------------------

command -v sqlite3 >/dev/null 2>&1 || { log "installing sqlite3 (apt-get)"; apt_install sqlite3; }
[ -x /usr/bin/time ] || { log "installing GNU time (apt-get)"; apt_install time; }

FERRY=""
if [ "$SKIP_FERRY" != 1 ]; then
  find_ferry
fi

if [ "$SKIP_DLT" != 1 ]; then ensure_bench_venv "$VENV"; else DLT_VERSION="(skipped)"; SQLALCHEMY_VERSION="(skipped)"; fi

# ---- helpers --------------------------------------------------------------

rm -rf "$RUN"
mkdir -p "$RUN" "$DATA"
SERVER_DATA=""
SERVER_PID=""
CHILD_PID=""     # the line being run (see bounded)

cleanup() { stop_child; stop_server; if [ -n "$SERVER_DATA" ]; then rm -rf "$SERVER_DATA"; fi; }
trap cleanup EXIT
trap 'exit 130' INT TERM


# Per line (key): SECS seconds, RSS peak KB, RC exit status, MOVED records it
# carried (for records/s), BAD why it is INVALID (empty: valid). See timed in lib.sh.
declare -A SECS RSS RC MOVED BAD

# ---- 2. data --------------------------------------------------------------

users_data   # $DATA/users.jsonl and users.csv: $JSONL, $CSV

# ---- 3. sqlite3: the ceiling ---------------------------------------------

# The same table shape Ferry creates (key column TEXT PRIMARY KEY NOT NULL,
# typed columns), so the ceiling maintains the same key index.
timed sqlite3 sqlite3 "$RUN/sqlite3.db" \
  'CREATE TABLE users (id TEXT PRIMARY KEY NOT NULL, username TEXT, age INTEGER, address TEXT, updated_at INTEGER)' \
  ".import --csv --skip 1 $CSV users"
check_rows sqlite3 "$RUN/sqlite3.db" "$RECORDS"

# ---- 4. dlt ---------------------------------------------------------------

# Telemetry off, and every dlt file (config lookup, pipeline state, load
# packages) under $RUN/dlt rather than ~/.dlt or ./.dlt.
LINES=(sqlite3)
if [ "$SKIP_DLT" != 1 ]; then
  timed dlt env RUNTIME__DLTHUB_TELEMETRY=false DLT_DATA_DIR="$RUN/dlt" DLT_PROJECT_DIR="$RUN/dlt" \
    "$VENV/bin/python" bench/dlt_load.py "$JSONL" "$RUN/dlt.db" "$RUN/dlt/pipelines"
  check_rows dlt "$RUN/dlt.db" "$RECORDS"
  LINES+=(dlt)
fi

# ---- 5. Ferry ---------------------------------------------------------------

CHANGES=""
if [ -n "$FERRY" ]; then
  LINES+=(ferry_file ferry_csv)

  timed ferry_file "$FERRY" sync "file:$JSONL" "sqlite:$RUN/ferry.db#users" \
    --mode full --state "$RUN/state-file.db" --json
  check_rows ferry_file "$RUN/ferry.db" "$RECORDS"
  check_report ferry_file read="$RECORDS" created="$RECORDS" failed=0

  timed ferry_csv "$FERRY" sync "file:$CSV" "sqlite:$RUN/ferry-csv.db#users" \
    --mode full --state "$RUN/state-csv.db" --json
  check_rows ferry_csv "$RUN/ferry-csv.db" "$RECORDS"
  check_report ferry_csv read="$RECORDS" created="$RECORDS" failed=0
fi

if [ -n "$FERRY" ] && [ "$SKIP_SERVER" != 1 ]; then
  LINES+=(ferry_seed ferry_inc1 ferry_inc2)

  SERVER_DATA=$(mktemp -d "${TMPDIR:-/tmp}/ferry-sync-bench.XXXXXX")
  PORT=$(free_port)
  BASE="http://127.0.0.1:$PORT"
  COLLECTION="$BASE/v1/buckets/bench/collections/users"
  log "starting Ferry server on 127.0.0.1:$PORT ($FERRY)"
  "$FERRY" serve --host 127.0.0.1 --port "$PORT" --data "$SERVER_DATA" --log-level warning \
    --batch-max-requests 1000 > "$RUN/ferry-server.log" 2>&1 &
  SERVER_PID=$!
  wait_ready "$PORT" "$RUN/ferry-server.log"

  server_count() {  # records in the server's collection (Total-Records, sent on HEAD only)
    curl -fsS -I -H "Authorization: $AUTH" "$COLLECTION/records" 2>/dev/null \
      | tr -d '\r' | awk -F': *' 'tolower($1) == "total-records" { print $2 }' || true
  }

  timed ferry_seed "$FERRY" sync "file:$JSONL" "$COLLECTION" \
    --mode full --target-auth "$USERPASS" --state "$RUN/state-seed.db" --json
  check_report ferry_seed read="$RECORDS" failed=0
  n=$(server_count)
  [ "$n" = "$RECORDS" ] || bad ferry_seed "${n:-no} records on the server, expected $RECORDS"

  timed ferry_inc1 "$FERRY" sync "$COLLECTION" "sqlite:$RUN/fromserver.db#users" \
    --mode incremental --source-auth "$USERPASS" --state "$RUN/state-server.db" --json
  check_rows ferry_inc1 "$RUN/fromserver.db" "$RECORDS"
  check_report ferry_inc1 failed=0
  # The target as the full read left it (Ferry closed it: its WAL is in the file), for the
  # incremental's ceiling below: one copy to apply the changes to, one to find them with.
  cp "$RUN/fromserver.db" "$RUN/inc-before.db"
  cp "$RUN/fromserver.db" "$RUN/sqlite3-inc.db"

  log "changing 1 % of the records on the server (bench/mutate_users.py)"
  if bounded "$RUN/mutate.out" timeout -k 10 "$LIMIT" \
       python3 bench/mutate_users.py 127.0.0.1 "$PORT" "$USERPASS" "$RECORDS"; then
    CHANGES=$(cat "$RUN/mutate.out")
    UPDATED=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["updated"])' "$CHANGES")
    CREATED=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["created"])' "$CHANGES")
    DELETED=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["deleted"])' "$CHANGES")
  else
    log "mutate_users.py failed"; CHANGES=""; UPDATED=0; CREATED=0; DELETED=0
  fi

  timed ferry_inc2 "$FERRY" sync "$COLLECTION" "sqlite:$RUN/fromserver.db#users" \
    --mode incremental --source-auth "$USERPASS" --state "$RUN/state-server.db" --json
  MOVED[ferry_inc2]=$(( UPDATED + CREATED + DELETED ))
  if [ -z "$CHANGES" ]; then bad ferry_inc2 "the 1 % change on the server failed"; fi
  check_report ferry_inc2 created="$CREATED" updated="$UPDATED" deleted="$DELETED" failed=0
  check_rows ferry_inc2 "$RUN/fromserver.db" $(( RECORDS + CREATED - DELETED ))
  n=$(sqlite3 "$RUN/fromserver.db" "SELECT count(*) FROM users WHERE address LIKE '% Changed Street,%'" 2>/dev/null || true)
  [ "$n" = "$UPDATED" ] || bad ferry_inc2 "${n:-no} rows carry the update, expected $UPDATED"
  stop_server

  # The incremental's ceiling: sqlite3 alone applying the same changes (the rows Ferry wrote,
  # the keys it deleted: found untimed by comparing the table before and after) to a copy of
  # the same target, in one transaction: .import into temporary tables, one UPSERT, one DELETE.
  LINES+=(sqlite3_inc)
  COLS=$(sqlite3 "$RUN/fromserver.db" "SELECT group_concat('\"' || name || '\"', ', ') FROM pragma_table_info('users')")
  SETS=$(sqlite3 "$RUN/fromserver.db" "SELECT group_concat('\"' || name || '\" = excluded.\"' || name || '\"', ', ') FROM pragma_table_info('users') WHERE name <> 'id'")
  sqlite3 -csv "$RUN/fromserver.db" "ATTACH '$RUN/inc-before.db' AS b;
    SELECT $COLS FROM main.users u WHERE NOT EXISTS (SELECT 1 FROM b.users o WHERE o.id = u.id AND o.address IS u.address)" > "$RUN/inc-upserts.csv"
  sqlite3 -csv "$RUN/fromserver.db" "ATTACH '$RUN/inc-before.db' AS b;
    SELECT id FROM b.users o WHERE NOT EXISTS (SELECT 1 FROM main.users u WHERE u.id = o.id)" > "$RUN/inc-deletes.csv"
  timed sqlite3_inc sqlite3 "$RUN/sqlite3-inc.db" "BEGIN" \
    "CREATE TEMP TABLE up AS SELECT * FROM users WHERE 0" "CREATE TEMP TABLE del (id TEXT)" \
    ".import --csv $RUN/inc-upserts.csv up" ".import --csv $RUN/inc-deletes.csv del" \
    "INSERT INTO users ($COLS) SELECT $COLS FROM up WHERE true ON CONFLICT (id) DO UPDATE SET $SETS" \
    "DELETE FROM users WHERE id IN (SELECT id FROM del)" "COMMIT"
  MOVED[sqlite3_inc]=$(( $(wc -l < "$RUN/inc-upserts.csv") + $(wc -l < "$RUN/inc-deletes.csv") ))
  [ "${MOVED[sqlite3_inc]}" = "${MOVED[ferry_inc2]}" ] || bad sqlite3_inc "${MOVED[sqlite3_inc]} changes found, Ferry reported ${MOVED[ferry_inc2]}"
  a=$(sqlite3 "$RUN/sqlite3-inc.db" "SELECT * FROM users ORDER BY id" | md5sum)
  b=$(sqlite3 "$RUN/fromserver.db" "SELECT * FROM users ORDER BY id" | md5sum)
  [ "$a" = "$b" ] || bad sqlite3_inc "its table differs from Ferry's"
fi

# ---- 6. report ------------------------------------------------------------

name() {
  case $1 in
    sqlite3)    echo "sqlite3 .import users.csv (ceiling)" ;;
    dlt)        echo "dlt $DLT_VERSION: users.jsonl → SQLite" ;;
    ferry_file) echo "Ferry: users.jsonl → SQLite (full)" ;;
    ferry_csv)  echo "Ferry: users.csv → SQLite (full)" ;;
    ferry_seed) echo "Ferry: users.jsonl → Ferry server (full)" ;;
    ferry_inc1) echo "Ferry: server → SQLite (incremental, 1st run = full read)" ;;
    ferry_inc2) echo "Ferry: server → SQLite (incremental after 1 % changed)" ;;
    sqlite3_inc) echo "sqlite3: the same changes applied to a copy (ceiling of the incremental)" ;;
  esac
}
valid() { [ -z "${BAD[$1]}" ]; }

echo
echo "Sync benchmark — $RECORDS records, $(nproc) cores, sqlite3 $(sqlite3 --version | cut -d' ' -f1)," \
     "dlt $DLT_VERSION + SQLAlchemy $SQLALCHEMY_VERSION${FERRY:+, Ferry $FERRY}"
echo
INVALID=0
echo "| line | seconds | records/s | peak RSS MB | time vs sqlite3 | rate, % of the ceiling | rate vs dlt |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
for key in "${LINES[@]}"; do
  secs=${SECS[$key]}
  rate=$(per_second "${MOVED[$key]}" "$secs")
  rss=$(megabytes "${RSS[$key]:-0}")
  case $key in
    dlt|ferry_file|ferry_csv|ferry_seed|ferry_inc1)
      if valid "$key" && valid sqlite3; then
        vs=$(ratio "$secs" "${SECS[sqlite3]}")
        pct=$(awk -v a="${SECS[sqlite3]}" -v b="$secs" 'BEGIN { if (b > 0) printf "%.0f %%", 100 * a / b; else print "n/a" }')
      else vs="n/a"; pct="n/a"; fi ;;
    sqlite3) vs="1.0×"; pct="100 %" ;;
    *) vs="—"; pct="—" ;;
  esac
  case $key in
    ferry_file|ferry_csv)
      if [ "$SKIP_DLT" != 1 ] && valid "$key" && valid dlt; then vsdlt=$(ratio "${SECS[dlt]}" "$secs"); else vsdlt="n/a"; fi ;;
    *) vsdlt="—" ;;
  esac
  cell=$secs
  if ! valid "$key"; then cell="INVALID ($secs; ${BAD[$key]})"; INVALID=1; fi
  echo "| $(name "$key") | $cell | $rate | $rss | $vs | $pct | $vsdlt |"
done
echo
if [ -n "$FERRY" ] && [ "$SKIP_SERVER" != 1 ]; then echo "records/s of the last line: changed records (${CHANGES:-none}) per second."; fi
if [ -n "$FERRY" ]; then
  if [ "$SKIP_DLT" != 1 ]; then say_vs_dlt ferry_file "Ferry/dlt (users.jsonl → SQLite)"; fi
  if [ "$SKIP_SERVER" = 1 ]; then :
  elif valid ferry_file && valid ferry_seed; then
    echo "Into a server, per record: $(ratio "${SECS[ferry_seed]}" "${SECS[ferry_file]}") the time of the same load straight into SQLite."
  fi
  if [ "$SKIP_SERVER" = 1 ]; then :
  elif valid ferry_inc1 && valid ferry_inc2; then
    pct=$(awk -v a="${SECS[ferry_inc2]}" -v b="${SECS[ferry_inc1]}" 'BEGIN { if (b > 0) printf "%.1f", 100 * a / b; else print "n/a" }')
    echo "Incremental after a 1 % change: ${SECS[ferry_inc2]} s = $pct % of the full server → SQLite read (${SECS[ferry_inc1]} s)."
    if valid sqlite3_inc; then
      pct=$(awk -v a="${SECS[sqlite3_inc]}" -v b="${SECS[ferry_inc1]}" 'BEGIN { if (b > 0) printf "%.1f", 100 * a / b; else print "n/a" }')
      of=$(awk -v a="${SECS[sqlite3_inc]}" -v b="${SECS[ferry_inc2]}" 'BEGIN { if (b > 0) printf "%.0f", 100 * a / b; else print "n/a" }')
      echo "Its ceiling (sqlite3 applying the same changes): ${SECS[sqlite3_inc]} s = $pct % of the full read; Ferry's incremental runs at $of % of that ceiling's rate."
    fi
  else
    echo "Incremental vs full: n/a (a line is INVALID)"
  fi
fi
echo
echo "Outputs, reports and logs: $RUN/ (*.out, *.err, *.db); data: $DATA/"
if [ "$INVALID" -ne 0 ]; then echo "some lines are INVALID: their numbers are not valid" >&2; exit 2; fi
