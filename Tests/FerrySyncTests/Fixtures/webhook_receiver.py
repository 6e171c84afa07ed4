"""A webhook receiver for the tests: records every delivery, fails or stalls on demand.

    python3 webhook_receiver.py [--port 0]

Prints "listening on 127.0.0.1:PORT". Endpoints:
  POST /hook          a delivery: recorded (headers + body), answered 200 (or as the mode says)
  POST /_mode         {"fail": N, "status": 500, "delay": SECONDS, "hold": BOOL}: the next N
                      deliveries get `status`; every delivery waits `delay` seconds first,
                      and while `hold` is true it waits until it is set false (at most 900 s:
                      longer than any test, even on a loaded machine)
  GET  /_received     every delivery recorded so far, oldest first, with the status answered
"""
import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

lock = threading.Lock()
received = []
mode = {"fail": 0, "status": 500, "delay": 0.0, "hold": False}
released = threading.Event()
released.set()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def reply(self, status, payload):
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/_received":
            with lock:
                self.reply(200, list(received))
        else:
            self.reply(404, {"error": "not found"})

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if self.path == "/_mode":
            with lock:
                mode.update(json.loads(body or b"{}"))
                if mode["hold"]:
                    released.clear()
                else:
                    released.set()
                answer = dict(mode)
            self.reply(200, answer)
            return
        with lock:
            delay = mode["delay"]
            if mode["fail"] > 0:
                mode["fail"] -= 1
                status = mode["status"]
            else:
                status = 200
        if delay:
            time.sleep(delay)
        released.wait(900)
        with lock:
            received.append({
                "path": self.path,
                "delivery": self.headers.get("Ferry-Delivery"),
                "event": self.headers.get("Ferry-Event"),
                "signature": self.headers.get("Ferry-Signature"),
                "body": body.decode("utf-8", "replace"),
                "status": status,
            })
        self.reply(status, {"ok": status < 300})

    def log_message(self, *args):
        pass


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print(f"listening on 127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
