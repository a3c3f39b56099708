"""Inbound webhook signatures."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol


class SignatureVerifier(Protocol):
    def verify(self, headers: Mapping[str, str], body: bytes, secret: str) -> str | None:
        """Check the provider's signature over ``body``; return the delivery id the
        headers carry (None when the scheme has none). Raises ``InvalidSignature``
        or ``StaleSignature``. ``headers`` keys are lower-case."""
        ...
