"""The OpenAPI 3.1 document at GET /v1/__api__, checked by tools we did not write.

- `openapi-spec-validator` says the served document is valid OpenAPI 3.1.
- Schemathesis runs against a live `ferry serve`: bounded (fixed seed, a fixed number of
  examples per operation, a hard subprocess timeout), authenticated with Basic auth, with all
  its phases (examples, coverage, fuzzing, stateful) and all its default checks: no server
  error, response schemas, status codes, content types, headers, positive data accepted,
  negative data rejected, unsupported methods, and the stateful use-after-free and resource
  availability checks. The document's links (from each create to the operations on what it
  created) drive the stateful phase; the test checks it followed links, not only unlinked calls.
  The run is bounded by examples, not by time, so a slower machine runs the same cases
  (`--max-time` is only a safety net far above a normal run: about 80 s on a debug build here).

What Schemathesis does not get, and why (each is tested elsewhere):
- `_wait` (a long-poll that holds the request up to 300 s): KintoAPITests / StreamTests.
- `_token`: opaque, only a value the server wrote in a `Next-Page` link is valid; a generated
  one is rightly refused with 400 (KintoAPITests' pagination tests follow real links).
- Event streams are not operations of the document (same path, `Accept: text/event-stream`).
- JSON Patch bodies (`application/json-patch+json`): whether an operation applies depends on
  the object as it is (RFC 6902: `remove`, `replace` and `test` of absent members fail), which
  no schema can say; KintoAPITests covers them.
- `POST …/reconcile`: its body is a binary reconciliation message whose grammar no JSON Schema
  can state, so every generated body is (rightly) a 400; ReconcilerTests (seeded property runs,
  hostile byte strings) and ReconcileTests (bad messages, permissions) cover it.
- A plural DELETE (`DELETE /buckets/b/collections`) empties the list and the list still answers
  200, as Kinto's does; the use-after-free check is off for list reads only (see CONFIG).
- 412 and 422 count as right answers to a well-formed request: a generated `If-Match` ETag
  that is not the object's current one must fail its precondition (RFC 9110 §13.1.1), and an
  `Idempotency-Key` used before with another body must be refused (the httpapi draft).
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from openapi_spec_validator import validate

from conftest import serve

AUTH = ("alice", "alice-secret")

# The run is bounded by examples; these are safety nets well above its normal ~80 s.
MAX_TIME_SECONDS = 170
HARD_TIMEOUT_SECONDS = 240
# How many links the stateful phase must have followed: the document's own (88: from the 200 and
# 201 answers of each create of a bucket, collection, group or record to the operations on it and
# on the lists below it) and those Schemathesis infers; a run here covered 52 of 331.
MIN_LINKS_COVERED = 30

CONFIG = """
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "412", "422", "429"]

[checks.negative_data_rejection]
expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "412", "413", "415", "422", "428", "429"]

# A plural DELETE (`DELETE /buckets/b/collections`) empties the list, and the list still answers
# 200 (empty), as Kinto's does: not a use after free. Reads of single objects keep the check.
[[operations]]
include-path-regex = "/(collections|groups|records)$"
include-method-regex = "^(GET|HEAD)$"
checks.use_after_free.enabled = false

# The stateful phase (chains of calls linked by ids) gets more scenarios than the per-operation 8.
[phases.stateful.generation]
max-examples = 40
"""


@pytest.fixture(scope="module")
def server():
    # Webhook URLs may point anywhere here: Schemathesis generates host names that resolve nowhere
    # (the address policy itself is WebhookPolicyTests'); the flush endpoint is on, to cover it.
    with serve({"FERRY_WEBHOOK_ALLOW_HOSTS": "*"}, ["--flush-endpoint"]) as url:
        yield url


def test_served_document_is_valid_openapi_3_1(server):
    response = requests.get(f"{server}/__api__", timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    document = response.json()
    assert document["openapi"].startswith("3.1.")
    validate(document)  # raises on any violation of the OpenAPI 3.1 meta-schema
    assert document["servers"] == [{"url": server}]
    error = document["components"]["schemas"]["Error"]
    assert set(error["required"]) == {"code", "errno", "error", "message"}
    # The flush endpoint is listed because this server serves it.
    assert "post" in document["paths"]["/__flush__"]
    records = document["paths"]["/buckets/{bid}/collections/{cid}/records"]["get"]
    names = {p["name"] for p in records["parameters"]}
    assert {"_since", "_before", "_to", "_sort", "_limit", "_fields", "_token", "_wait"} <= names
    assert "gt_" in records["x-filter-prefixes"] and "like_" in records["x-filter-prefixes"]
    headers = records["responses"]["200"]["headers"]
    assert {"ETag", "Last-Modified", "Next-Page", "Total-Objects", "Backoff"} <= set(headers)


def test_document_leaves_out_what_the_server_does_not_serve():
    with serve() as url:  # no --flush-endpoint
        document = requests.get(f"{url}/__api__", timeout=10).json()
        assert "/__flush__" not in document["paths"]
        assert requests.post(f"{url}/__flush__", timeout=10).status_code == 404


def _schema_for_schemathesis(document):
    """The document less the parameters Schemathesis must not generate (see the module doc)."""
    document["paths"].pop("/buckets/{bid}/collections/{cid}/reconcile")
    for item in document["paths"].values():
        for operation in item.values():
            if not isinstance(operation, dict):
                continue
            if "parameters" in operation:
                operation["parameters"] = [p for p in operation["parameters"]
                                           if not p.get("x-long-poll") and not p.get("x-server-issued")]
            operation.get("requestBody", {}).get("content", {}).pop("application/json-patch+json", None)
    return document


def test_schemathesis_finds_no_failure(server, tmp_path):
    document = requests.get(f"{server}/__api__", timeout=10).json()
    schema = tmp_path / "openapi.json"
    schema.write_text(json.dumps(_schema_for_schemathesis(document)))
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    st = Path(sys.executable).parent / "schemathesis"
    command = [
        str(st), "--config-file", str(config), "run", str(schema), "--url", server,
        "--auth", f"{AUTH[0]}:{AUTH[1]}", "--seed", "19", "--max-examples", "8",
        "--max-time", str(MAX_TIME_SECONDS), "--request-timeout", "10", "--workers", "1",
        "--phases", "examples,coverage,fuzzing,stateful", "--generation-database", "none",
        "--no-color", "--report", "junit", "--report-dir", str(tmp_path / "report"),
    ]
    try:
        run = subprocess.run(command, capture_output=True, text=True, timeout=HARD_TIMEOUT_SECONDS, cwd=tmp_path)
    except subprocess.TimeoutExpired as error:
        pytest.fail(f"schemathesis did not finish within {HARD_TIMEOUT_SECONDS} s:\n{(error.stdout or b'')[-4000:]}")
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-20000:]
    assert "Test cases:" in output and " passed" in output, output[-4000:]
    # The phases that generate requests ran and passed (Examples is skipped: the document has none).
    for phase in ("Coverage", "Fuzzing", "Stateful"):
        assert re.search(rf"✅ +{phase}\b", output), f"{phase} did not pass:\n{output[-4000:]}"
    # The stateful phase followed the document's links (create, then read, change, delete the same
    # object; a bucket, then a collection in it, then a record in that), not only unlinked calls.
    links = re.search(r"API Links:\s+(\d+) covered / (\d+) selected / (\d+) total", output)
    assert links, output[-4000:]
    covered, selected = int(links.group(1)), int(links.group(2))
    assert selected >= 88 and covered >= MIN_LINKS_COVERED, output[-4000:]
