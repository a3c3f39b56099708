"""Workflow DevKit apps as deployments (kind ``wdk``): what the worker checks when one
is registered, writes for the runs it triggers, and how it delivers queue messages to
the app (interop/world-compute/LANE.md §3, §4, §7, §8).

A delivery is ``POST <url>/.well-known/workflow/v1/flow`` (workflow queues) or
``…/v1/step`` (step queues) with the message as JSON and the ``x-vqs-*`` headers that
WDK's ``createQueueHandler`` requires, signed when the deployment has a secret. The
app's reply decides what happens next (:func:`judge`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from compute_worker.domain import errors
from compute_worker.domain.deployments import Endpoint
from compute_worker.domain.outbound import OutboundPolicy, OutboundRefused
from compute_worker.domain.ports.deployments import DeploymentReader
from compute_worker.domain.ports.security import PayloadCipher, RunKeyDeriver
from compute_worker.domain.ports.transactions import Transaction
from compute_worker.domain.world import Run, message_run_id

log = logging.getLogger(__name__)

QUEUE_KIND = re.compile(r"^__(?:[a-z][a-z0-9]*_)?wkf_(workflow|step)_")
MAX_URL = 2048
MAX_HEADERS = 32
MAX_HEADER_VALUE = 4096
MAX_SECRET = 1024
HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}$")
# what a delivery sets itself: registered headers never replace these
RESERVED_HEADERS = frozenset({"content-type", "content-length", "host", "transfer-encoding",
                              "connection"})  # fmt: skip
RESERVED_PREFIXES = ("x-vqs-", "x-compute-")
WDK_SPEC_VERSION = 3  # the spec of runs triggered through POST /v1/runs (the 4.x line)
MAX_REASON = 300  # bytes of a failed reply quoted in the log
PAYLOAD_FORMAT = b"devl"  # the runtime's prefix for devalue-encoded payloads (LANE.md §8)
ENCRYPTED_FORMAT = b"encr"  # + 12-byte nonce + AES-256-GCM of a devl payload, the run's key


def queue_kind(queue_name: str) -> Literal["workflow", "step"] | None:
    match = QUEUE_KIND.match(queue_name)
    if match is None:
        return None
    return "workflow" if match.group(1) == "workflow" else "step"


def serial_run_id(queue_name: str, payload: Any) -> str | None:
    """The run whose workflow messages are delivered one at a time (world-postgres
    serialises them per run too); None for step messages, which may run in parallel."""
    return message_run_id(payload) if queue_kind(queue_name) == "workflow" else None


def delivery_url(base_url: str, queue_name: str) -> str:
    """Where a message of ``queue_name`` goes (a base path is kept)."""
    path = "flow" if queue_kind(queue_name) == "workflow" else "step"
    return f"{base_url.rstrip('/')}/.well-known/workflow/v1/{path}"


def check_endpoint(endpoint: Endpoint, policy: OutboundPolicy, field: str = "endpoint") -> Endpoint:
    """The endpoint with its URL normalised; ``InvalidRequest`` for a malformed one,
    ``OutboundRefused`` when ``policy`` does not allow its URL."""
    url = endpoint.url.strip().rstrip("/")
    if not url or len(url) > MAX_URL:
        raise errors.InvalidRequest(
            f"{field}.url must be an http(s) URL of at most {MAX_URL} characters",
            {"field": f"{field}.url"},
        )
    if "?" in url or "#" in url:
        raise errors.InvalidRequest(
            f"{field}.url is a base URL: no query or fragment", {"field": f"{field}.url"}
        )
    policy.check_url(url)
    if len(endpoint.headers) > MAX_HEADERS:
        raise errors.InvalidRequest(
            f"{field}.headers holds more than {MAX_HEADERS} headers", {"field": f"{field}.headers"}
        )
    for name, value in endpoint.headers.items():
        where = {"field": f"{field}.headers", "header": name[:128]}
        if not HEADER_NAME.match(name):
            raise errors.InvalidRequest(f"{field}.headers: {name[:128]!r} is not a header name",
                                        where)  # fmt: skip
        lower = name.lower()
        if lower in RESERVED_HEADERS or lower.startswith(RESERVED_PREFIXES):
            raise errors.InvalidRequest(
                f"{field}.headers: {name} is set by the worker on every delivery", where
            )
        if len(value) > MAX_HEADER_VALUE or not value.isprintable() or not value.isascii():
            raise errors.InvalidRequest(
                f"{field}.headers: the value of {name} must be printable ASCII "
                f"of at most {MAX_HEADER_VALUE} characters",
                where,
            )
    secret = endpoint.delivery_secret
    if secret is not None and not 0 < len(secret) <= MAX_SECRET:
        raise errors.InvalidRequest(
            f"{field}.deliverySecret must hold 1 to {MAX_SECRET} characters",
            {"field": f"{field}.deliverySecret"},
        )
    return Endpoint(url=url, headers=dict(endpoint.headers), delivery_secret=secret)


def endpoint_digest(endpoint: Endpoint) -> str:
    """What a ``wdk`` deployment's digest is: the hash of its URL and headers."""
    shown = json.dumps({"url": endpoint.url, "headers": endpoint.headers}, sort_keys=True)
    return "sha256:" + hashlib.sha256(shown.encode()).hexdigest()


