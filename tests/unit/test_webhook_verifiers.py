"""Webhook signature verifiers. Expected signatures are computed here with ``hmac``
directly, from each provider's documented scheme, not through the adapter."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest

from compute_worker.adapters.webhooks.verifiers import (
    VERIFIERS,
    GithubVerifier,
    StandardWebhooksVerifier,
    StripeVerifier,
)
from compute_worker.domain.errors import InvalidSignature, StaleSignature

NOW = 1_736_942_400  # 2025-01-15T12:00:00Z
TOLERANCE = 300
BODY = json.dumps({"id": "evt_123", "type": "push", "amount": 42}).encode()
SECRET = "It's a Secret to Everybody"
OTHER_SECRET = "not the secret"
STANDARD_KEY = b"\x01" * 8 + b"standard-webhooks-key-32b"
STANDARD_SECRET = "whsec_" + base64.b64encode(STANDARD_KEY).decode()
HEX_A = "a" * 64


def frozen_clock() -> float:
    return float(NOW)


def hmac_sha256(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


# -- GitHub ---------------------------------------------------------------------------------


def github_headers(body: bytes = BODY, secret: str = SECRET) -> dict[str, str]:
    digest = hmac_sha256(secret.encode(), body).hex()
    return {"x-hub-signature-256": f"sha256={digest}", "x-github-delivery": "d-1"}


def test_github_accepts_a_valid_signature_and_returns_the_delivery_id() -> None:
    assert GithubVerifier().verify(github_headers(), BODY, SECRET) == "d-1"


def test_github_matches_the_documented_example() -> None:
    """The example from GitHub's "Validating webhook deliveries" page."""
    headers = {
        "x-hub-signature-256": (
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        )
    }
    assert GithubVerifier().verify(headers, b"Hello, World!", SECRET) is None


def test_github_accepts_upper_case_hex() -> None:
    headers = github_headers()
    headers["x-hub-signature-256"] = "sha256=" + headers["x-hub-signature-256"][7:].upper()
    assert GithubVerifier().verify(headers, BODY, SECRET) == "d-1"


@pytest.mark.parametrize("delivery", [None, ""])
def test_github_without_a_delivery_header_returns_none(delivery: str | None) -> None:
    headers = github_headers()
    del headers["x-github-delivery"]
    if delivery is not None:
        headers["x-github-delivery"] = delivery
    assert GithubVerifier().verify(headers, BODY, SECRET) is None


@pytest.mark.parametrize(
    ("signature", "body", "secret", "message"),
    [
        pytest.param(None, BODY + b" ", SECRET, "does not match", id="tampered-body"),
        pytest.param(None, BODY, OTHER_SECRET, "does not match", id="wrong-secret"),
        pytest.param(None, BODY, "", "no webhook secret", id="empty-secret"),
        pytest.param("", BODY, SECRET, "missing", id="empty-header"),
        pytest.param(HEX_A, BODY, SECRET, "sha256=", id="no-scheme-prefix"),
        pytest.param(f"sha1={'a' * 40}", BODY, SECRET, "sha256=", id="sha1-scheme"),
        pytest.param("sha256=", BODY, SECRET, "hex", id="empty-digest"),
        pytest.param(f"sha256={'z' * 64}", BODY, SECRET, "hex", id="not-hex"),
        pytest.param(f"sha256={'a' * 62}", BODY, SECRET, "hex", id="short-digest"),
        pytest.param(f"sha256={'aa ' * 21}a", BODY, SECRET, "hex", id="hex-with-spaces"),
    ],
)
def test_github_rejects(signature: str | None, body: bytes, secret: str, message: str) -> None:
    headers = github_headers()
    if signature is not None:
        headers["x-hub-signature-256"] = signature
    with pytest.raises(InvalidSignature, match=message):
        GithubVerifier().verify(headers, body, secret)


def test_github_rejects_a_missing_signature_header() -> None:
    with pytest.raises(InvalidSignature, match="missing x-hub-signature-256"):
        GithubVerifier().verify({"x-github-delivery": "d-1"}, BODY, SECRET)


# -- Stripe ---------------------------------------------------------------------------------


def stripe_signature(timestamp: int | str = NOW, body: bytes = BODY, secret: str = SECRET) -> str:
    return hmac_sha256(secret.encode(), f"{timestamp}.".encode() + body).hex()


