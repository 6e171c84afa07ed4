#!/usr/bin/env python3
"""List every user of users_api.py, page by page: the ceiling line of bench/rest.sh.

Usage: rest_list.py BASE_URL [PER_PAGE]      e.g. rest_list.py http://127.0.0.1:8000 1000

GETs BASE_URL/users?page=P&per_page=PER_PAGE from page 1 on, parses each page's
JSON and counts the records in `data`, until a page is empty, short, or reaches
`total`. It does nothing with the records: this is how fast a client can merely
read the API. Standard library only, one http.client connection object (the
werkzeug server closes every connection after its answer, `Connection: close`,
so http.client opens a new TCP connection per page all the same).

Prints {"records": n, "unique_ids": n, "pages": n, "total": t} on stdout;
exits 1 on any non-200 answer.
"""
import http.client
import json
import sys
from urllib.parse import urlsplit


def main() -> None:
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: rest_list.py BASE_URL [PER_PAGE]")
    base = urlsplit(sys.argv[1])
    per_page = int(sys.argv[2]) if len(sys.argv) == 3 else 1000
    conn = http.client.HTTPConnection(base.hostname, base.port, timeout=60)
    records, pages, total, ids = 0, 0, None, set()
    page = 1
    while True:
        conn.request("GET", f"{base.path.rstrip('/')}/users?page={page}&per_page={per_page}")
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            sys.exit(f"page {page}: HTTP {response.status}: {body[:200]!r}")
        answer = json.loads(body)
        data, total = answer["data"], answer["total"]
        pages += 1
        records += len(data)
        ids.update(user["id"] for user in data)
        if len(data) < per_page or page * per_page >= total:
            break
        page += 1
    conn.close()
    print(json.dumps({"records": records, "unique_ids": len(ids), "pages": pages, "total": total}))


if __name__ == "__main__":
    main()
