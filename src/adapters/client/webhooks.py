"""Signed test deliveries for the webhook schemes the server checks
(``adapters/webhooks/verifiers.py``): ``github``, ``stripe`` and ``standard``."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
import uuid
from typing import Any

SCHEMES = ("github", "stripe", "standard")


def webhook_body(scheme: str, payload: Any, delivery_id: str) -> bytes:
    """JSON of ``payload`` (bytes and str are sent as they are). Stripe takes the
    delivery id from the event's ``id``, so a dict without one gets ``delivery_id``."""
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, str):
        return payload.encode()
    if scheme == "stripe" and isinstance(payload, dict) and "id" not in payload:
        payload = {"id": delivery_id, **payload}
    return json.dumps(payload, separators=(",", ":")).encode()


def signed_headers(
    scheme: str,
    secret: str,
    body: bytes,
    *,
    delivery_id: str | None = None,
    timestamp: int | None = None,
) -> dict[str, str]:
    """The headers a provider using ``scheme`` sends with ``body``, signed as it would
    sign them with ``secret`` (a Standard Webhooks secret is ``whsec_<base64>``)."""
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {', '.join(SCHEMES)}, not {scheme!r}")
    delivery = delivery_id or f"msg_{uuid.uuid4().hex}"
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    headers = {"Content-Type": "application/json"}
    if scheme == "github":
        digest = _hmac(secret.encode(), body).hex()
        return {**headers, "X-Hub-Signature-256": f"sha256={digest}",
                "X-GitHub-Delivery": delivery, "X-GitHub-Event": "ping"}  # fmt: skip
    if scheme == "stripe":
        digest = _hmac(secret.encode(), stamp.encode() + b"." + body).hex()
        return {**headers, "Stripe-Signature": f"t={stamp},v1={digest}"}
    signature = _hmac(_standard_key(secret), f"{delivery}.{stamp}.".encode() + body)
    return {
        **headers,
        "webhook-id": delivery,
        "webhook-timestamp": stamp,
        "webhook-signature": "v1," + base64.b64encode(signature).decode(),
    }


def _hmac(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


def _standard_key(secret: str) -> bytes:
    encoded = secret.removeprefix("whsec_")
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return encoded.encode()  # as the server: a secret that is not base64 is its bytes