def stripe_verify(header: str, body: bytes = BODY, secret: str = SECRET) -> str | None:
    verifier = StripeVerifier(tolerance_seconds=TOLERANCE, clock=frozen_clock)
    return verifier.verify({"stripe-signature": header}, body, secret)


@pytest.mark.parametrize(
    "header",
    [
        pytest.param(f"t={NOW},v1={stripe_signature()}", id="single-v1"),
        pytest.param(f"t={NOW},v1={HEX_A},v1={stripe_signature()}", id="second-v1-matches"),
        pytest.param(f"t={NOW},v1={stripe_signature()},v1={HEX_A}", id="first-v1-matches"),
        pytest.param(f"t={NOW},v1={stripe_signature()},v0={HEX_A}", id="v0-ignored"),
        pytest.param(f"v1={stripe_signature()}, t={NOW}", id="any-order-and-spaces"),
        pytest.param(f"t={NOW - TOLERANCE},v1={stripe_signature(NOW - TOLERANCE)}", id="oldest"),
        pytest.param(f"t={NOW + TOLERANCE},v1={stripe_signature(NOW + TOLERANCE)}", id="newest"),
    ],
)
def test_stripe_accepts_and_returns_the_event_id(header: str) -> None:
    assert stripe_verify(header) == "evt_123"


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"not json", id="not-json"),
        pytest.param(b"\xff\xfe\x00", id="not-utf8"),
        pytest.param(b'["evt_1"]', id="array"),
        pytest.param(b'{"type": "x"}', id="no-id"),
        pytest.param(b'{"id": 7}', id="numeric-id"),
        pytest.param(b'{"id": ""}', id="empty-id"),
        pytest.param(b"[" * 100_000 + b"]" * 100_000, id="deeply-nested"),
    ],
)
def test_stripe_returns_no_delivery_id_without_an_event_id(body: bytes) -> None:
    assert stripe_verify(f"t={NOW},v1={stripe_signature(body=body)}", body=body) is None


@pytest.mark.parametrize(
    ("header", "body", "secret", "message"),
    [
        pytest.param(
            f"t={NOW},v1={stripe_signature()}",
            BODY + b" ",
            SECRET,
            "does not match",
            id="tampered-body",
        ),
        pytest.param(
            f"t={NOW},v1={stripe_signature()}",
            BODY,
            OTHER_SECRET,
            "does not match",
            id="wrong-secret",
        ),
        pytest.param(
            f"t={NOW + 1},v1={stripe_signature()}",
            BODY,
            SECRET,
            "does not match",
            id="timestamp-not-the-signed-one",
        ),
        pytest.param(
            f"t={NOW},v1={HEX_A},v1={'b' * 64}",
            BODY,
            SECRET,
            "does not match",
            id="no-v1-matches",
        ),
        pytest.param(
            f"t={NOW},v0={stripe_signature()}",
            BODY,
            SECRET,
            "no v1",
            id="only-v0",
        ),
        pytest.param(
            f"t={NOW},v1={stripe_signature()}", BODY, "", "no webhook secret", id="empty-secret"
        ),
        pytest.param("", BODY, SECRET, "missing", id="empty-header"),
        pytest.param("garbage", BODY, SECRET, "key=value", id="no-equals"),
        pytest.param(f"t={NOW},,v1={HEX_A}", BODY, SECRET, "key=value", id="empty-entry"),
        pytest.param(f"v1={stripe_signature()}", BODY, SECRET, "exactly one t", id="no-t"),
        pytest.param(
            f"t={NOW},t={NOW},v1={stripe_signature()}",
            BODY,
            SECRET,
            "exactly one t",
            id="two-t",
        ),
        pytest.param(f"t={NOW}", BODY, SECRET, "no v1", id="no-v1"),
        pytest.param(f"t=abc,v1={HEX_A}", BODY, SECRET, "unix seconds", id="t-not-integer"),
        pytest.param(f"t=,v1={HEX_A}", BODY, SECRET, "unix seconds", id="t-empty"),
        pytest.param(f"t=-5,v1={HEX_A}", BODY, SECRET, "unix seconds", id="t-negative"),
        pytest.param(f"t=1_0,v1={HEX_A}", BODY, SECRET, "unix seconds", id="t-underscore"),
        pytest.param(f"t={'9' * 5000},v1={HEX_A}", BODY, SECRET, "unix seconds", id="t-huge"),
        pytest.param(f"t={NOW},v1={'z' * 64}", BODY, SECRET, "hex", id="v1-not-hex"),
        pytest.param(f"t={NOW},v1=", BODY, SECRET, "hex", id="v1-empty"),
        pytest.param(f"t={NOW},v1={'a' * 66}", BODY, SECRET, "hex", id="v1-too-long"),
    ],
)
def test_stripe_rejects(header: str, body: bytes, secret: str, message: str) -> None:
    with pytest.raises(InvalidSignature, match=message):
        stripe_verify(header, body, secret)


