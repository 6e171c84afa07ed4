#!/usr/bin/env bash
# The server's side of updating existing rows (issue 16), with psql alone (no Ferry): the same
# $RECORDS users (bench/gen_users.py, the files of bench/sync.sh) loaded into a table of Ferry's
# shape (fillfactor 50), then every row changed and changed back in batches of $BATCH, each
# batch a transaction, the way Ferry's writer does it or another way. For each shape: the
# server process's CPU (user + system, from /proc, for the whole psql session), the wall time,
# and the WAL it wrote (pg_stat_wal: records, full-page images, bytes). On the same server:
#   copy-new      \copy of the users into a new table (the ceiling of bench/postgres.sh)
#   stage-only    each batch COPYed into a temporary stage, nothing else (the part of every staged shape)
#   on-conflict   stage, then INSERT … SELECT … ON CONFLICT (id) DO UPDATE … WHERE the row differs,
#                 counting created rows (RETURNING (xmax = 0)): Ferry's writer before MERGE
#   merge         stage, then MERGE … WHEN MATCHED AND the row differs THEN UPDATE … WHEN NOT
#                 MATCHED THEN INSERT, nested loops only (SET LOCAL), inserted rows counted by
#                 pg_stat_get_xact_tuples_inserted before and after: Ferry's writer now
#   merge-hash    the same MERGE with the planner's own choice (a hash join: the whole table read per batch)
#   unnest        no stage: each batch bound as five arrays, INSERT … SELECT FROM unnest(…) ON CONFLICT …
#   update-whole  the floor: every row's change COPYed into one stage, then one UPDATE … FROM it
#                 (no check, no insert, no batches: PostgreSQL's own cost of updating every row)
#   merge-whole   every batch COPYed into one stage in one transaction, then one MERGE (hash join)
# Rounds alternate the shapes. With CHECKPOINT=1 a checkpoint runs between the load and the
# updates, so the first change of each page writes a full-page image.
#
# Usage:  bench/pg_update_shapes.sh                 # RECORDS=200000, BATCH=10000, ROUNDS=3
#         ROUNDS=5 SHAPES="copy-new on-conflict merge" bench/pg_update_shapes.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RECORDS=${RECORDS:-200000}
BATCH=${BATCH:-10000}
ROUNDS=${ROUNDS:-3}
SHAPES=${SHAPES:-copy-new stage-only on-conflict merge merge-hash unnest update-whole merge-whole}
DATA=bench/.work/sync/data-$RECORDS
LIMIT=$(( 300 + RECORDS / 250 ))
. bench/lib.sh

pg_bin > /dev/null || { echo "PostgreSQL is not installed (set FERRY_PG_BIN or apt-get install postgresql)" >&2; exit 1; }
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/ferry-pg-shapes.XXXXXX")
cleanup() { stop_pg; rm -rf "$SCRATCH"; }
trap cleanup EXIT
trap 'exit 130' INT TERM
chmod 755 "$SCRATCH"   # the server reads nothing here, psql does; as root the server runs as postgres

mkdir -p "$DATA"
users_data
# The SQL of every shape, for the original users (orig) and every row changed (chg).
python3 - "$CSV" "$SCRATCH" "$BATCH" <<'EOF'
import csv, os, sys
src, out, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
rows = list(csv.reader(open(src)))[1:]
data = {"orig": rows, "chg": [[r[0], r[1], r[2], r[3].replace(" Main Street", " Mall Street"), r[4]] for r in rows]}
cols = "id, username, age, address, updated_at"
others = ["username", "age", "address", "updated_at"]
def differs(row, new):  # the stored columns (row) against the new values (new), text compared bytewise
    side = lambda names: ", ".join(n + (' COLLATE "C"' if c in ("username", "address") else "") for c, n in zip(others, names))
    return f"({side(row)}) IS DISTINCT FROM ({side(new)})"
stored = [f"r.{c}" for c in others]
stage = "CREATE TEMP TABLE IF NOT EXISTS st (c0 text, c1 text, c2 bigint, c3 text, c4 bigint) ON COMMIT DELETE ROWS;"
upsert = (f"WITH w AS (INSERT INTO users AS r ({cols}) SELECT c0, c1, c2, c3, c4 FROM pg_temp.st ON CONFLICT (id) DO UPDATE SET "
          + ", ".join(f"{c} = EXCLUDED.{c}" for c in others) + f" WHERE {differs(stored, [f'EXCLUDED.{c}' for c in others])} RETURNING (xmax = 0) AS created) "
          "SELECT count(*) FILTER (WHERE created), count(*) FROM w;")
merge = ("MERGE INTO users r USING pg_temp.st s ON r.id = s.c0 WHEN MATCHED AND " + differs(stored, ["s.c1", "s.c2", "s.c3", "s.c4"])
         + " THEN UPDATE SET " + ", ".join(f"{c} = s.c{i + 1}" for i, c in enumerate(others))
         + f" WHEN NOT MATCHED THEN INSERT ({cols}) VALUES (s.c0, s.c1, s.c2, s.c3, s.c4);")
