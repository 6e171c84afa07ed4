#!/usr/bin/env bash
# Schemathesis against a live `ferry serve` with all its checks (no server error, status codes,
# response schemas, content types, headers, positive and negative data, unsupported methods,
# stateful use-after-free): the test of Tests/python/test_openapi.py, which the test suite
# gates on, run alone (a quick way to check a change of the API or of its document).
#
# Usage:  bench/schemathesis.sh            # builds the debug binary, sets up the test venv
#         FERRY_BIN=/path/to/ferry bench/schemathesis.sh
# Prints Schemathesis's report on failure; exits non-zero when it finds one.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.build/python-venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r Tests/python/requirements.txt
if [ -z "${FERRY_BIN:-}" ]; then
  swift build --product ferry
  FERRY_BIN="$(swift build --show-bin-path)/ferry"
fi
export FERRY_BIN
exec "$venv/bin/python" -m pytest -q -o asyncio_default_fixture_loop_scope=function Tests/python/test_openapi.py -k schemathesis
