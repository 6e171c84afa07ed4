#!/usr/bin/env bash
# PostgreSQL load benchmark (issue 6): $RECORDS users from JSON Lines into a PostgreSQL
# table by `ferry sync`, side by side with `psql \copy` of the same users as CSV (the
# ceiling: the server's own bulk loader fed by its own client), on one throwaway server.
#
# Usage:  bench/postgres.sh                        # RECORDS=1000000 by default
#         RECORDS=100000 bench/postgres.sh
#         FERRY_BIN=/path/to/ferry bench/postgres.sh   # skip the release build
#
# What it does, one line after the other so they never compete for the cores:
#   1. builds Ferry in release mode (.build-release/) unless FERRY_BIN is set; installs
#      GNU time (apt) if missing; needs PostgreSQL's server programs (initdb, pg_ctl, psql:
#      FERRY_PG_BIN, pg_config or /usr/lib/postgresql/*/bin);
#   2. generates the users as users.jsonl and users.csv with bench/gen_users.py (the same
#      files as bench/sync.sh, kept in bench/.work/sync/data-$RECORDS/);
#   3. starts a throwaway PostgreSQL (initdb + pg_ctl on a temporary folder and a free
#      port, password authentication, default settings; as root through runuser), one
#      fresh database per line, and times each line with its peak RSS:
#        psql \copy users FROM users.csv   into a table created first with the shape Ferry
#                                           gives it (id text PRIMARY KEY, bigint and text columns;
#                                           PostgreSQL's default fillfactor, where Ferry's tables have 50)
#        ferry sync file:users.jsonl postgres://…#users    (Ferry makes the table; batches of 10,000)
#        the same with --batch-size 1000 (the default of other targets)
#        ferry sync file:users.csv postgres://…#users      (the same users as CSV, a new table)
#        the same again into the first line's table (every record an update with the values
#          the row already has: the upsert path, which leaves such rows as they are);
#        users-changed.jsonl into that table (every record an update with a new address:
#          every row rewritten);
#   4. checks every line (row count = RECORDS, Ferry's JSON report: read, created or updated,
#      nothing failed), marks a line INVALID otherwise, and prints a Markdown table with each
#      line's rate against \copy's. Targets (issue 16): new rows at 80 % of \copy's rate, updates at 50 %.
# The server is stopped and its folder removed on exit. Exit status 2 when a line is INVALID.
set -euo pipefail

cd "$(dirname "$0")/.."          # the repo root: every path below is relative to it
RECORDS=${RECORDS:-1000000}
DATA=bench/.work/sync/data-$RECORDS   # shared with bench/sync.sh
RUN=bench/.work/postgres/run          # this run's reports and logs
TARGET_PERCENT=50

case $RECORDS in ''|*[!0-9]*) echo "RECORDS must be a whole number, not '$RECORDS'" >&2; exit 1 ;; esac
[ "$RECORDS" -ge 1 ] || { echo "RECORDS must be at least 1" >&2; exit 1; }
LIMIT=$(( 300 + RECORDS / 250 ))   # upper bound of one line, in seconds

. bench/lib.sh                     # log, find_ferry, apt_install, timed, bad, check_report, per_second,
                                   # megabytes, start_pg, stop_pg, pg_psql, pg_url

# ---- 1. tools -------------------------------------------------------------

[ -x /usr/bin/time ] || { log "installing GNU time (apt-get)"; apt_install time; }
pg_bin > /dev/null || { echo "PostgreSQL is not installed (set FERRY_PG_BIN or apt-get install postgresql)" >&2; exit 1; }
find_ferry

rm -rf "$RUN"
mkdir -p "$RUN" "$DATA"
CHILD_PID=""     # the line being run (see bounded)
cleanup() { stop_child; stop_pg; }
trap cleanup EXIT
trap 'exit 130' INT TERM

declare -A SECS RSS RC MOVED BAD

# ---- 2. data --------------------------------------------------------------

users_data   # $DATA/users.jsonl and users.csv: $JSONL, $CSV

# ---- 3. the server and the lines -------------------------------------------

log "starting a throwaway PostgreSQL ($(pg_bin))"
start_pg
for db in copy ferry ferry1k ferrycsv; do pg_psql postgres -c "CREATE DATABASE $db"; done

count_rows() {  # $1 key, $2 database, $3 expected rows in table users
  local n; n=$(pg_psql "$2" -c 'SELECT count(*) FROM users' 2>/dev/null || true)
  [ "$n" = "$3" ] || bad "$1" "${n:-no} rows in $2.users, expected $3"
}

# The ceiling: the same table shape Ferry creates (the key as primary key, so the same index is kept up).
pg_psql copy -c 'CREATE TABLE users (id text PRIMARY KEY, username text, age bigint, address text, updated_at bigint)'
timed psql_copy env PGPASSWORD="$PG_PASSWORD" "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" -d copy \
  -v ON_ERROR_STOP=1 -q -c "\\copy users FROM '$CSV' WITH (FORMAT csv, HEADER true)"
