# Shared by bench/run.sh and bench/sync.sh: sourced from the repo root, after `set -euo pipefail`.
# The caller keeps SERVER_PID set to the server it started (or "").

log() { printf '==> %s\n' "$*" >&2; }

# Sets FERRY to $FERRY_BIN, or builds Ferry in release mode. A separate scratch
# path, so this never fights over .build/ with a debug build or `swift test`
# running in the same checkout.
find_ferry() {
  if [ -n "${FERRY_BIN:-}" ]; then
    FERRY=$FERRY_BIN
  else
    log "building Ferry (release, .build-release/)"
    timeout 3600 swift build -c release --scratch-path .build-release >&2
    FERRY="$(swift build -c release --scratch-path .build-release --show-bin-path)/ferry"
  fi
  [ -x "$FERRY" ] || { echo "ferry binary not found: $FERRY" >&2; exit 1; }
}

stop_server() {
  # Only the process this script started, by its pid.
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  SERVER_PID=""
}

free_port() {
  # Let the kernel pick a free port; it is released again right away.
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

wait_ready() {  # $1 port, $2 log file: wait (max 60 s) for the heartbeat
  for _ in $(seq 600); do
    if curl -fsS -o /dev/null "http://127.0.0.1:$1/v1/__heartbeat__" 2>/dev/null; then return 0; fi
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
      echo "server exited during start-up; log:" >&2; cat "$2" >&2; return 1
    fi
    sleep 0.1
  done
  echo "server did not answer /v1/__heartbeat__ within 60 s; log:" >&2; cat "$2" >&2
  return 1
}