class AppAnnouncements:
    """Apps announce where they listen (``x-compute-app-url``, LANE.md §3): a ``wdk``
    deployment's delivery URL follows the latest announcement the outbound policy
    allows; the registered URL is the first."""

    def __init__(self, policy: OutboundPolicy) -> None:
        self._policy = policy

    def announce(self, tx: Transaction, deployment_id: str, url: str) -> None:
        deployment = tx.get_deployment(deployment_id)
        if deployment is None or deployment.endpoint is None:
            return  # not an app: nothing to deliver to
        announced = url.strip().rstrip("/")
        if announced == deployment.endpoint.url:
            return
        try:
            endpoint = check_endpoint(replace(deployment.endpoint, url=announced), self._policy)
        except (errors.InvalidRequest, OutboundRefused) as refused:
            raise errors.InvalidRequest(
                f"x-compute-app-url refused: {refused.message}",
                {"field": "x-compute-app-url", "url": announced[:200]},
            ) from None
        tx.set_endpoint(deployment_id, endpoint)
        log.info("app URL announced", extra={"deploymentId": deployment_id, "url": endpoint.url})


# -- values the worker writes for WDK runs ----------------------------------------------------


def devalue(value: Any) -> str:
    """``devalue.stringify(value)`` for JSON values (what the runtime's ``devl`` payloads
    hold): a flat array whose first item is the root; containers refer to items by
    index, equal primitives share one item."""
    items: list[str] = []
    primitives: dict[tuple[str, Any], int] = {}

    def flatten(thing: Any) -> int:
        if isinstance(thing, float):
            if math.isnan(thing):
                return -3
            if math.isinf(thing):
                return -4 if thing > 0 else -5
            if thing == 0 and math.copysign(1.0, thing) < 0:
                return -6
        if thing is None or isinstance(thing, bool | int | float | str):
            key = (type(thing).__name__, thing)
            found = primitives.get(key)
            if found is not None:
                return found
            index = len(items)
            primitives[key] = index
            items.append(json.dumps(thing, ensure_ascii=False))
            return index
        index = len(items)
        items.append("")
        if isinstance(thing, list | tuple):
            items[index] = "[" + ",".join(str(flatten(item)) for item in thing) + "]"
        elif isinstance(thing, dict):
            parts = [f"{json.dumps(str(k), ensure_ascii=False)}:{flatten(v)}"
                     for k, v in thing.items()]  # fmt: skip
            items[index] = "{" + ",".join(parts) + "}"
        else:
            raise errors.InvalidRequest(f"cannot encode a {type(thing).__name__} for a WDK app")
        return index

    root = flatten(value)
    if root < 0:
        return str(root)
    return "[" + ",".join(items) + "]"


def payload_bytes(value: Any) -> bytes:
    """A JSON value as the runtime reads a payload: ``devl`` + devalue text."""
    return PAYLOAD_FORMAT + devalue(value).encode()


_SPECIALS: dict[int, Any] = {-1: None, -2: None, -3: math.nan, -4: math.inf, -5: -math.inf,
                             -6: -0.0}  # fmt: skip


def read_devalue(text: str) -> Any:
    """``devalue.parse`` for what JSON can hold (undefined and holes read as null);
    ``ValueError`` for anything else (dates, maps, classes the runtime reduced)."""
    parsed = json.loads(text)
    if isinstance(parsed, int) and not isinstance(parsed, bool):
        if parsed in _SPECIALS:
            return _SPECIALS[parsed]
        raise ValueError(f"not a devalue document: {parsed}")
    if not isinstance(parsed, list) or not parsed:
        raise ValueError("not a devalue document")
    done: dict[int, Any] = {}
    open_: set[int] = set()

    def hydrate(index: Any) -> Any:
        if isinstance(index, bool) or not isinstance(index, int):
            raise ValueError("a devalue reference is not an index")
        if index < 0:
            if index not in _SPECIALS:
                raise ValueError(f"unknown devalue constant {index}")
            return _SPECIALS[index]
        if index in done:
            return done[index]
        if index >= len(parsed) or index in open_:
            raise ValueError("a devalue reference is out of range or circular")
        item = parsed[index]
        open_.add(index)
        if isinstance(item, list):
            if item and isinstance(item[0], str):
                raise ValueError(f"devalue type {item[0][:40]!r} is not a JSON value")
            value: Any = [hydrate(i) for i in item]
        elif isinstance(item, dict):
            value = {key: hydrate(i) for key, i in item.items()}
        else:
            value = item
        open_.discard(index)
        done[index] = value
        return value

    return hydrate(0)


