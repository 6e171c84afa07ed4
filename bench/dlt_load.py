#!/usr/bin/env python3
"""Load a JSONL file into a SQLite table with dlt (the dlt line of bench/sync.sh).

Usage: bench/.venv/bin/python bench/dlt_load.py USERS.jsonl OUT.db PIPELINES_DIR

dlt's own filesystem source and JSONL reader (`filesystem(...) | read_jsonl()`,
1000 lines a chunk, parsed with orjson) feed one resource `users`, loaded with
the `sqlalchemy` destination into OUT.db (credentials sqlite:///OUT.db). The
dataset is `main`, so the table lands in OUT.db itself as `users` (another
dataset name would be a separate file ATTACHed by dlt). `id` is the primary key
and dlt is asked to create it (create_primary_keys=True), so the table has the
same key index as Ferry's and the sqlite3 ceiling's: without it dlt would load
into a table with no index at all. Write disposition `replace` (a full load).
dlt adds its own columns (_dlt_load_id, _dlt_id) and tables (_dlt_loads,
_dlt_version, _dlt_pipeline_state): that is part of what dlt does, so it is
timed too.

All dlt state (pipeline working dirs, extracted and normalized files) goes
under PIPELINES_DIR; bench/sync.sh also sets DLT_DATA_DIR and DLT_PROJECT_DIR
there and RUNTIME__DLTHUB_TELEMETRY=false, so nothing is written to ~/.dlt and
nothing is sent anywhere. Prints the load info on stderr; exits non-zero if
any load job failed.
"""
import os
import sys


def main() -> None:
    if len(sys.argv) != 4:
        sys.exit("usage: dlt_load.py USERS.jsonl OUT.db PIPELINES_DIR")
    jsonl, db, pipelines_dir = (os.path.abspath(p) for p in sys.argv[1:])
    # Belt and braces: the script sets it too, and it must be set before dlt
    # reads its configuration.
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")

    from dlt.sources.filesystem import filesystem, read_jsonl

    from dlt_common import load_into_sqlite

    files = filesystem(bucket_url="file://" + os.path.dirname(jsonl), file_glob=os.path.basename(jsonl))
    users = (files | read_jsonl()).with_name("users")
    users.apply_hints(primary_key="id", write_disposition="replace")

    load_into_sqlite(users, db, pipelines_dir, "ferry_bench_users")


if __name__ == "__main__":
    main()