def test_stripe_rejects_a_missing_header() -> None:
    verifier = StripeVerifier(clock=frozen_clock)
    with pytest.raises(InvalidSignature, match="missing stripe-signature"):
        verifier.verify({}, BODY, SECRET)


@pytest.mark.parametrize(
    "timestamp", [NOW - TOLERANCE - 1, NOW + TOLERANCE + 1, 0], ids=["old", "future", "epoch"]
)
def test_stripe_rejects_a_timestamp_outside_the_tolerance(timestamp: int) -> None:
    with pytest.raises(StaleSignature):
        stripe_verify(f"t={timestamp},v1={stripe_signature(timestamp)}")


def test_stripe_reports_a_bad_signature_before_a_stale_timestamp() -> None:
    stale = NOW - TOLERANCE - 1
    with pytest.raises(InvalidSignature):
        stripe_verify(f"t={stale},v1={stripe_signature(stale, secret=OTHER_SECRET)}")


def test_stripe_tolerance_is_configurable() -> None:
    timestamp = NOW - 100
    header = f"t={timestamp},v1={stripe_signature(timestamp)}"
    verifier = StripeVerifier(tolerance_seconds=60, clock=frozen_clock)
    with pytest.raises(StaleSignature):
        verifier.verify({"stripe-signature": header}, BODY, SECRET)


# -- Standard Webhooks ----------------------------------------------------------------------


def standard_signature(
    msg_id: str = "msg_1", timestamp: int | str = NOW, body: bytes = BODY, key: bytes = STANDARD_KEY
) -> str:
    digest = hmac_sha256(key, f"{msg_id}.{timestamp}.".encode() + body)
    return "v1," + base64.b64encode(digest).decode()


def standard_headers(
    signature: str | None = None, timestamp: int | str = NOW, msg_id: str = "msg_1"
) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature or standard_signature(msg_id, timestamp),
    }


def standard_verify(
    headers: dict[str, str], body: bytes = BODY, secret: str = STANDARD_SECRET
) -> str | None:
    verifier = StandardWebhooksVerifier(tolerance_seconds=TOLERANCE, clock=frozen_clock)
    return verifier.verify(headers, body, secret)


