#!/usr/bin/env bash
# PostgreSQL's own cost of a PUT in several shapes (issue 14): pgbench replays what a PUT asks of
# PostgreSQL, with no Ferry process in between, on Ferry's schema and data, and reports each
# shape's transactions/s and PostgreSQL's CPU a PUT. It answers "would the whole write as one
# statement make PostgreSQL's side of a PUT much cheaper?" before any Swift is written.
#
# Usage:  FERRY_BIN=/path/to/ferry bench/pg_put_shapes.sh
#         ROUNDS=5 SECONDS_EACH=8 CLIENTS=10 FERRY_BIN=… bench/pg_put_shapes.sh
#
# A throwaway PostgreSQL (start_pg in lib.sh); FERRY_BIN's migrations make the schema, and its
# server seeds bucket `bench`, collection `users` and 2,000 records (pg_seed_users), then stops;
# ANALYZE. pgbench: -M prepared (Ferry prepares these statements), plan_cache_mode =
# force_generic_plan (as Ferry's connections), CLIENTS connections (Ferry's pool: 10), 2 threads;
# each transaction replaces a random record of the 2,000 (as bench/put.lua). CPU: the
# postmaster's `cutime + cstime` (its reaped backends, as bench/pg_cpu.sh) over the run.
#
# Shapes (the statements are those of Sources/FerryStore/Postgres at 3513486, with literals where
# Ferry binds values that do not change between PUTs):
#   today        the clock's allocation (its own transaction, synchronous_commit off), then BEGIN +
#                the settling read pipelined, then the upsert (claim release, NOTIFY) + COMMIT
#                pipelined: as Ferry sends them, but on one connection (Ferry's clock has its own).
#   one          the clock's allocation as above, then the read and the upsert as ONE statement in
#                autocommit (no BEGIN, no COMMIT).
#   one_fn       the same statement inside a plpgsql function (`SELECT ferry_bench_put(…)`).
#   locked       ONE statement in autocommit that also allocates the timestamp on the kind's row
#                and so holds that row until its COMMIT (no clock, no claim): the scheme Ferry
#                had before the clock, writers of a collection in series through the disk flush.
# Parts (each in autocommit unless said; what `today` is made of):
#   read         the settling read in BEGIN … ROLLBACK          alloc   the clock's allocation, and
#                                                               its claim deleted (not flushed)
#   upsert       the upsert, flushed at COMMIT                  upsert_async  the same, not flushed
#   begin_commit BEGIN; pg_current_xact_id(); COMMIT            sets    the two SET statements
#                                                                       around the allocation
# Every script also sends the one-row SELECT that picks the record's id (in `sets` too):
# subtract `sets` from `today`, `one`, `one_fn` and `alloc` for the PUT's own statements.
# claims_left: the claims still in the table after the run (0 but for `upsert`, which allocates none:
# every write released its claim).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
. bench/pg_lib.sh
BIN=${FERRY_BIN:?set FERRY_BIN to a ferry binary}
ROUNDS=${ROUNDS:-3}
SECONDS_EACH=${SECONDS_EACH:-8}
CLIENTS=${CLIENTS:-10}
pg_scratch pg-shapes
start_pg
AUTH="Basic $(printf %s bench:bench | base64)"
DB=shapes
pg_seeded_db "$BIN" "$DB"
# The seeding user's principal (what Ferry binds for bench:bench), from its grant on the bucket.
PRINCIPAL=$(pg_psql "$DB" -c "SELECT principal FROM access_control_entries WHERE object_id = '/buckets/bench' AND permission = 'write' AND principal LIKE 'basicauth:%'")
[ -n "$PRINCIPAL" ] || { echo "no basicauth principal found on /buckets/bench" >&2; exit 1; }

KIND="'/buckets/bench/collections/users'"
URI="'/buckets/bench/collections/users/records/' || (:id::text)"
# pgbench reads `:name` anywhere as a variable, even inside quotes: `record:create` is spelled with chr(58).
READ="SELECT o.id, o.last_modified, o.deleted, o.data,
  (SELECT coalesce(array_agg(DISTINCT g.name), '{}') FROM unnest('{write,write,write,create,create,create}'::text[],
      ('{/buckets/bench,/buckets/bench/collections/users,/buckets/bench/collections/users/records/' || (:id::text) || ',/buckets/bench,/buckets/bench/collections/users,/buckets/bench/collections/users}')::text[],
      ('{write,write,write,write,write,record' || chr(58) || 'create}')::text[]) AS g(name, uri, permission)
   WHERE EXISTS (SELECT 1 FROM access_control_entries a
                 WHERE a.object_id = g.uri AND a.permission = g.permission AND a.principal = ANY(ARRAY[(:principal::text), 'system.Authenticated', 'system.Everyone']))),
  (SELECT coalesce(array_agg(a.permission || ' ' || a.principal), '{}') FROM access_control_entries a WHERE a.object_id = $URI),
  (SELECT b.last_modified::text || ' ' || b.data FROM objects b WHERE b.parent_id = '' AND b.resource_name = 'bucket' AND b.id = 'bench' AND NOT b.deleted),
  (SELECT b.last_modified::text || ' ' || b.data FROM objects b WHERE b.parent_id = '/buckets/bench' AND b.resource_name = 'collection' AND b.id = 'users' AND NOT b.deleted),
  pg_current_xact_id()::text
