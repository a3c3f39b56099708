"""CachedApiKeyStore: found keys served from memory; local changes seen at once,
other processes' at once when announced on the signal (PostgreSQL), else within the
TTL; misses never cached."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime, timedelta

import pytest

from compute_worker.adapters.security.api_key_cache import CachedApiKeyStore
from compute_worker.adapters.system import LocalSignal
from compute_worker.domain import errors
from compute_worker.domain.api_keys import KEYS_TOPIC, hash_secret
from compute_worker.domain.ids import IdFactory
from compute_worker.domain.ports.security import ApiKey, ApiKeyStore
from compute_worker.domain.use_cases.api_keys import ManageApiKeys
from compute_worker.domain.use_cases.authenticate import Authenticate
from tests.fakes import FixedClock


class FakeKeyStore(ApiKeyStore):
    """The database, shared by every "process"; counts lookups."""

    def __init__(self) -> None:
        self.rows: dict[str, ApiKey] = {}
        self.lookups = 0
        self.gate: asyncio.Event | None = None  # holds a lookup mid-flight

    async def find_by_hash(self, secret_hash: str) -> ApiKey | None:
        self.lookups += 1
        found = self.rows.get(secret_hash)
        if self.gate is not None:
            await self.gate.wait()
        return found

    async def upsert_seed(self, key: ApiKey, secret_hash: str) -> None:
        old = self.rows.get(secret_hash)
        self.rows[secret_hash] = key if old is None else ApiKey(
            old.key_id, key.name, key.scopes, old.created_at, old.revoked_at, old.expires_at
        )  # fmt: skip

    async def create(self, key: ApiKey, secret_hash: str) -> None:
        self.rows[secret_hash] = key

    async def list(self) -> Sequence[ApiKey]:
        return list(self.rows.values())

    def _find(self, key_id: str) -> str | None:
        return next((h for h, k in self.rows.items() if k.key_id == key_id), None)

    async def revoke(self, key_id: str, at: datetime) -> bool:
        found = self._find(key_id)
        if found is None or self.rows[found].revoked_at is not None:
            return False
        old = self.rows[found]
        self.rows[found] = ApiKey(old.key_id, old.name, old.scopes, old.created_at, at,
                                  old.expires_at)  # fmt: skip
        return True

    async def delete_minted(self, key_id: str) -> bool:
        found = self._find(key_id)
        if found is None or self.rows[found].expires_at is None:
            return False
        del self.rows[found]
        return True

    async def purge_expired(self, now: datetime) -> int:
        gone = [h for h, k in self.rows.items() if k.expires_at is not None and k.expires_at <= now]
        for found in gone:
            del self.rows[found]
        return len(gone)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


@pytest.fixture
def db() -> FakeKeyStore:
    return FakeKeyStore()


def process(
    db: FakeKeyStore, clock: FixedClock, ttl: float = 5.0, signal: LocalSignal | None = None
) -> tuple[Authenticate, ManageApiKeys]:
    store = CachedApiKeyStore(db, clock, ttl, signal or LocalSignal())
    return Authenticate(store, clock), ManageApiKeys(store, IdFactory(), clock)


async def test_a_found_key_is_looked_up_once_within_the_ttl(
    db: FakeKeyStore, clock: FixedClock
) -> None:
    auth, keys = process(db, clock)
    created = await keys.create("ci", ["runs:read"])
    for _ in range(5):
        assert (await auth.execute(created.secret, "runs:read")).key_id == created.key.key_id
    assert db.lookups == 1
    clock.advance(5.0)
    await auth.execute(created.secret, "runs:read")
    assert db.lookups == 2


async def test_unknown_secrets_are_not_cached(db: FakeKeyStore, clock: FixedClock) -> None:
    auth, _ = process(db, clock)
    _, other = process(db, clock)  # another process creates the key after a miss here
    with pytest.raises(errors.Unauthorized):
        await auth.identify("cwk_nope")
    created = await other.create("late", ["runs:read"])
    with pytest.raises(errors.Unauthorized):
        await auth.identify("cwk_nope")
    assert (await auth.identify(created.secret)).key_id == created.key.key_id
    assert db.lookups == 3


async def test_a_local_revoke_takes_effect_at_once(db: FakeKeyStore, clock: FixedClock) -> None:
    auth, keys = process(db, clock)
    created = await keys.create("ci", ["runs:read"])
    await auth.identify(created.secret)
    await keys.revoke(created.key.key_id)
    with pytest.raises(errors.Unauthorized):
        await auth.identify(created.secret)


async def test_another_process_revoke_takes_effect_within_the_ttl(
    db: FakeKeyStore, clock: FixedClock
) -> None:
    auth, keys = process(db, clock)
    _, cli = process(db, clock)
    created = await keys.create("ci", ["runs:read"])
    await auth.identify(created.secret)
    await cli.revoke(created.key.key_id)
    clock.advance(4.9)
    await auth.identify(created.secret)  # still cached here: bounded staleness
    clock.advance(0.1)
    with pytest.raises(errors.Unauthorized):
        await auth.identify(created.secret)


async def test_an_announced_change_of_another_process_takes_effect_at_once(
    db: FakeKeyStore, clock: FixedClock
) -> None:
    signal = LocalSignal()  # what PostgreSQL's NOTIFY delivers to this process
    auth, keys = process(db, clock, ttl=300, signal=signal)
    _, cli = process(db, clock)
    created = await keys.create("ci", ["runs:read"])
    other = await keys.create("other", ["runs:read"])
    await auth.identify(created.secret)
    await auth.identify(other.secret)
    await cli.revoke(created.key.key_id)
    await auth.identify(created.secret)  # not announced yet: the cached entry serves
    signal.notify(KEYS_TOPIC)
    with pytest.raises(errors.Unauthorized):
        await auth.identify(created.secret)
    lookups = db.lookups
    await auth.identify(other.secret)  # dropped too, found again, then cached
    await auth.identify(other.secret)
    assert db.lookups == lookups + 1


async def test_expiry_is_checked_on_every_request(db: FakeKeyStore, clock: FixedClock) -> None:
    auth, keys = process(db, clock, ttl=300)
    minted = await keys.mint("child", ["world:proxy"], timedelta(seconds=2))
    await auth.identify(minted.secret)
    clock.advance(2.0)
    with pytest.raises(errors.Unauthorized):
        await auth.identify(minted.secret)
    assert db.lookups == 1  # the cached key's own expiry refused it


async def test_discard_purge_and_reseed_drop_the_entry(db: FakeKeyStore, clock: FixedClock) -> None:
    auth, keys = process(db, clock, ttl=300)
    minted = await keys.mint("child", ["world:proxy"], timedelta(hours=1))
    await auth.identify(minted.secret)
    await keys.discard(minted.key.key_id)
    with pytest.raises(errors.Unauthorized):
        await auth.identify(minted.secret)
    store = CachedApiKeyStore(db, clock, 300, LocalSignal())
    seed = ApiKey("key_seed", "seed", frozenset({"runs:read"}), clock.now())
    await store.upsert_seed(seed, hash_secret("cwk_seed"))
    assert (await store.find_by_hash(hash_secret("cwk_seed"))) == seed
    await store.upsert_seed(ApiKey("key_x", "seed", frozenset({"admin"}), clock.now()),
                            hash_secret("cwk_seed"))  # fmt: skip
    found = await store.find_by_hash(hash_secret("cwk_seed"))
    assert found is not None and found.scopes == {"admin"}
    short = ApiKey("key_s", "s", frozenset({"runs:read"}), clock.now(),
                   expires_at=clock.now() + timedelta(seconds=1))  # fmt: skip
    await store.create(short, hash_secret("cwk_short"))
    assert await store.find_by_hash(hash_secret("cwk_short")) == short
    clock.advance(1)
    assert await store.purge_expired(clock.now()) == 1
    assert await store.find_by_hash(hash_secret("cwk_short")) is None


async def test_a_lookup_racing_a_revoke_does_not_cache_the_stale_key(
    db: FakeKeyStore, clock: FixedClock
) -> None:
    auth, keys = process(db, clock)
    created = await keys.create("ci", ["runs:read"])
    db.gate = asyncio.Event()
    racing = asyncio.create_task(auth.identify(created.secret))  # reads the live row, then waits
    await asyncio.sleep(0)
    await keys.revoke(created.key.key_id)
    db.gate.set()
    await racing  # it read before the revoke: that request may pass, as without a cache
    db.gate = None
    with pytest.raises(errors.Unauthorized):
        await auth.identify(created.secret)


async def test_bounded_and_switchable_off(db: FakeKeyStore, clock: FixedClock) -> None:
    store = CachedApiKeyStore(db, clock, 300, LocalSignal(), max_entries=2)
    for index in range(3):
        await db.create(ApiKey(f"key_{index}", "k", frozenset({"runs:read"}), clock.now()),
                        hash_secret(f"cwk_{index}"))  # fmt: skip
        await store.find_by_hash(hash_secret(f"cwk_{index}"))
    await store.find_by_hash(hash_secret("cwk_2"))
    await store.find_by_hash(hash_secret("cwk_0"))  # evicted first, looked up again
    assert db.lookups == 4
    off = CachedApiKeyStore(db, clock, 0, LocalSignal())
    await off.find_by_hash(hash_secret("cwk_1"))
    await off.find_by_hash(hash_secret("cwk_1"))
    assert db.lookups == 6
