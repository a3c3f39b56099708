"""API keys and per-run encryption keys."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True, slots=True)
class ApiKey:
    key_id: str
    name: str
    scopes: frozenset[str]
    created_at: datetime
    revoked_at: datetime | None = None
    expires_at: datetime | None = None

    def usable_at(self, moment: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or moment < self.expires_at)


class ApiKeyStore(Protocol):
    async def find_by_hash(self, secret_hash: str) -> ApiKey | None: ...
    async def upsert_seed(self, key: ApiKey, secret_hash: str) -> None:
        """Create the key, or update name and scopes of the key with this hash."""
        ...

    async def create(self, key: ApiKey, secret_hash: str) -> None: ...
    async def list(self) -> Sequence[ApiKey]: ...
    async def revoke(self, key_id: str, at: datetime) -> bool: ...
    async def delete_minted(self, key_id: str) -> bool:
        """Delete a short-lived key (one with an expiry); False if there is none."""
        ...

    async def purge_expired(self, now: datetime) -> int:
        """Delete short-lived keys that have expired; how many were deleted."""
        ...


class RunKeyDeriver(Protocol):
    def derive(self, deployment_id: str, run_id: str) -> bytes | None:
        """The run's 32-byte AES key, or None when encryption is switched off."""
        ...


class PayloadCipher(Protocol):
    def decrypt(self, key: bytes, data: bytes) -> bytes:
        """AES-256-GCM: ``data`` is the 12-byte nonce then ciphertext and tag, as the
        WDK runtime writes it; ``ValueError`` when it does not authenticate."""
        ...
