#!/usr/bin/env bash
# Two-way sync benchmark: two SQLite tables of RECORDS users each (the same records), then
# 1 % changed on each side (0.8 % updates, 0.1 % creates, 0.1 % deletes; a tenth of the
# updates on the same records on both sides), then:
#   - one `ferry sync A B --two-way` run (both directions, deletes, conflicts: a-wins);
#   - the same changes through two one-way incremental runs (A -> B, then B -> A, by
#     --cursor-field updated_at): the old way, which misses deletes, has no conflict policy
#     and echoes A's changes back from B;
#   - the floor: sqlite3 reading both tables whole (what any run that compares both sides
#     must at least do).
# Prints a Markdown table: seconds, records read, what each line moved.
#
# Checks, in the same run: the two-way run reads each side once (2 x RECORDS records) and
# leaves the sides equal; else the script exits 1.
#
# Usage:  bench/two_way.sh [SCALE]           # records per side: 100000 (default), 20k, 1m, ...
#         RECORDS=100000 bench/two_way.sh    # the same, from the environment
#         FERRY_BIN=.build/debug/ferry bench/two_way.sh 20k
#         bench/two_way.sh 1m                # the issue's 1,000,000-record line (release build)
set -euo pipefail
cd "$(dirname "$0")/.."
RECORDS=${1:-${RECORDS:-100000}}
case $RECORDS in
  *[kK]) RECORDS=${RECORDS%[kK]}000 ;;
  *[mM]) RECORDS=${RECORDS%[mM]}000000 ;;
esac
case $RECORDS in ''|*[!0-9]*) echo "the scale must be a whole number of records (20000, 20k, 1m), not '${1:-$RECORDS}'" >&2; exit 1 ;; esac
[ "$RECORDS" -ge 1000 ] || { echo "the scale must be at least 1000 records, not $RECORDS" >&2; exit 1; }
[ "$RECORDS" -le 10000000 ] || { echo "the scale must be at most 10,000,000 records (10m), not $RECORDS" >&2; exit 1; }
source bench/lib.sh
command -v sqlite3 >/dev/null || { echo "sqlite3 is needed (apt-get install sqlite3)" >&2; exit 1; }
find_ferry
WORK=bench/.work/two-way
rm -rf "$WORK" && mkdir -p "$WORK"

seed() {  # $1 database: RECORDS users, updated_at 1
  sqlite3 "$1" "CREATE TABLE users (id TEXT PRIMARY KEY, username TEXT, age INTEGER, updated_at INTEGER NOT NULL);
    WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i + 1 < $RECORDS)
    INSERT INTO users SELECT printf('u%08d', i), 'user' || i, 18 + i % 60, 1 FROM s;"
}
change() {  # $1 database, $2 side name, $3 first record of this side's own range
  local n=$((RECORDS / 1000)) own=$3
  sqlite3 "$1" "
    UPDATE users SET username = username || '-$2', updated_at = 2 WHERE CAST(substr(id, 2) AS INTEGER) BETWEEN $own AND $own + 7 * $n - 1;
    UPDATE users SET username = username || '-$2-both', updated_at = 2 WHERE CAST(substr(id, 2) AS INTEGER) < $n;
    DELETE FROM users WHERE CAST(substr(id, 2) AS INTEGER) BETWEEN $own + 7 * $n AND $own + 8 * $n - 1;
    WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i + 1 < $n)
    INSERT INTO users SELECT printf('$2%08d', i), 'new', 30, 2 FROM s;"
}
secs() { python3 -c 'import sys,time; print(f"{time.time():.3f}")'; }
json_field() { python3 -c 'import json,sys; r=json.load(sys.stdin); print(eval(sys.argv[1], {}, {"r": r}))' "$1"; }

for pair in two one; do
  seed "$WORK/$pair-a.db"; cp "$WORK/$pair-a.db" "$WORK/$pair-b.db"
