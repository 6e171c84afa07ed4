#!/usr/bin/env python3
"""Load the users of users_api.py into a SQLite table with dlt's rest_api source
(the dlt line of bench/rest.sh).

Usage: bench/.venv/bin/python bench/dlt_rest.py BASE_URL OUT.db PIPELINES_DIR [PER_PAGE]

One resource `users` from `rest_api_source`: GET BASE_URL/users with
per_page=PER_PAGE (1000 by default), records from the `data` field
(data_selector), and a `page_number` paginator on the `page` parameter starting
at 1. dlt's `total_path` means the total number of *pages* while the API's
`total` counts records, so it is not used (total_path None): dlt stops at the
first empty page, one request after the last full one. Loaded like
bench/dlt_load.py: `sqlalchemy` destination (sqlite:///OUT.db), dataset `main`
(the table lands in OUT.db itself as `users`), `id` as primary key created in
the table (create_primary_keys=True), write disposition `replace`. dlt's own
columns and tables (_dlt_load_id, _dlt_id, _dlt_loads, ...) are part of what
dlt does, so they are timed too.

All dlt state goes under PIPELINES_DIR; bench/rest.sh also sets DLT_DATA_DIR and
DLT_PROJECT_DIR there and RUNTIME__DLTHUB_TELEMETRY=false. Prints the load info
on stderr; exits non-zero if any load job failed.
"""
import os
import sys


def main() -> None:
    if len(sys.argv) not in (4, 5):
        sys.exit("usage: dlt_rest.py BASE_URL OUT.db PIPELINES_DIR [PER_PAGE]")
    base_url = sys.argv[1].rstrip("/") + "/"
    db, pipelines_dir = (os.path.abspath(p) for p in sys.argv[2:4])
    per_page = int(sys.argv[4]) if len(sys.argv) == 5 else 1000
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")

    from dlt.sources.rest_api import rest_api_source

    from dlt_common import load_into_sqlite

    source = rest_api_source({
        "client": {"base_url": base_url},
        "resources": [{
            "name": "users",
            "primary_key": "id",
            "write_disposition": "replace",
            "endpoint": {
                "path": "users",
                "params": {"per_page": per_page},
                "data_selector": "data",
                "paginator": {
                    "type": "page_number",
                    "page_param": "page",
                    "base_page": 1,
                    "total_path": None,
                    "stop_after_empty_page": True,
                },
            },
        }],
    })

    load_into_sqlite(source, db, pipelines_dir, "ferry_bench_rest_users")


if __name__ == "__main__":
    main()