def test_standard_matches_the_specification_example() -> None:
    """The example from the Standard Webhooks specification's test vectors."""
    headers = {
        "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
        "webhook-timestamp": "1614265330",
        "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    }
    verifier = StandardWebhooksVerifier(clock=lambda: 1614265330.0)
    body = b'{"test": 2432232314}'
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    assert verifier.verify(headers, body, secret) == "msg_p5jXN8AQM9LWM0D4loKWxJek"


@pytest.mark.parametrize(
    "signature",
    [
        pytest.param(standard_signature(), id="single"),
        pytest.param(
            f"v1,{base64.b64encode(b'x' * 32).decode()} {standard_signature()}", id="second-matches"
        ),
        pytest.param(
            f"{standard_signature()} v1,{base64.b64encode(b'x' * 32).decode()}", id="first-matches"
        ),
        pytest.param(f"v1a,c29tZQ== {standard_signature()}", id="v1a-ignored"),
        pytest.param(f"  {standard_signature()}  ", id="surrounding-spaces"),
    ],
)
def test_standard_accepts_and_returns_the_message_id(signature: str) -> None:
    assert standard_verify(standard_headers(signature)) == "msg_1"


@pytest.mark.parametrize(
    ("secret", "key"),
    [
        pytest.param(STANDARD_SECRET, STANDARD_KEY, id="whsec-base64"),
        pytest.param(STANDARD_SECRET.removeprefix("whsec_"), STANDARD_KEY, id="bare-base64"),
        pytest.param("plain secret!", b"plain secret!", id="not-base64"),
        pytest.param("whsec_plain secret!", b"plain secret!", id="whsec-not-base64"),
    ],
)
def test_standard_derives_the_key_from_the_secret(secret: str, key: bytes) -> None:
    headers = standard_headers(standard_signature(key=key))
    assert standard_verify(headers, secret=secret) == "msg_1"


@pytest.mark.parametrize(
    ("headers", "body", "secret", "message"),
    [
        pytest.param(
            standard_headers(), BODY + b" ", STANDARD_SECRET, "does not match", id="tampered-body"
        ),
        pytest.param(
            standard_headers(),
            BODY,
            "whsec_" + base64.b64encode(b"k" * 24).decode(),
            "does not match",
            id="wrong-secret",
        ),
        pytest.param(standard_headers(), BODY, "", "no webhook secret", id="empty-secret"),
        pytest.param(standard_headers(), BODY, "whsec_", "no webhook secret", id="prefix-only"),
        pytest.param(
            {**standard_headers(), "webhook-id": "msg_2"},
            BODY,
            STANDARD_SECRET,
            "does not match",
            id="id-not-the-signed-one",
        ),
        pytest.param(
            standard_headers(standard_signature(timestamp=NOW), timestamp=NOW + 1),
            BODY,
            STANDARD_SECRET,
            "does not match",
            id="timestamp-not-the-signed-one",
        ),
        pytest.param(
            standard_headers(timestamp="abc"),
            BODY,
            STANDARD_SECRET,
            "unix seconds",
            id="timestamp-not-integer",
        ),
        pytest.param(
            standard_headers(timestamp="1.5"),
            BODY,
            STANDARD_SECRET,
            "unix seconds",
            id="timestamp-fractional",
        ),
        pytest.param(standard_headers("v1"), BODY, STANDARD_SECRET, "v1,<base64>", id="no-comma"),
        pytest.param(standard_headers("v1,!!!!"), BODY, STANDARD_SECRET, "base64", id="not-base64"),
        pytest.param(standard_headers("v1,é"), BODY, STANDARD_SECRET, "base64", id="non-ascii"),
        pytest.param(
            standard_headers("v1,"), BODY, STANDARD_SECRET, "32 bytes", id="empty-signature"
        ),
        pytest.param(
            standard_headers("v1,c29tZQ=="), BODY, STANDARD_SECRET, "32 bytes", id="short-signature"
        ),
        pytest.param(
            standard_headers("v2," + standard_signature()[3:]),
            BODY,
            STANDARD_SECRET,
            "no v1",
            id="only-other-versions",
        ),
    ],
)
def test_standard_rejects(headers: dict[str, str], body: bytes, secret: str, message: str) -> None:
    with pytest.raises(InvalidSignature, match=message):
        standard_verify(headers, body, secret)


@pytest.mark.parametrize("header", ["webhook-id", "webhook-timestamp", "webhook-signature"])
@pytest.mark.parametrize("absent", [True, False], ids=["absent", "empty"])
def test_standard_rejects_a_missing_header(header: str, absent: bool) -> None:
    headers = standard_headers()
    if absent:
        del headers[header]
    else:
        headers[header] = ""
    with pytest.raises(InvalidSignature, match=f"missing {header}"):
        standard_verify(headers)


@pytest.mark.parametrize(
    ("timestamp", "stale"),
    [
        (NOW - TOLERANCE, False),
        (NOW + TOLERANCE, False),
        (NOW - TOLERANCE - 1, True),
        (NOW + TOLERANCE + 1, True),
    ],
    ids=["oldest", "newest", "too-old", "too-new"],
)
def test_standard_enforces_the_timestamp_tolerance(timestamp: int, stale: bool) -> None:
    headers = standard_headers(standard_signature(timestamp=timestamp), timestamp=timestamp)
    if stale:
        with pytest.raises(StaleSignature):
            standard_verify(headers)
    else:
        assert standard_verify(headers) == "msg_1"


def test_standard_reports_a_bad_signature_before_a_stale_timestamp() -> None:
    stale = NOW - TOLERANCE - 1
    signature = standard_signature(timestamp=stale, key=b"wrong key")
    with pytest.raises(InvalidSignature):
        standard_verify(standard_headers(signature, timestamp=stale))


# -- registry -------------------------------------------------------------------------------


def test_verifiers_are_registered_by_scheme_name() -> None:
    assert VERIFIERS["github"] is GithubVerifier
    assert VERIFIERS["stripe"] is StripeVerifier
    assert VERIFIERS["standard"] is StandardWebhooksVerifier
