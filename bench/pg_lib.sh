# Shared by bench/pg_cpu.sh and bench/pg_profile.sh (source after bench/lib.sh).

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
