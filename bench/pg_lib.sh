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
