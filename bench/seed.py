#!/usr/bin/env python3
"""Seed a Kinto-API server (Ferry or Kinto) for bench/run.sh.

Creates bucket `bench` and collection `users`, then PUTs N records with ids
u00000..u<N-1> (fields username, age, address) through POST /v1/batch, 25
sub-requests per call (the default batch_max_requests of both servers).
Every sub-response must be 2xx, or the script fails: a benchmark on a
half-seeded collection would be meaningless.

Prints one line on stdout: the last_modified of the middle record, used as
the `_since` value of the list benchmark (so `_since=<mid>` matches about N/2
records and the server has to filter, sort and cut a page of 100).

Standard library only, so it runs with any python3.
"""
import base64
import http.client
import json
import sys


def main() -> None:
    host, port, user, count = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    auth = "Basic " + base64.b64encode(user.encode()).decode()
    # One keep-alive connection for all calls.
    conn = http.client.HTTPConnection(host, port, timeout=60)

    def call(method, path, body=None):
        headers = {"Authorization": auth, "Content-Type": "application/json"}
        conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        if resp.status >= 300:
            sys.exit(f"seed: {method} {path} -> {resp.status} {data[:500]!r}")
        return json.loads(data) if data else None

    call("PUT", "/v1/buckets/bench", {"data": {}})
    call("PUT", "/v1/buckets/bench/collections/users", {"data": {}})
    mid = None
    for start in range(0, count, 25):
        ids = range(start, min(start + 25, count))
        requests = [{
            "method": "PUT",
            "path": f"/buckets/bench/collections/users/records/u{i:05d}",
            "body": {"data": {"username": f"user{i:05d}", "age": 18 + i % 70,
                              "address": f"{i} Main Street, Springfield"}},
        } for i in ids]
        out = call("POST", "/v1/batch", {"requests": requests})
        for i, r in zip(ids, out["responses"]):
            if not 200 <= r["status"] < 300:
                sys.exit(f"seed: record u{i:05d} -> {r['status']} {r['body']}")
            if i == count // 2:
                mid = r["body"]["data"]["last_modified"]
    print(mid)


if __name__ == "__main__":
    main()
