"""Signature verifiers for inbound webhooks, one class per provider scheme.

Every scheme is HMAC-SHA256 over the raw body (plus, for the timestamped
schemes, a prefix that binds the timestamp). All digest comparisons go through
``hmac.compare_digest``; every malformed header becomes ``InvalidSignature`` so
that the HTTP edge answers 401 instead of 500.

The timestamped schemes check the signature *before* the timestamp's age: a
forged request learns only "invalid", never whether its timestamp was fresh.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import string
import time
from collections.abc import Callable, Iterable, Mapping

from compute_worker.domain.errors import InvalidSignature, StaleSignature
from compute_worker.domain.ports.webhooks import SignatureVerifier

Clock = Callable[[], float]

DEFAULT_TOLERANCE_SECONDS = 300
_DIGEST_SIZE = hashlib.sha256().digest_size
_MAX_TIMESTAMP_DIGITS = 15  # ~31 million years of unix seconds; bounds int() on hostile input
_STANDARD_SECRET_PREFIX = "whsec_"


class GithubVerifier(SignatureVerifier):
    """``X-Hub-Signature-256: sha256=<hex>`` over the body; id from ``X-GitHub-Delivery``."""

    def verify(self, headers: Mapping[str, str], body: bytes, secret: str) -> str | None:
        _require_secret(secret)
        header = _required_header(headers, "x-hub-signature-256")
        scheme, _, hex_signature = header.partition("=")
        if scheme != "sha256":
            raise InvalidSignature("x-hub-signature-256 must look like 'sha256=<hex digest>'")
        signature = _parse_hex_digest(hex_signature, "x-hub-signature-256")
        _require_match(_hmac_sha256(secret.encode(), body), [signature])
        return headers.get("x-github-delivery") or None


class StripeVerifier(SignatureVerifier):
    """``Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>…]`` over ``"{t}.{body}"``.

    Several ``v1`` entries appear while a secret is being rolled; one match is
    enough. Other schemes (``v0``) are ignored, as Stripe's own libraries do.
    The delivery id is the event's ``id``, since Stripe sends no delivery header.
    """

    def __init__(
        self, tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS, clock: Clock = time.time
    ) -> None:
        self._tolerance_seconds = tolerance_seconds
        self._clock = clock

    def verify(self, headers: Mapping[str, str], body: bytes, secret: str) -> str | None:
        _require_secret(secret)
        timestamp, signatures = _parse_stripe_header(_required_header(headers, "stripe-signature"))
        signed_payload = timestamp.encode() + b"." + body
        _require_match(_hmac_sha256(secret.encode(), signed_payload), signatures)
        _require_fresh(int(timestamp), self._clock(), self._tolerance_seconds)
        return _stripe_event_id(body)


class StandardWebhooksVerifier(SignatureVerifier):
    """Standard Webhooks (https://www.standardwebhooks.com): ``webhook-id``,
    ``webhook-timestamp`` and ``webhook-signature: v1,<base64> [v1,<base64>…]``
    over ``"{id}.{timestamp}.{body}"``.

    The secret is ``whsec_``-prefixed base64 by convention; when the text after
    the (optional) prefix is not base64, that text's UTF-8 bytes are the key, so
    plain shared secrets work too. Signature versions other than ``v1`` (e.g.
    asymmetric ``v1a``) are ignored.
    """

    def __init__(
        self, tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS, clock: Clock = time.time
    ) -> None:
        self._tolerance_seconds = tolerance_seconds
        self._clock = clock

    def verify(self, headers: Mapping[str, str], body: bytes, secret: str) -> str | None:
        _require_secret(secret)
        delivery_id = _required_header(headers, "webhook-id")
        timestamp = _required_header(headers, "webhook-timestamp")
        issued_at = _parse_timestamp(timestamp, "webhook-timestamp")
        signatures = _parse_standard_signatures(_required_header(headers, "webhook-signature"))
        signed_content = f"{delivery_id}.{timestamp}.".encode() + body
        _require_match(_hmac_sha256(_standard_key(secret), signed_content), signatures)
        _require_fresh(issued_at, self._clock(), self._tolerance_seconds)
        return delivery_id


VERIFIERS: dict[str, type] = {
    "github": GithubVerifier,
    "stripe": StripeVerifier,
    "standard": StandardWebhooksVerifier,
}


# -- shared checks --------------------------------------------------------------------------


def _require_secret(secret: str) -> None:
    """Fail closed: an empty key would let anyone compute a valid signature."""
    if not secret:
        raise InvalidSignature("no webhook secret is configured for this provider")


def _required_header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name, "").strip()
    if not value:
        raise InvalidSignature(f"missing {name} header")
    return value


def _hmac_sha256(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


def _require_match(expected: bytes, candidates: Iterable[bytes]) -> None:
    """Compare against every candidate (no early exit) so timing reveals nothing."""
    matched = False
    for candidate in candidates:
        matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise InvalidSignature("signature does not match the request body")


def _require_fresh(timestamp: int, now: float, tolerance_seconds: int) -> None:
    if abs(now - timestamp) > tolerance_seconds:
        raise StaleSignature(
            f"signature timestamp is more than {tolerance_seconds} seconds from the server time"
        )


def _parse_timestamp(value: str, header: str) -> int:
    """Unix seconds as plain ASCII digits: ``int()`` alone would also accept signs,
    underscores, surrounding spaces and non-ASCII digits."""
    if not (value.isascii() and value.isdigit() and len(value) <= _MAX_TIMESTAMP_DIGITS):
        raise InvalidSignature(f"{header} timestamp must be unix seconds, got {value[:32]!r}")
    return int(value)


def _parse_hex_digest(value: str, header: str) -> bytes:
    """``bytes.fromhex`` tolerates whitespace, so check the alphabet and length first."""
    if len(value) != 2 * _DIGEST_SIZE or not all(c in string.hexdigits for c in value):
        raise InvalidSignature(f"{header} signature must be {2 * _DIGEST_SIZE} hex characters")
    return bytes.fromhex(value)


# -- Stripe ---------------------------------------------------------------------------------


def _parse_stripe_header(header: str) -> tuple[str, list[bytes]]:
    """Return the timestamp (as sent, since it is part of the signed payload) and the
    ``v1`` signatures."""
    timestamps: list[str] = []
    signatures: list[bytes] = []
    for item in header.split(","):
        key, separator, value = item.strip().partition("=")
        if not separator:
            raise InvalidSignature("stripe-signature entries must look like 'key=value'")
        if key == "t":
            timestamps.append(value)
        elif key == "v1":
            signatures.append(_parse_hex_digest(value, "stripe-signature"))
    if len(timestamps) != 1:
        raise InvalidSignature("stripe-signature must carry exactly one t=<unix seconds>")
    if not signatures:
        raise InvalidSignature("stripe-signature carries no v1 signature")
    _parse_timestamp(timestamps[0], "stripe-signature")
    return timestamps[0], signatures


def _stripe_event_id(body: bytes) -> str | None:
    try:
        event = json.loads(body)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, or absurdly nested
        return None
    event_id = event.get("id") if isinstance(event, dict) else None
    return event_id if isinstance(event_id, str) and event_id else None


# -- Standard Webhooks ----------------------------------------------------------------------


def _parse_standard_signatures(header: str) -> list[bytes]:
    signatures: list[bytes] = []
    for item in header.split():
        version, separator, encoded = item.partition(",")
        if not separator:
            raise InvalidSignature("webhook-signature entries must look like 'v1,<base64>'")
        if version == "v1":
            signatures.append(_decode_standard_signature(encoded))
    if not signatures:
        raise InvalidSignature("webhook-signature carries no v1 signature")
    return signatures


def _decode_standard_signature(encoded: str) -> bytes:
    try:
        signature = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):  # ValueError: non-ASCII characters
        raise InvalidSignature("webhook-signature v1 value is not valid base64") from None
    if len(signature) != _DIGEST_SIZE:
        raise InvalidSignature(f"webhook-signature v1 value must decode to {_DIGEST_SIZE} bytes")
    return signature


def _standard_key(secret: str) -> bytes:
    encoded = secret.removeprefix(_STANDARD_SECRET_PREFIX)
    _require_secret(encoded)  # a bare "whsec_" would otherwise be an empty key
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return encoded.encode()
