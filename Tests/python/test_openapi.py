"""The OpenAPI 3.1 document at GET /v1/__api__, checked by tools we did not write.

- `openapi-spec-validator` says the served document is valid OpenAPI 3.1.
- Schemathesis runs against a live `ferry serve`: bounded (fixed seed, few examples per
  operation, a time budget, a hard subprocess timeout), authenticated with Basic auth, with
  all its phases (examples, coverage, fuzzing, stateful). In the test suite it checks
  `not_a_server_error`: no 5xx and no crash, whatever it sends. Its conformance checks (status
  codes, schemas, positive/negative data, stateful use-after-free) run with
  `FERRY_SCHEMATHESIS_ALL_CHECKS=1` (bench/schemathesis.sh): what they find depends on how much
  a time-bounded run gets through on the machine, so two runs of the same commit have found
  different mismatches between the document and the server; those are open work (see the
  script), not a gate that passes or fails by the machine's speed.

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
- 412 and 422 count as right answers to a well-formed request: a generated `If-Match` ETag
  that is not the object's current one must fail its precondition (RFC 9110 §13.1.1), and an
  `Idempotency-Key` used before with another body must be refused (the httpapi draft).
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from openapi_spec_validator import validate

from conftest import serve

AUTH = ("alice", "alice-secret")

# The whole Schemathesis run: its own budget, and a hard stop well above it.
MAX_TIME_SECONDS = 100
HARD_TIMEOUT_SECONDS = 200

CONFIG = """
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "412", "422", "429"]

[checks.negative_data_rejection]
expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "412", "413", "415", "422", "428", "429"]
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
        *([] if os.environ.get("FERRY_SCHEMATHESIS_ALL_CHECKS") == "1" else ["--checks", "not_a_server_error"]),
        "--no-color", "--report", "junit", "--report-dir", str(tmp_path / "report"),
    ]
    try:
        run = subprocess.run(command, capture_output=True, text=True, timeout=HARD_TIMEOUT_SECONDS, cwd=tmp_path)
    except subprocess.TimeoutExpired as error:
        pytest.fail(f"schemathesis did not finish within {HARD_TIMEOUT_SECONDS} s:\n{(error.stdout or b'')[-4000:]}")
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-20000:]
    # The phases that generate requests ran and passed (Examples is skipped: the document has none).
    for phase in ("Coverage", "Fuzzing", "Stateful"):
        assert re.search(rf"✅ +{phase}\b", output), f"{phase} did not pass:\n{output[-4000:]}"
