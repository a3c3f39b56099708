"""``SqlApiKeyStore``: API keys, stored by the hash of their secret only.

On PostgreSQL every change (revoke, delete, purge, re-seed) also sends ``KEYS_TOPIC``
on the signal channel inside its own transaction: delivered to every server sharing
the database when, and only when, the change commits, even when it comes from a CLI
process that exits at once. Their key caches drop what they hold on it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import delete, func, select, update
from sqlalchemy.engine import Connection

from compute_worker.adapters.sql.dialect import insert_if_absent
from compute_worker.adapters.sql.pg_signal import CHANNEL
from compute_worker.adapters.sql.reads import SqlReads
from compute_worker.adapters.sql.rows import at_ms, from_ms, to_ms
from compute_worker.adapters.sql.schema import api_keys
from compute_worker.adapters.sql.writer import GroupCommitWriter
from compute_worker.domain.api_keys import KEYS_TOPIC
from compute_worker.domain.ports.security import ApiKey, ApiKeyStore

_ANNOUNCE = select(func.pg_notify(CHANNEL, f"db|{KEYS_TOPIC}"))  # "db": no server's origin


def _key_from(row: Any) -> ApiKey:
    return ApiKey(
        key_id=row.key_id,
        name=row.name,
        scopes=frozenset(orjson.loads(row.scopes)),
        created_at=at_ms(row.created_ms),
        revoked_at=from_ms(row.revoked_ms),
        expires_at=from_ms(row.expires_ms),
    )


def _changed(conn: Connection, changed: bool = True) -> None:
    """Tell every server sharing a PostgreSQL database, at commit, that keys changed."""
    if changed and conn.dialect.name == "postgresql":
        conn.execute(_ANNOUNCE)


def _values(key: ApiKey, secret_hash: str) -> dict[str, Any]:
    return {
        "key_id": key.key_id,
        "name": key.name,
        "secret_hash": secret_hash,
        "scopes": orjson.dumps(sorted(key.scopes)).decode(),
        "created_ms": to_ms(key.created_at),
        "revoked_ms": to_ms(key.revoked_at),
        "expires_ms": to_ms(key.expires_at),
    }


class SqlApiKeyStore(ApiKeyStore):
    def __init__(self, reads: SqlReads, writer: GroupCommitWriter) -> None:
        self._reads = reads
        self._writer = writer

    async def find_by_hash(self, secret_hash: str) -> ApiKey | None:
        query = select(api_keys).where(api_keys.c.secret_hash == secret_hash)

        def fetch(conn: Connection) -> ApiKey | None:
            row = conn.execute(query).first()
            return None if row is None else _key_from(row)

        return await self._reads.run(fetch)

    async def upsert_seed(self, key: ApiKey, secret_hash: str) -> None:
        def upsert(conn: Connection) -> None:
            if not insert_if_absent(conn, api_keys, _values(key, secret_hash)):
                conn.execute(
                    update(api_keys)
                    .where(api_keys.c.secret_hash == secret_hash)
                    .values(name=key.name, scopes=orjson.dumps(sorted(key.scopes)).decode())
                )
                _changed(conn)

        await self._writer.run_sql(upsert)

    async def create(self, key: ApiKey, secret_hash: str) -> None:
        await self._writer.run_sql(
            lambda conn: conn.execute(api_keys.insert().values(**_values(key, secret_hash)))
        )

    async def list(self) -> Sequence[ApiKey]:
        query = select(api_keys).order_by(api_keys.c.created_ms, api_keys.c.key_id)
        return await self._reads.run(lambda conn: [_key_from(row) for row in conn.execute(query)])

    async def revoke(self, key_id: str, at: datetime) -> bool:
        statement = (
            update(api_keys)
            .where(api_keys.c.key_id == key_id, api_keys.c.revoked_ms.is_(None))
            .values(revoked_ms=to_ms(at))
        )
        return await self._writer.run_sql(lambda conn: _count(conn, statement) == 1)

    async def delete_minted(self, key_id: str) -> bool:
        statement = delete(api_keys).where(
            api_keys.c.key_id == key_id, api_keys.c.expires_ms.is_not(None)
        )
        return await self._writer.run_sql(lambda conn: _count(conn, statement) == 1)

    async def purge_expired(self, now: datetime) -> int:
        statement = delete(api_keys).where(
            api_keys.c.expires_ms.is_not(None), api_keys.c.expires_ms <= to_ms(now)
        )
        return await self._writer.run_sql(lambda conn: _count(conn, statement))


def _count(conn: Connection, statement: Any) -> int:
    """Rows the change touched; announced when there were any."""
    count = int(conn.execute(statement).rowcount)
    _changed(conn, count > 0)
    return count
