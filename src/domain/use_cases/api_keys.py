"""Managing API keys (CLI ``compute-worker keys``) and reading the audit log
(CLI ``compute-worker audit``)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from compute_worker.domain import errors, ids
from compute_worker.domain.api_keys import check_scopes, hash_secret, new_secret
from compute_worker.domain.audit import AuditEntry
from compute_worker.domain.ids import IdFactory
from compute_worker.domain.ports.audit import AuditLog, AuditQuery
from compute_worker.domain.ports.clock import Clock
from compute_worker.domain.ports.security import ApiKey, ApiKeyStore

MAX_AUDIT_ENTRIES = 100_000


@dataclass(frozen=True, slots=True)
class CreatedKey:
    key: ApiKey
    secret: str  # shown once; only its hash is stored


class ManageApiKeys:
    def __init__(self, keys: ApiKeyStore, ids: IdFactory, clock: Clock) -> None:
        self._keys = keys
        self._ids = ids
        self._clock = clock

    async def create(self, name: str, scopes: Iterable[str]) -> CreatedKey:
        if not name.strip():
            raise errors.InvalidRequest("a key needs a name", {"field": "name"})
        key = ApiKey(self._ids.new(ids.KEY), name.strip(), check_scopes(scopes), self._clock.now())
        secret = new_secret()
        await self._keys.create(key, hash_secret(secret))
        return CreatedKey(key, secret)

    async def mint(self, name: str, scopes: Iterable[str], ttl: timedelta) -> CreatedKey:
        """A short-lived key (e.g. for a helper process)."""
        granted = check_scopes(scopes)
        if not name.strip() or ttl <= timedelta(0):
            raise errors.InvalidRequest("a minted key needs a name and a positive lifetime")
        now = self._clock.now()
        key = ApiKey(self._ids.new(ids.KEY), name, granted, now, expires_at=now + ttl)
        secret = new_secret()
        await self._keys.create(key, hash_secret(secret))
        return CreatedKey(key, secret)

    async def discard(self, key_id: str) -> None:
        """Delete a minted key once its holder is gone (it never appears in lists again)."""
        await self._keys.delete_minted(key_id)

    async def purge_expired(self) -> int:
        """Delete minted keys whose lifetime ended (holders that died without discarding)."""
        return await self._keys.purge_expired(self._clock.now())

    async def list(self) -> Sequence[ApiKey]:
        return await self._keys.list()

    async def revoke(self, key_id: str) -> None:
        if not await self._keys.revoke(key_id, self._clock.now()):
            raise errors.NotFound(f"No active key {key_id}", {"keyId": key_id})


class QueryAudit:
    def __init__(self, log: AuditLog) -> None:
        self._log = log

    async def execute(self, query: AuditQuery) -> list[AuditEntry]:
        if query.correlation_id is None and query.run_id is None and query.since is None:
            raise errors.InvalidRequest("name a correlation id, a run id or a start time")
        if not 1 <= query.limit <= MAX_AUDIT_ENTRIES:
            raise errors.InvalidRequest(f"limit must be between 1 and {MAX_AUDIT_ENTRIES}")
        return await self._log.find(query)
