"""What the latency benchmarks share (bench/follow_latency.py, bench/stream_fanout.py)."""
import http.client
import json
import math
import time


def percentile(sorted_values, p):
    """Nearest-rank percentile of an ascending list (None when empty)."""
    if not sorted_values:
        return None
    k = max(0, math.ceil(p / 100 * len(sorted_values)) - 1)
    return sorted_values[k]


def paced_puts(port, auth, items):
    """PUTs each (due ns, path, data) at its time on one kept-alive connection to 127.0.0.1:port.

    Yields (path, status, body bytes, ack ns) per request, or (path, None, error text, None)
    when it failed; a failed connection is replaced.
    """
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": auth, "Content-Type": "application/json"}
    try:
        for due, path, data in items:
            delay = (due - time.time_ns()) / 1e9
            if delay > 0:
                time.sleep(delay)
            try:
                conn.request("PUT", path, body=json.dumps({"data": data}), headers=headers)
                response = conn.getresponse()
                payload = response.read()
                yield path, response.status, payload, time.time_ns()
            except (OSError, http.client.HTTPException) as error:
                yield path, None, repr(error), None
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    finally:
        conn.close()