FROM (SELECT set_config('statement_timeout', '29996', true)) AS one
LEFT JOIN objects o ON o.parent_id = $KIND AND o.resource_name = 'record' AND o.id = (:id::text) AND NOT o.deleted"
NOW="(extract(epoch from clock_timestamp()) * 1000)::bigint"
# The clock's allocation; the claim carries the allocation's own transaction id (Ferry's carries
# the writer's, which one connection cannot give it), and the upsert releases it by that id.
ALLOC="WITH old AS (SELECT last_modified FROM timestamps WHERE parent_id = $KIND AND resource_name = 'record'),
allocated AS (INSERT INTO timestamps AS t (parent_id, resource_name, last_modified) VALUES ($KIND, 'record', $NOW)
              ON CONFLICT (parent_id, resource_name) DO UPDATE SET last_modified = GREATEST($NOW, t.last_modified + 1)
              RETURNING last_modified),
claimed AS (INSERT INTO timestamp_claims (parent_id, resource_name, last_modified, xid)
            SELECT $KIND, 'record', last_modified, pg_current_xact_id() FROM allocated RETURNING last_modified)
SELECT (SELECT last_modified FROM claimed) AS ts, coalesce((SELECT last_modified FROM old), 0) AS previous, pg_current_xact_id()::text AS claim"
upsert_ctes() {  # $1 the timestamp expression; $2 "release" to release the claim :claim
  local ts=$1
  cat <<EOF
upserted AS (INSERT INTO objects (parent_id, resource_name, id, last_modified, deleted, data, content_hash)
    VALUES ($KIND, 'record', (:id::text), $ts, false, '{"age":3,"id":"' || (:id::text) || '","last_modified":' || $ts || ',"username":"user"}',
            '\\x3fd5c0a70ff7c7ef5aa3944fd04c7066'::bytea)
    ON CONFLICT (parent_id, resource_name, id) DO UPDATE SET last_modified = EXCLUDED.last_modified, deleted = false, data = EXCLUDED.data,
        content_hash = EXCLUDED.content_hash),
granted AS (INSERT INTO access_control_entries (object_id, permission, principal)
    SELECT '', p.permission, p.principal FROM unnest('{}'::text[], '{}'::text[]) AS p(permission, principal)
    ON CONFLICT (object_id, permission, principal) DO NOTHING)
EOF
  if [ "${2:-}" = release ]; then
    echo ", released AS (DELETE FROM timestamp_claims WHERE true AND xid = (:claim::text)::xid8)"
  fi
}
NOTIFY="(SELECT count(pg_notify('ferry_changes', p)) FROM unnest('{}'::text[]) AS p)"
one_line() { tr '\n' ' '; echo ";"; }
PICK=$'\\set n random(0, 1999)\nSELECT \'u\' || lpad(:n::text, 5, \'0\') AS id \\gset'
CLOCK="SET synchronous_commit = off;
$(echo "$ALLOC" | tr '\n' ' ') \gset
SET synchronous_commit = on;"
ONE_BODY="WITH r AS MATERIALIZED ($READ), $(upsert_ctes '(:ts::bigint)' release) SELECT (SELECT count(*) FROM r), $NOTIFY"