count = "SELECT pg_stat_get_xact_tuples_inserted('users'::regclass);"
nested = "SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off;"
def arr(values):
    return "{" + ",".join('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values) + "}"
for name, rows in data.items():
    chunks = [rows[i:i + batch] for i in range(0, len(rows), batch)]
    for i, chunk in enumerate(chunks):
        with open(f"{out}/{name}-{i:05d}.csv", "w", newline="") as f:
            csv.writer(f).writerows(chunk)
    with open(f"{out}/{name}.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)
    copies = [f"\\copy st FROM '{out}/{name}-{i:05d}.csv' csv" for i in range(len(chunks))]
    def batched(statement):
        return [line for c in copies for line in ("BEGIN;", stage, c, statement, "COMMIT;")]
    shapes = {
        "stage-only": batched(""),
        "on-conflict": batched(upsert),
        "merge": batched(nested + count + merge + count),
        "merge-hash": batched(count + merge + count),
        "update-whole": ["BEGIN;", stage, f"\\copy st FROM '{out}/{name}.csv' csv",
                         "UPDATE users r SET username = s.c1, age = s.c2, address = s.c3, updated_at = s.c4 FROM pg_temp.st s WHERE r.id = s.c0;", "COMMIT;"],
        "merge-whole": ["BEGIN;", stage] + copies + [count + merge + count, "COMMIT;"],
        "unnest": ["PREPARE up(text[], text[], bigint[], text[], bigint[]) AS WITH w AS (INSERT INTO users AS r (" + cols
                   + ") SELECT * FROM unnest($1, $2, $3, $4, $5) ON CONFLICT (id) DO UPDATE SET " + ", ".join(f"{c} = EXCLUDED.{c}" for c in others)
                   + f" WHERE {differs(stored, [f'EXCLUDED.{c}' for c in others])} RETURNING (xmax = 0) AS created) SELECT count(*) FILTER (WHERE created), count(*) FROM w;"]
                  + ["EXECUTE up(" + ", ".join("'" + arr(col).replace("'", "''") + "'" for col in zip(*chunk)) + ");" for chunk in chunks],
    }
    for shape, lines in shapes.items():
        with open(f"{out}/{shape}-{name}.sql", "w") as f:
            # The session's own server process: its CPU is read from /proc at the end.
            f.write("SELECT pg_backend_pid() AS pid \\gset\n\\setenv PID :pid\nSET synchronous_commit = off;\n")
            f.write("\n".join(lines) + "\n")
            f.write("\\! awk '{print \"cpu\", ($14 + $15) / 100}' /proc/$PID/stat\n")
with open(f"{out}/copy-new.sql", "w") as f:
    f.write("SELECT pg_backend_pid() AS pid \\gset\n\\setenv PID :pid\n")
    f.write(f"\\copy users FROM '{out}/orig.csv' csv\n\\! awk '{{print \"cpu\", ($14 + $15) / 100}}' /proc/$PID/stat\n")
EOF

log "starting a throwaway PostgreSQL ($(pg_bin))"
start_pg
pg_psql postgres -c "CREATE DATABASE shapes"
Q() { PGOPTIONS="-c client_min_messages=warning" pg_psql shapes "$@"; }
wal() { Q -c "SELECT wal_records || ' ' || wal_fpi || ' ' || wal_bytes FROM pg_stat_wal"; }
fresh() {
  Q -c "DROP TABLE IF EXISTS users" \
    -c "CREATE TABLE users (id text PRIMARY KEY, username text, age bigint, address text, updated_at bigint) WITH (fillfactor = 50)"
}
now() { date +%s.%N; }

echo
echo "Update shapes — $RECORDS users, batches of $BATCH, $(nproc) cores, $("$PG_BIN/postgres" --version)${CHECKPOINT:+, a checkpoint before the updates}"
echo
echo "| round | shape | data | wall s | server CPU s | WAL records | full-page images | WAL MB |"
echo "| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: |"
for round in $(seq "$ROUNDS"); do
  for shape in $SHAPES; do
    fresh
    if [ "$shape" = copy-new ]; then
      w0=($(wal)); s=$(now); cpu=$(Q -f "$SCRATCH/copy-new.sql" | awk '/^cpu/ { print $2 }'); e=$(now); w1=($(wal))
      echo "| $round | $shape | orig | $(awk -v a="$s" -v b="$e" 'BEGIN { printf "%.2f", b - a }') | $cpu | $((w1[0] - w0[0])) | $((w1[1] - w0[1])) | $(( (w1[2] - w0[2]) / 1000000 )) |"
      continue
    fi
    Q -c "\\copy users FROM '$SCRATCH/orig.csv' csv"
    [ -n "${CHECKPOINT:-}" ] && Q -c "CHECKPOINT"
    for data in chg orig; do
      w0=($(wal)); s=$(now); cpu=$(Q -f "$SCRATCH/$shape-$data.sql" | awk '/^cpu/ { print $2 }'); e=$(now); w1=($(wal))
      echo "| $round | $shape | $data | $(awk -v a="$s" -v b="$e" 'BEGIN { printf "%.2f", b - a }') | $cpu | $((w1[0] - w0[0])) | $((w1[1] - w0[1])) | $(( (w1[2] - w0[2]) / 1000000 )) |"
    done
    n=$(Q -c "SELECT count(*) FILTER (WHERE address LIKE '% Main Street%') FROM users")
    [ "$n" = "$RECORDS" ] || echo "INVALID: $shape left $n of $RECORDS rows with their original address" >&2
  done
done
