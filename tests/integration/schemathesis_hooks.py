"""Loaded by the schemathesis CLI (``SCHEMATHESIS_HOOKS``) in ``test_openapi_fuzz.py``:
what the OpenAPI document says in words where JSON Schema cannot.

- a ``format: cursor`` value is the cursor of an earlier page (``base64url("<ms>|<id>")``,
  ``domain/pagination.py``): the valid ones generated are cursors the server could issue;
- a ``format: stream-cursor`` value is a getStreamChunks cursor (``base64({"i": n})``);
- ``positive_data_acceptance_beyond_the_schema`` replaces the built-in check (excluded by
  the test): a request the document allows must be accepted, except for the refusals in
  ``SEMANTIC`` — each one about what no schema can say: a bundle's code must load, a
  client-chosen run id must be a ULID minted in the last 24 h, run attribute keys are
  unique, not reserved and few, values short in UTF-8 bytes, an app's URL must be in
  the worker's delivery allow-list, ``createdBefore`` must follow ``createdAfter``, and
  a run that is already terminal (410), was created with a newer specVersion (422) or
  has an event newer than ``stateUpdatedAt`` (412) refuses an event, as a conflict
  (409, allowed by schemathesis) would;
- ``before_call`` shortens a valid ``wait`` of ``GET /v1/runs/{runId}`` (a long-poll of
  up to 60 s) to ``FUZZ_WAIT``: a run the fuzzer created through the World lane never
  ends, so the answer would come after ``wait`` seconds, past the client's timeout.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import schemathesis
from hypothesis import strategies as st
from schemathesis.specs.openapi.checks import positive_data_acceptance

from compute_worker.domain.use_cases.query_world import MAX_RUN_WAIT

_IDS = st.text(alphabet="0123456789ABCDEFGHJKMNPQRSTVWXYZ_abcdefghijklmnopqrstuvwxyz", max_size=40)

# (method, path, status, code, start of the message) the document cannot rule out
SEMANTIC = [
    ("POST", "/v1/deployments", 422, "invalid_deployment", ""),
    ("POST", "/v1/world/events/create", 400, "invalid_request", "Invalid runId"),
    # the run's state, as a 409 would be (both documented)
    ("POST", "/v1/world/events/create", 410, "run_expired", ""),
    ("POST", "/v1/world/events/create-batch", 410, "run_expired", ""),
    ("POST", "/v1/world/events/create", 422, "run_not_supported", ""),
    *(
        ("POST", path, 400, "invalid_request", start)
        for path in (
            "/v1/world/events/create",
            "/v1/world/events/create-batch",
            "/v1/world/runs/{runId}/attributes",
        )
        for start in ("an attribute key", "attribute key", 'attribute "', "a run holds at most")
    ),
    ("POST", "/v1/world/events/create-batch", 422, "run_not_supported", ""),
    ("POST", "/v1/world/events/create", 412, "precondition_failed", ""),
    ("POST", "/v1/deployments", 400, "outbound_refused", ""),
    ("GET", "/v1/runs", 400, "invalid_request", "createdBefore must be later than createdAfter"),
]


FUZZ_WAIT = 0.5  # seconds: still a valid wait, well within the request timeout
_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")  # as wire.number_param


def _cursor(created_ms: int, item_id: str) -> str:
    raw = f"{created_ms}|{item_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _stream_cursor(index: int) -> str:
    return base64.b64encode(json.dumps({"i": index}).encode()).decode()


schemathesis.openapi.format(
    "cursor", st.builds(_cursor, st.integers(min_value=0, max_value=2**53 - 1), _IDS)
)
schemathesis.openapi.format(
    "stream-cursor", st.builds(_stream_cursor, st.integers(min_value=0, max_value=2**62 - 1))
)


def _semantic(case: Any, response: Any) -> bool:
    try:
        body = json.loads(response.content)
    except ValueError:
        return False
    if not isinstance(body, dict):
        return False
    return any(
        case.method.upper() == method
        and case.operation.path == path
        and response.status_code == status
        and body.get("code") == code
        and str(body.get("message", "")).startswith(message)
        for method, path, status, code, message in SEMANTIC
    )


@schemathesis.check
def positive_data_acceptance_beyond_the_schema(ctx: Any, response: Any, case: Any) -> bool | None:
    if _semantic(case, response):
        return None
    return positive_data_acceptance(ctx, response, case)


@schemathesis.hook
def before_call(ctx: Any, case: Any, **kwargs: Any) -> None:
    """A shorter wait is as valid (schemathesis judges the request as sent); an
    invalid one (``0``, ``61``, ``AAA``) is left to be refused. The coverage phase
    writes numbers as strings (``"59.0"``), the fuzzing phase as numbers."""
    if case.operation.path != "/v1/runs/{runId}" or not case.query:
        return
    wait = case.query.get("wait")
    written = isinstance(wait, str) and _NUMBER.fullmatch(wait) is not None
    if not written and (isinstance(wait, bool) or not isinstance(wait, int | float)):
        return
    if FUZZ_WAIT < float(wait) <= MAX_RUN_WAIT:
        case.query["wait"] = str(FUZZ_WAIT) if written else FUZZ_WAIT
