#!/usr/bin/env python3
"""Change 1 % of the users on a Kinto-API server, for the second incremental
run of bench/sync.sh.

Usage: mutate_users.py HOST PORT USER:PASS RECORDS [BATCH]

With n = RECORDS // 1000 (0.1 %), it sends through POST /v1/batch (BATCH
sub-requests a call, 1000 by default: bench/sync.sh starts Ferry with
--batch-max-requests 1000):
  8n updates  PUT of an existing record with a new address
              ("<i> Changed Street, Springfield"), age and updated_at
   n deletes  DELETE of an existing record
   n creates  PUT of new records u<RECORDS+1> .. u<RECORDS+n>
The 9n existing records touched are spread evenly over u1..u<RECORDS>, every
ninth of them deleted, the rest updated, and the requests are sent in id
order with the creates last, so batches mix updates and deletes. The record
shape is that of bench/gen_users.py. Every sub-response must be 2xx, or the
script fails.

Prints one JSON line on stdout: {"updated": 8n, "created": n, "deleted": n}.
Standard library only.
"""
import base64
import http.client
import json
import sys
import time

BUCKET, COLLECTION = "bench", "users"


def main() -> None:
    if len(sys.argv) not in (5, 6):
        sys.exit("usage: mutate_users.py HOST PORT USER:PASS RECORDS [BATCH]")
    host, port, user, count = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    batch = int(sys.argv[5]) if len(sys.argv) == 6 else 1000
    n = count // 1000
    if n < 1:
        sys.exit("mutate_users.py: RECORDS must be at least 1000")
    width = max(7, len(str(count)))
    now_ms = int(time.time() * 1000)
    prefix = f"/buckets/{BUCKET}/collections/{COLLECTION}/records/"

    def record(i: int, changed: bool) -> dict:
        street = "Changed Street" if changed else "Main Street"
        return {"username": f"user{i:0{width}d}", "age": 18 + (i + (7 if changed else 0)) % 70,
                "address": f"{i} {street}, Springfield", "updated_at": now_ms + i}

    touched = 9 * n
    stride = count // touched
    requests = []
    updated = deleted = 0
    for j in range(touched):
        i = 1 + j * stride
        path = f"{prefix}u{i:0{width}d}"
        if j % 9 == 8:
            requests.append({"method": "DELETE", "path": path})
            deleted += 1
        else:
            requests.append({"method": "PUT", "path": path, "body": {"data": record(i, True)}})
            updated += 1
    for i in range(count + 1, count + n + 1):
        requests.append({"method": "PUT", "path": f"{prefix}u{i:0{width}d}", "body": {"data": record(i, False)}})
    created = n

    auth = "Basic " + base64.b64encode(user.encode()).decode()
    conn = http.client.HTTPConnection(host, port, timeout=120)
    for start in range(0, len(requests), batch):
        chunk = requests[start:start + batch]
        conn.request("POST", "/v1/batch", body=json.dumps({"requests": chunk}),
                     headers={"Authorization": auth, "Content-Type": "application/json"})
        resp = conn.getresponse()
        data = resp.read()
        if resp.status >= 300:
            sys.exit(f"mutate: POST /v1/batch -> {resp.status} {data[:500]!r}")
        out = json.loads(data)["responses"]
        if len(out) != len(chunk):
            sys.exit(f"mutate: {len(chunk)} sub-requests sent, {len(out)} answered")
        for req, r in zip(chunk, out):
            if not 200 <= r["status"] < 300:
                sys.exit(f"mutate: {req['method']} {req['path']} -> {r['status']} {r.get('body')}")
    print(json.dumps({"updated": updated, "created": created, "deleted": deleted}))


if __name__ == "__main__":
    main()
