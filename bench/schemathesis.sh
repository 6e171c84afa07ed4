#!/usr/bin/env bash
# Schemathesis against a live `ferry serve` with ALL its checks (status codes, response schemas,
# content types, headers, positive and negative data, stateful use-after-free), not only the
# "no server error" check the test suite gates on (Tests/python/test_openapi.py says why).
#
# Usage:  bench/schemathesis.sh            # builds the debug binary, sets up the test venv
#         FERRY_BIN=/path/to/ferry bench/schemathesis.sh
# Prints Schemathesis's report; exits non-zero when it finds a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.build/python-venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r Tests/python/requirements.txt
if [ -z "${FERRY_BIN:-}" ]; then
  swift build --product ferry
  FERRY_BIN="$(swift build --show-bin-path)/ferry"
fi
export FERRY_BIN FERRY_SCHEMATHESIS_ALL_CHECKS=1
exec "$venv/bin/python" -m pytest -q -o asyncio_default_fixture_loop_scope=function Tests/python/test_openapi.py -k schemathesis