count_rows psql_copy copy "$RECORDS"

timed ferry "$FERRY" sync "file:$JSONL" "$(pg_url ferry)#users" --mode full --state "$RUN/state.db" --json
count_rows ferry ferry "$RECORDS"
check_report ferry read="$RECORDS" created="$RECORDS" failed=0

timed ferry_1k "$FERRY" sync "file:$JSONL" "$(pg_url ferry1k)#users" --mode full --batch-size 1000 --state "$RUN/state.db" --json
count_rows ferry_1k ferry1k "$RECORDS"
check_report ferry_1k read="$RECORDS" created="$RECORDS" failed=0

timed ferry_csv "$FERRY" sync "file:$CSV" "$(pg_url ferrycsv)#users" --mode full --state "$RUN/state.db" --json
count_rows ferry_csv ferrycsv "$RECORDS"
check_report ferry_csv read="$RECORDS" created="$RECORDS" failed=0

timed ferry_replay "$FERRY" sync "file:$JSONL" "$(pg_url ferry)#users" --mode full --state "$RUN/state.db" --json
count_rows ferry_replay ferry "$RECORDS"
check_report ferry_replay read="$RECORDS" created=0 updated="$RECORDS" failed=0

# Every record with a new address (the same shape and size: "Main" becomes "Mall").
CHANGED=$DATA/users-changed.jsonl
[ -f "$CHANGED" ] || sed 's/ Main Street/ Mall Street/' "$JSONL" > "$CHANGED"
timed ferry_changed "$FERRY" sync "file:$CHANGED" "$(pg_url ferry)#users" --mode full --state "$RUN/state.db" --json
count_rows ferry_changed ferry "$RECORDS"
check_report ferry_changed read="$RECORDS" created=0 updated="$RECORDS" failed=0
n=$(pg_psql ferry -c "SELECT count(*) FROM users WHERE address LIKE '% Mall Street%'")
[ "$n" = "$RECORDS" ] || bad ferry_changed "$n rows with the new address, expected $RECORDS"

# ---- 4. report ------------------------------------------------------------

LINES=(psql_copy ferry ferry_1k ferry_csv ferry_replay ferry_changed)
name() {
  case $1 in
    psql_copy)    echo "psql \\copy users.csv (ceiling)" ;;
    ferry)        echo "Ferry: users.jsonl → PostgreSQL (full, new table)" ;;
    ferry_1k)     echo "Ferry: the same, --batch-size 1000" ;;
    ferry_csv)    echo "Ferry: users.csv → PostgreSQL (full, new table)" ;;
    ferry_replay)  echo "Ferry: the same again (every record an update, values unchanged)" ;;
    ferry_changed) echo "Ferry: every record an update with a new address" ;;
  esac
}
valid() { [ -z "${BAD[$1]}" ]; }
percent_of_copy() {  # $1 key: its rate as a percentage of \copy's ("n/a" when a line is INVALID)
  if valid "$1" && valid psql_copy; then
    awk -v a="${SECS[psql_copy]}" -v b="${SECS[$1]}" 'BEGIN { if (b > 0) printf "%.0f %%", 100 * a / b; else print "n/a" }'
  else
    echo "n/a"
  fi
}

echo
echo "PostgreSQL load benchmark — $RECORDS records, $(nproc) cores, $("$PG_BIN/postgres" --version 2>/dev/null || echo PostgreSQL)," \
     "Ferry $FERRY"
echo
INVALID=0
echo "| line | seconds | records/s | peak RSS MB | rate vs \\copy |"
echo "| --- | ---: | ---: | ---: | ---: |"
for key in "${LINES[@]}"; do
  secs=${SECS[$key]}
  cell=$secs
  if ! valid "$key"; then cell="INVALID ($secs; ${BAD[$key]})"; INVALID=1; fi
  vs="—"
  [ "$key" = psql_copy ] || vs=$(percent_of_copy "$key")
  echo "| $(name "$key") | $cell | $(per_second "${MOVED[$key]}" "$secs") | $(megabytes "${RSS[$key]:-0}") | $vs |"
done
echo
target_of() {  # $1 key: its target, as a percentage of \copy's rate (issue 16: new rows 80 %, updates 50 %)
  case $1 in ferry|ferry_1k|ferry_csv) echo 80 ;; *) echo "$TARGET_PERCENT" ;; esac
}
for key in ferry ferry_1k ferry_csv ferry_replay ferry_changed; do
  pct=$(percent_of_copy "$key")
  target=$(target_of "$key")
  verdict="n/a"
  if [ "$pct" != n/a ]; then
    if [ "${pct% %}" -ge "$target" ]; then verdict="meets"; else verdict="misses"; fi
  fi
  echo "$(name "$key"): $pct of \\copy's rate — $verdict the $target % target."
done
echo
echo "Reports and logs: $RUN/ (*.out, *.err); data: $DATA/"
if [ "$INVALID" -ne 0 ]; then echo "some lines are INVALID: their numbers are not valid" >&2; exit 2; fi