S=$SCRATCH
{ echo "$PICK"; echo "$CLOCK"; echo '\startpipeline'; echo 'BEGIN;'; echo "$READ" | one_line; echo '\endpipeline'
  echo '\startpipeline'; { echo "WITH $(upsert_ctes '(:ts::bigint)' release) SELECT $NOTIFY"; } | one_line; echo 'COMMIT;'; echo '\endpipeline'; } > "$S/today.sql"
{ echo "$PICK"; echo "$CLOCK"; echo "$ONE_BODY" | one_line; } > "$S/one.sql"
{ echo "$PICK"; echo "$CLOCK"; echo "SELECT ferry_bench_put((:id::text), (:ts::bigint), (:claim::text), (:principal::text));"; } > "$S/one_fn.sql"
LOCKED_TS="(SELECT last_modified FROM allocated)"
{ echo "$PICK"; { echo "WITH r AS MATERIALIZED ($READ),
allocated AS (INSERT INTO timestamps AS t (parent_id, resource_name, last_modified) VALUES ($KIND, 'record', $NOW)
              ON CONFLICT (parent_id, resource_name) DO UPDATE SET last_modified = GREATEST($NOW, t.last_modified + 1)
              RETURNING last_modified),
$(upsert_ctes "$LOCKED_TS") SELECT (SELECT count(*) FROM r), $NOTIFY"; } | one_line; } > "$S/locked.sql"
{ echo "$PICK"; echo 'BEGIN;'; echo "$READ" | one_line; echo 'ROLLBACK;'; } > "$S/read.sql"
{ echo "$PICK"; echo "$CLOCK" | sed '$d'; echo "DELETE FROM timestamp_claims WHERE xid = (:claim::text)::xid8;"; echo 'SET synchronous_commit = on;'; } > "$S/alloc.sql"
UPSERT_TS="SELECT $NOW + 100000000000 AS ts \\gset"
{ echo "$PICK"; echo "$UPSERT_TS"; { echo "WITH $(upsert_ctes '(:ts::bigint)') SELECT $NOTIFY"; } | one_line; } > "$S/upsert.sql"
{ echo "$PICK"; echo "$UPSERT_TS"; echo 'SET synchronous_commit = off;'; { echo "WITH $(upsert_ctes '(:ts::bigint)') SELECT $NOTIFY"; } | one_line; echo 'SET synchronous_commit = on;'; } > "$S/upsert_async.sql"
{ echo "$PICK"; echo 'BEGIN;'; echo 'SELECT pg_current_xact_id();'; echo 'COMMIT;'; } > "$S/begin_commit.sql"
{ echo "$PICK"; echo 'SET synchronous_commit = off;'; echo 'SET synchronous_commit = on;'; } > "$S/sets.sql"
# The `one` statement as a plpgsql function (its plan cached per connection, as a prepared statement's).
FN_BODY=$(echo "$ONE_BODY" | sed 's/(:id::text)/p_id/g; s/(:ts::bigint)/p_ts/g; s/(:claim::text)/p_claim/g; s/(:principal::text)/p_principal/g')
pg_psql "$DB" -c "CREATE FUNCTION ferry_bench_put(p_id text, p_ts bigint, p_claim text, p_principal text) RETURNS bigint LANGUAGE plpgsql AS \$fn\$
DECLARE n bigint; m bigint;
BEGIN
  $FN_BODY INTO n, m;
  RETURN n;
END \$fn\$"

tick=$(getconf CLK_TCK)
pm() { local pid; pid=$(head -1 "$PG_DIR/data/postmaster.pid"); awk '{print $16+$17}' /proc/"$pid"/stat; }
measure() {  # $1 script name: one line "name tps pg_us_a_transaction"
  local name=$1 p0 p1 out n tps
  pg_psql "$DB" -c "DELETE FROM timestamp_claims"
  p0=$(pm)
  out=$(PGOPTIONS="-c plan_cache_mode=force_generic_plan" PGPASSWORD=$PG_PASSWORD "$PG_BIN/pgbench" -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" \
        -n -M prepared -c "$CLIENTS" -j 2 -T "$SECONDS_EACH" -D principal="$PRINCIPAL" -f "$S/$name.sql" "$DB" 2>&1) || true
  sleep 0.5
  p1=$(pm)
  left=$(pg_psql "$DB" -c "SELECT count(*) FROM timestamp_claims")
  n=$(echo "$out" | awk -F': ' '/number of transactions actually processed/ {split($2, a, "/"); print a[1]}')
  tps=$(echo "$out" | awk '/^tps/ {print $3}')
  if [ -z "$n" ] || [ "$n" = 0 ] || echo "$out" | grep -q 'aborted'; then
    echo "$name FAILED"; echo "$out" | grep -i error | head -3 >&2; return 0
  fi
  awk -v s="$name" -v n="$n" -v tps="$tps" -v p=$((p1 - p0)) -v k="$tick" -v l="$(cut -d' ' -f1 /proc/loadavg)" -v c="$left" \
    'BEGIN { printf "%-13s tps=%7.0f  pg_us=%5.0f  claims_left=%s  load=%s\n", s, tps, p / k / n * 1e6, c, l }'
}

echo "PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}'), $CLIENTS clients, ${SECONDS_EACH}s each, $ROUNDS rounds; pg_us = PostgreSQL's CPU a transaction"
for round in $(seq "$ROUNDS"); do
  echo "-- round $round"
  for name in ${SHAPES:-today one one_fn locked sets today read alloc upsert upsert_async begin_commit one}; do
    measure "$name"
  done
done