class AppValues:
    """What the public lane shows of a WDK app's runs (LANE.md §8): ``input`` and
    ``output`` as values — ``devl`` payloads read, ``encr`` ones decrypted with the
    run's key first. A payload that cannot be read (another format, a type JSON has
    no word for, a wrong key) is shown as the bytes it is."""

    def __init__(
        self, deployments: DeploymentReader, keys: RunKeyDeriver, cipher: PayloadCipher
    ) -> None:
        self._deployments = deployments
        self._keys = keys
        self._cipher = cipher
        self._external: dict[str, bool] = {}  # a deployment's kind never changes

    async def readable(self, runs: Sequence[Run]) -> list[Run]:
        for deployment_id in {run.deployment_id for run in runs} - set(self._external):
            found = await self._deployments.get(deployment_id) if deployment_id else None
            if found is not None:
                self._external[deployment_id] = found.external
        return [
            replace(run, input=self._value(run, run.input), output=self._value(run, run.output))
            if self._external.get(run.deployment_id) else run
            for run in runs
        ]  # fmt: skip

    def _value(self, run: Run, data: Any) -> Any:
        if not isinstance(data, bytes):
            return data
        plain = data
        if plain.startswith(ENCRYPTED_FORMAT):
            key = self._keys.derive(run.deployment_id, run.run_id)
            if key is None:
                return data
            try:
                plain = self._cipher.decrypt(key, plain[len(ENCRYPTED_FORMAT) :])
            except ValueError:
                return data
        if not plain.startswith(PAYLOAD_FORMAT):
            return data
        try:
            return read_devalue(plain[len(PAYLOAD_FORMAT) :].decode())
        except (ValueError, UnicodeDecodeError, RecursionError):
            return data


# -- deliveries -------------------------------------------------------------------------------


def signature(secret: str, timestamp: int, message_id: str, attempt: int, body: bytes) -> str:
    """``v1=<hex HMAC-SHA256(secret, "<timestamp>.<message id>.<attempt>." + body)>``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.{message_id}.{attempt}.".encode(), hashlib.sha256)
    mac.update(body)
    return "v1=" + mac.hexdigest()


@dataclass(frozen=True, slots=True)
class AppMessage:
    """A queue message claimed for delivery to an app, with its lease."""

    message_id: str
    queue_name: str
    body: bytes  # the message as published: JSON, bytes as Uint8Array envelopes
    attempt: int  # this delivery's number (1-based), already counted durably
    failures: int  # failed deliveries in a row before this one
    deployment_id: str
    headers: dict[str, str]  # opts.headers of the publish
    run_id: str | None = None


@dataclass(frozen=True, slots=True)
class Reply:
    """What came back from one delivery: an HTTP status and body, or no answer."""

    status: int | None  # None: no HTTP answer
    body: bytes = b""
    reached: bool = True  # False: provably never reached the app (connect failed)
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    action: Literal["ack", "again", "drop"]
    delay_seconds: float = 0.0
    attempt: int = 0  # the durable attempt count from now on
    failures: int = 0  # failed deliveries in a row
    reason: str = ""


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    """How often and how long a message is delivered again (LANE.md §4.2)."""

    first_backoff_seconds: float = 1.0
    max_backoff_seconds: float = 60.0
    max_failures: int = 48  # failed deliveries in a row, then the message is dropped
    max_deliveries: int = 256  # deliveries that reached the app, whatever they answered

    def backoff(self, failures: int) -> float:
        exponent = min(max(failures - 1, 0), 30)
        return min(self.max_backoff_seconds, self.first_backoff_seconds * 2.0**exponent)

    def judge(self, reply: Reply, attempt: int, failures: int) -> Verdict:
        """The verdict on delivery number ``attempt`` (already counted) after
        ``failures`` failures in a row."""
        if reply.status is not None and 200 <= reply.status < 300:
            timeout = _timeout_seconds(reply.body)
            if timeout is None:
                return Verdict("ack", attempt=attempt)
            if attempt >= self.max_deliveries:
                why = f"delivered {attempt} times, the safety cap"
                return Verdict("drop", attempt=attempt, reason=why)
            return Verdict("again", timeout, attempt, 0, f"the app asked again in {timeout} s")
        counted = attempt if reply.reached else attempt - 1
        failed = failures + 1
        why = reply.error or "no answer"
        if reply.status is not None:
            said = reply.body[:MAX_REASON].decode(errors="replace").strip()
            why = f"HTTP {reply.status}" + (f": {said}" if said else "")
        if failed >= self.max_failures:
            why = f"{failed} failed deliveries in a row, the last: {why}"
            return Verdict("drop", attempt=counted, failures=failed, reason=why)
        if counted >= self.max_deliveries:
            why = f"delivered {counted} times, the safety cap; the last: {why}"
            return Verdict("drop", attempt=counted, failures=failed, reason=why)
        return Verdict("again", self.backoff(failed), counted, failed, why)


def _timeout_seconds(body: bytes) -> float | None:
    """``timeoutSeconds`` of a JSON object body when it is a finite number ≥ 0."""
    try:
        value = json.loads(body) if body else None
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(value, dict):
        return None
    found = value.get("timeoutSeconds")
    if isinstance(found, bool) or not isinstance(found, int | float):
        return None
    if not math.isfinite(found) or found < 0:
        return None
    return float(found)
