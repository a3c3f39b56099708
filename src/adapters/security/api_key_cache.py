"""``CachedApiKeyStore``: the key lookup of every request served from memory.

Wraps any ``ApiKeyStore``. A found key is kept for ``ttl_seconds`` (at most
``max_entries`` of them, least recently used evicted first); an unknown secret is
never cached, so a key created anywhere works at once. What this process changes
(revoke, delete, purge, re-seed) drops the cached entry before the call returns,
and a lookup that raced with such a change does not put its stale answer back.
What another process changes (``compute-worker keys revoke``) is announced on
``KEYS_TOPIC`` of the signal when the signal crosses processes (PostgreSQL:
NOTIFY sent in the change's transaction): the whole cache is dropped on it. Without
it (SQLite, or while the LISTEN connection is down) such a change takes effect here
within ``ttl_seconds``. Expiry needs no invalidation: the cached key carries its
``expires_at`` and ``Authenticate`` checks it on every request.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from datetime import datetime

from compute_worker.domain.api_keys import KEYS_TOPIC
from compute_worker.domain.ports.clock import Clock
from compute_worker.domain.ports.security import ApiKey, ApiKeyStore
from compute_worker.domain.ports.streams import Signal


class CachedApiKeyStore(ApiKeyStore):
    def __init__(
        self,
        inner: ApiKeyStore,
        clock: Clock,
        ttl_seconds: float,
        signal: Signal,
        max_entries: int = 10_000,
    ) -> None:
        self._inner = inner
        self._changes = signal.subscribe(KEYS_TOPIC)
        self._clock = clock
        self._ttl = ttl_seconds
        self._max = max_entries
        self._entries: OrderedDict[str, tuple[datetime, ApiKey]] = OrderedDict()
        self._generation = 0  # moves on every local change; a lookup across one is not kept

    async def find_by_hash(self, secret_hash: str) -> ApiKey | None:
        if self._ttl <= 0:
            return await self._inner.find_by_hash(secret_hash)
        if self._changes.notified():  # keys changed in another process
            self._generation += 1
            self._entries.clear()
        now = self._clock.now()
        cached = self._entries.get(secret_hash)
        if cached is not None:
            age = (now - cached[0]).total_seconds()
            if 0 <= age < self._ttl:
                self._entries.move_to_end(secret_hash)
                return cached[1]
            del self._entries[secret_hash]
        generation = self._generation
        key = await self._inner.find_by_hash(secret_hash)
        if key is not None and generation == self._generation:
            self._entries[secret_hash] = (now, key)
            self._entries.move_to_end(secret_hash)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)
        return key

    def _forget(self, key_id: str | None = None, secret_hash: str | None = None) -> None:
        self._generation += 1
        if secret_hash is not None:
            self._entries.pop(secret_hash, None)
        if key_id is not None:
            for cached_hash in [h for h, (_, k) in self._entries.items() if k.key_id == key_id]:
                del self._entries[cached_hash]

    async def upsert_seed(self, key: ApiKey, secret_hash: str) -> None:
        try:
            await self._inner.upsert_seed(key, secret_hash)
        finally:
            self._forget(secret_hash=secret_hash)

    async def create(self, key: ApiKey, secret_hash: str) -> None:
        await self._inner.create(key, secret_hash)

    async def list(self) -> Sequence[ApiKey]:
        return await self._inner.list()

    async def revoke(self, key_id: str, at: datetime) -> bool:
        self._forget(key_id)  # before too: no request is served from the entry meanwhile
        try:
            return await self._inner.revoke(key_id, at)
        finally:
            self._forget(key_id)

    async def delete_minted(self, key_id: str) -> bool:
        self._forget(key_id)
        try:
            return await self._inner.delete_minted(key_id)
        finally:
            self._forget(key_id)

    async def purge_expired(self, now: datetime) -> int:
        try:
            return await self._inner.purge_expired(now)
        finally:
            self._generation += 1
            for cached_hash in [h for h, (_, k) in self._entries.items()
                                if k.expires_at is not None and k.expires_at <= now]:  # fmt: skip
                del self._entries[cached_hash]