done
# A base for the two-way job (a first run over equal sides), and the one-way jobs' checkpoints.
"$FERRY" sync "sqlite:$WORK/two-a.db#users" "sqlite:$WORK/two-b.db#users" --two-way --on-conflict a-wins --state "$WORK/state.db" --job tw >/dev/null
"$FERRY" sync "sqlite:$WORK/one-a.db#users" "sqlite:$WORK/one-b.db#users" --mode incremental --cursor-field updated_at --state "$WORK/state.db" --job ab >/dev/null
"$FERRY" sync "sqlite:$WORK/one-b.db#users" "sqlite:$WORK/one-a.db#users" --mode incremental --cursor-field updated_at --state "$WORK/state.db" --job ba >/dev/null
for pair in two one; do
  change "$WORK/$pair-a.db" a $((RECORDS / 10))
  change "$WORK/$pair-b.db" b $((RECORDS / 2))
done

log "floor: sqlite3 reads both tables"
t0=$(secs); sqlite3 "$WORK/two-a.db" "SELECT * FROM users" >/dev/null; sqlite3 "$WORK/two-b.db" "SELECT * FROM users" >/dev/null; t1=$(secs)
floor=$(python3 -c "print(f'{$t1 - $t0:.2f}')")

log "one two-way run"
t0=$(secs)
two=$("$FERRY" sync "sqlite:$WORK/two-a.db#users" "sqlite:$WORK/two-b.db#users" --two-way --on-conflict a-wins --state "$WORK/state.db" --job tw --json)
t1=$(secs)
two_s=$(python3 -c "print(f'{$t1 - $t0:.2f}')")
two_read=$(echo "$two" | json_field 'r["read"]')
two_moved=$(echo "$two" | json_field '"to B %d+%d del, to A %d+%d del, %d conflicts" % (r["twoWay"]["toB"]["written"], r["twoWay"]["toB"]["deleted"], r["twoWay"]["toA"]["written"], r["twoWay"]["toA"]["deleted"], r["twoWay"]["conflicts"]["aWon"])')
equal=$("$FERRY" verify "sqlite:$WORK/two-a.db#users" "sqlite:$WORK/two-b.db#users" --json | json_field 'r["equal"]')

log "two one-way incremental runs"
t0=$(secs)
ab=$("$FERRY" sync "sqlite:$WORK/one-a.db#users" "sqlite:$WORK/one-b.db#users" --mode incremental --cursor-field updated_at --state "$WORK/state.db" --job ab --json)
ba=$("$FERRY" sync "sqlite:$WORK/one-b.db#users" "sqlite:$WORK/one-a.db#users" --mode incremental --cursor-field updated_at --state "$WORK/state.db" --job ba --json)
t1=$(secs)
one_s=$(python3 -c "print(f'{$t1 - $t0:.2f}')")
one_read=$(( $(echo "$ab" | json_field 'r["read"]') + $(echo "$ba" | json_field 'r["read"]') ))
one_equal=$("$FERRY" verify "sqlite:$WORK/one-a.db#users" "sqlite:$WORK/one-b.db#users" --json | json_field 'r["equal"]' || true)

echo
echo "Two-way sync, $RECORDS records on each side, 1 % changed on each side ($((RECORDS / 1000)) records changed on both)"
echo
echo "| line | seconds | records read | result |"
echo "| --- | ---: | ---: | --- |"
echo "| floor: sqlite3 reads both tables | $floor | $((2 * RECORDS)) | |"
echo "| ferry sync --two-way (one run) | $two_s | $two_read | $two_moved; sides equal: $equal |"
echo "| two one-way incremental runs | $one_s | $one_read | sides equal: $one_equal (deletes missed, no conflict policy, echoes) |"
echo
status=0
[ "$equal" = True ] || { echo "FAIL: the two-way run left the sides different" >&2; status=1; }
[ "$two_read" -eq $((2 * RECORDS)) ] || { echo "FAIL: the two-way run read $two_read records, not each side once ($((2 * RECORDS)))" >&2; status=1; }
[ $status -eq 0 ] && echo "ok: the two-way run read each side once and left them equal"
exit $status
