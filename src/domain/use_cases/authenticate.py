"""Authenticate: bearer secret → API key holding the route's scope.

Unknown, revoked and expired keys get the same answer so that keys cannot be probed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from compute_worker.domain import errors, ids
from compute_worker.domain.api_keys import authorize, check_scopes, hash_secret
from compute_worker.domain.ids import IdFactory
from compute_worker.domain.ports.clock import Clock
from compute_worker.domain.ports.security import ApiKey, ApiKeyStore


class Authenticate:
    def __init__(self, keys: ApiKeyStore, clock: Clock) -> None:
        self._keys = keys
        self._clock = clock

    async def execute(self, secret: str | None, required_scope: str) -> ApiKey:
        key = await self.identify(secret)
        authorize(key, required_scope)
        return key

    async def identify(self, secret: str | None) -> ApiKey:
        """The usable key with this secret; ``Unauthorized`` otherwise."""
        if not secret:
            raise errors.Unauthorized("Missing or invalid API key")
        key = await self._keys.find_by_hash(hash_secret(secret))
        if key is None or not key.usable_at(self._clock.now()):
            raise errors.Unauthorized("Missing or invalid API key")
        return key


@dataclass(frozen=True, slots=True)
class SeedKey:
    secret: str
    scopes: frozenset[str]
    name: str = "seed"


class SeedApiKeys:
    """Create configured keys at startup; the same seed twice updates, never duplicates."""

    def __init__(self, keys: ApiKeyStore, ids: IdFactory, clock: Clock) -> None:
        self._keys = keys
        self._ids = ids
        self._clock = clock

    async def execute(self, seeds: Iterable[SeedKey]) -> None:
        now: datetime = self._clock.now()
        for seed in seeds:
            key = ApiKey(
                key_id=self._ids.new(ids.KEY),
                name=seed.name,
                scopes=check_scopes(seed.scopes),
                created_at=now,
            )
            await self._keys.upsert_seed(key, hash_secret(seed.secret))
