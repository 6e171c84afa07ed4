#!/usr/bin/env bash
# Soak test: one `ferry serve` under a long mixed load, then the numbers (issue 19).
#
# Usage:  bench/soak.sh                 # 10 minutes; builds Ferry (release) first
#         bench/soak.sh 30              # 30 minutes
#         FERRY_BIN=/path/to/ferry bench/soak.sh 2
#         SOAK_SECONDS=30 STREAMS=20 RATE=40 SAMPLE=5 FERRY_BIN=… bench/soak.sh   # what CI runs
#
# For the whole time (bench/soak.py does the work, stdlib Python only): writers (PUT updates and
# new records, DELETEs), readers (one record, a sorted page, a filtered page), batches of 25
# PUTs, STREAMS (200) open event streams, a webhook delivering every change to a receiver in
# the script (signatures checked), and `ferry sync <collection> sqlite:…#users --follow`;
# writers, readers and batches share RATE (200) requests/s. Every SAMPLE (60) seconds the
# server's RSS and open descriptors are noted, every HEAP_SAMPLE (5) seconds its heap in use and
# SQLite's share of it (/metrics). Afterwards: the webhook must have delivered
# every change with no failure, the follower must exit 0 on SIGTERM, and `ferry verify` of
# the collection and the follower's target must be equal.
#
# Prints: requests, req/s, errors, p50/p99 per kind; streams, webhook and follower results;
# RSS, heap and descriptors per sample. Exits 1 on any error, on growth of the heap in use less
# SQLite's page caches above MAX_GROWTH_MB (32) from the fifth after the warm-up (the first
# fifth) to the last fifth, or descriptor growth above MAX_FD_GROWTH (16). The RSS is shown, not
# judged: it counts memory the allocator keeps free for reuse (see bench/soak.py).
# Databases and logs stay in bench/.work/soak/.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

MINUTES=${1:-10}
case $MINUTES in ''|*[!0-9]*) echo "usage: bench/soak.sh [MINUTES]" >&2; exit 2 ;; esac
SOAK_SECONDS=${SOAK_SECONDS:-$(( MINUTES * 60 ))}
STREAMS=${STREAMS:-200}
RATE=${RATE:-200}
SAMPLE=${SAMPLE:-60}
WORK=${SOAK_WORK:-bench/.work/soak}

find_ferry
# Every stream is a descriptor on both ends.
need=$(( STREAMS * 2 + 512 ))
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$need" ]; then
  ulimit -n "$need" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
fi
rm -rf "$WORK"
log "soak: ${SOAK_SECONDS} s, $STREAMS streams, $RATE req/s, samples every $SAMPLE s ($FERRY)"
exec python3 bench/soak.py "$FERRY" "$WORK" --seconds "$SOAK_SECONDS" --streams "$STREAMS" --rate "$RATE" \
  --sample "$SAMPLE" --heap-sample "${HEAP_SAMPLE:-5}" --max-growth-mb "${MAX_GROWTH_MB:-32}" --max-fd-growth "${MAX_FD_GROWTH:-16}"
