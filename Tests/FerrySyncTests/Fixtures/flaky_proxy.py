#!/usr/bin/env python3
"""A reverse proxy that misbehaves on purpose, for the sync engine's retry tests.

Usage: flaky_proxy.py UPSTREAM_PORT
Prints the port it listens on (a free one), then forwards every request to
127.0.0.1:UPSTREAM_PORT, except that request number n (counting from 1):
  n % 7 == 2  -> 503 with Retry-After: 1 (not forwarded)
  n % 7 == 4  -> 429 with Retry-After: 0 (not forwarded)
  n % 7 == 6  -> the connection is closed without an answer (not forwarded)
All other answers carry `Backoff: 0` plus the upstream's headers and body.
GET /__faults__ answers the counts as JSON. Standard library only.
"""
import http.client
import http.server
import json
import sys
import threading

UPSTREAM = int(sys.argv[1])
lock = threading.Lock()
counts = {"requests": 0, "503": 0, "429": 0, "dropped": 0, "forwarded": 0}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def handle_any(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        if self.path == "/__faults__":
            return self.answer(200, {}, json.dumps(counts).encode())
        with lock:
            counts["requests"] += 1
            n = counts["requests"]
        if n % 7 == 2:
            counts["503"] += 1
            return self.answer(503, {"Retry-After": "1"}, b'{"code":503,"errno":201,"error":"Service Unavailable","message":"flaky"}')
        if n % 7 == 4:
            counts["429"] += 1
            return self.answer(429, {"Retry-After": "0"}, b'{"code":429,"errno":999,"error":"Too Many Requests","message":"slow down"}')
        if n % 7 == 6:
            counts["dropped"] += 1
            self.close_connection = True
            self.connection.shutdown(2)
            return
        counts["forwarded"] += 1
        upstream = http.client.HTTPConnection("127.0.0.1", UPSTREAM, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
        upstream.request(self.command, self.path, body=body, headers=headers)
        response = upstream.getresponse()
        data = response.read()
        extra = {k: v for k, v in response.getheaders() if k.lower() not in ("content-length", "connection", "transfer-encoding")}
        extra["Backoff"] = "0"
        upstream.close()
        self.answer(response.status, extra, data)

    def answer(self, status, headers, body):
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = do_HEAD = handle_any


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
