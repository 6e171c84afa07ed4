#!/usr/bin/env python3
"""Generate the user records of bench/sync.sh as JSONL and CSV (the same data).

Usage: gen_users.py COUNT OUT_DIR  ->  OUT_DIR/users.jsonl and OUT_DIR/users.csv

Record i (1..COUNT):
  id          "u" + i on 7 digits at least ("u0000001")
  username    "user" + the same digits (unique)
  age         18 + i % 70 (an integer)
  address     "<i> Main Street, Springfield" (the comma makes the CSV quote it)
  updated_at  epoch milliseconds, an integer: a fixed base + i

Deterministic, so two runs write byte-identical files. The JSON is written by
hand (every value is ASCII with no character to escape), one line at a time in
chunks, which is several times faster than json.dumps per record. Both files
are written to a temporary name and renamed at the end, so an interrupted run
never leaves a half-written file that a later run would take as done.
Standard library only.
"""
import os
import sys

BASE_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
CHUNK = 10_000


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit("usage: gen_users.py COUNT OUT_DIR")
    count, out = int(sys.argv[1]), sys.argv[2]
    if count < 1:
        sys.exit("gen_users.py: COUNT must be at least 1")
    width = max(7, len(str(count)))
    os.makedirs(out, exist_ok=True)
    jsonl_path = os.path.join(out, "users.jsonl")
    csv_path = os.path.join(out, "users.csv")
    jsonl_fmt = ('{"id":"u%0' + str(width) + 'd","username":"user%0' + str(width)
                 + 'd","age":%d,"address":"%d Main Street, Springfield","updated_at":%d}\n')
    csv_fmt = "u%0" + str(width) + "d,user%0" + str(width) + 'd,%d,"%d Main Street, Springfield",%d\n'
    with open(jsonl_path + ".tmp", "w", encoding="ascii", newline="") as jf, \
         open(csv_path + ".tmp", "w", encoding="ascii", newline="") as cf:
        cf.write("id,username,age,address,updated_at\n")
        for start in range(1, count + 1, CHUNK):
            rows = [(i, i, 18 + i % 70, i, BASE_MS + i) for i in range(start, min(start + CHUNK, count + 1))]
            jf.write("".join([jsonl_fmt % r for r in rows]))
            cf.write("".join([csv_fmt % r for r in rows]))
    os.replace(jsonl_path + ".tmp", jsonl_path)
    os.replace(csv_path + ".tmp", csv_path)


if __name__ == "__main__":
    main()
