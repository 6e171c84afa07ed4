# Shared by bench/pg_cpu.sh, pg_profile.sh, pg_put_shapes.sh and pg_statements.sh (source after bench/lib.sh).

# pg_seed_users PORT AUTH: through the Ferry server on 127.0.0.1:PORT, bucket `bench`, collection
# `users` and 2,000 records u00000..u01999 (four /batch of 500).
pg_seed_users() {
  local port=$1 auth=$2
  curl -sf -X PUT -H "Authorization: $auth" "http://127.0.0.1:$port/v1/buckets/bench" > /dev/null
  curl -sf -X PUT -H "Authorization: $auth" "http://127.0.0.1:$port/v1/buckets/bench/collections/users" > /dev/null
  python3 - "$port" "$auth" <<'PY'
import json, sys, urllib.request
port, auth = sys.argv[1], sys.argv[2]
for start in range(0, 2000, 500):
    reqs = [{"method": "PUT", "path": "/buckets/bench/collections/users/records/u%05d" % i,
             "body": {"data": {"username": "user%05d" % i, "age": 20 + i % 50}}} for i in range(start, start + 500)]
    r = urllib.request.Request("http://127.0.0.1:%s/v1/batch" % port, data=json.dumps({"requests": reqs}).encode(),
                               headers={"Authorization": auth, "Content-Type": "application/json"}, method="POST")
    urllib.request.urlopen(r).read()
PY
}

# pg_line_args PORT LINE: sets `args` to wrk's arguments for the line get (record u00042), list (the
# `_since` page of 100 from u01000's timestamp) or put (bench/put.lua), and warms the server with
# 2 s of it.
pg_line_args() {
  local port=$1 line=$2 base mid
  base="http://127.0.0.1:$port/v1/buckets/bench/collections/users/records"
  mid=$(curl -sf -H "Authorization: $AUTH" "$base/u01000" | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["last_modified"])')
  case $line in
    get) args=("$base/u00042") ;;
    list) args=("$base?_since=$mid&_limit=100") ;;
    put) args=(-s bench/put.lua "http://127.0.0.1:$port") ;;
  esac
  BENCH_AUTH=$AUTH BENCH_RECORDS=2000 wrk -t2 -c16 -d2s -H "Authorization: $AUTH" "${args[@]}" > /dev/null 2>&1
}

# pg_scratch NAME: a scratch folder ($SCRATCH, named after NAME), no server yet ($SERVER_PID), and
# on exit the server this script started stopped, the throwaway PostgreSQL stopped (start_pg)
# and the folder removed.
pg_scratch() {
  SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/ferry-$1.XXXXXX")
  SERVER_PID=""
  trap pg_cleanup EXIT
  trap 'exit 130' INT TERM
}
pg_cleanup() { if [ -n "$SERVER_PID" ]; then stop_pid "$SERVER_PID" || true; fi; stop_pg; rm -rf "$SCRATCH"; }

# pg_serve BIN DB PORT DATA: `BIN serve` on 127.0.0.1:PORT over database DB, --data DATA, its
# output in DATA.log; sets SERVER_PID and waits for it to answer.
pg_serve() {
  local bin=$1 db=$2 port=$3 data=$4
  FERRY_DATABASE=$(pg_url "$db") FERRY_SECRET=0123456789abcdef0123456789abcdef "$bin" serve --host 127.0.0.1 --port "$port" \
    --data "$data" --log-level warning > "$data.log" 2>&1 &
  SERVER_PID=$!
  wait_ready "$port" "$data.log"
}

# pg_seeded_db BIN DB: database DB, made by BIN's migrations, holding pg_seed_users' records (seeded
# through a server of BIN, --data $SCRATCH/DB, stopped afterwards), ANALYZEd.
pg_seeded_db() {
  local bin=$1 db=$2 port
  pg_psql postgres -c "CREATE DATABASE $db"
  port=$(free_port)
  pg_serve "$bin" "$db" "$port" "$SCRATCH/$db"
  pg_seed_users "$port" "$AUTH"
  stop_pid "$SERVER_PID" || true; SERVER_PID=""
  pg_psql "$db" -c "ANALYZE"
}
