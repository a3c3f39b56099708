"""The ``compute-worker`` command line in real subprocesses, against the database of a
running server (SQLite file or PostgreSQL): keys, audit, migrate, bad flags."""

from __future__ import annotations

import contextlib
import sqlite3
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from ._helpers import CORRELATION_HEADER, assert_error, assert_ok
from .public_fixtures import (
    ADMIN_KEY,
    SEED_KEYS,
    SHORT_KEY_CACHE,
    PublicServer,
    PublicServers,
    deploy,
    row_counts,
    run_cli,
    trigger,
    until_refused,
)

SECRET_MARK = "secret (shown once):"


def _rows(stdout: str) -> list[list[str]]:
    return [line.split("\t") for line in stdout.splitlines() if line.strip()]


async def _create_key(server: PublicServer, name: str, *scopes: str) -> tuple[str, str]:
    """``keys create``; returns (key id, secret)."""
    flags = [arg for scope in scopes for arg in ("--scope", scope)]
    result = await run_cli("keys", "create", "--name", name, *flags, *server.cli_args)
    assert result.returncode == 0, result
    first, second = result.stdout.splitlines()
    key_id, shown_name, shown_scopes = first.split("\t")
    assert (shown_name, shown_scopes) == (name, " ".join(sorted(scopes)))
    assert key_id.startswith("key_")
    assert second.startswith(SECRET_MARK)
    return key_id, second.removeprefix(SECRET_MARK).strip()


# -- keys ------------------------------------------------------------------------------------


async def test_keys_create_prints_a_secret_that_authenticates_with_its_scopes(
    api_server: PublicServer,
) -> None:
    key_id, secret = await _create_key(api_server, "reader", "runs:read")
    assert len(secret) >= 43  # 32 bytes of entropy, base64url
    async with api_server.client(secret) as client:
        assert_error(await client.get("/v1/runs/wrun_probe"), 404, "run_not_found")
        assert_error(await trigger(client, "echo"), 403, "forbidden")
    assert key_id not in secret


async def test_keys_list_shows_every_key_and_never_a_secret(api_server: PublicServer) -> None:
    key_id, secret = await _create_key(api_server, "deployer", "deploy:read", "deploy:write")
    listed = await run_cli("keys", "list", *api_server.cli_args)
    assert listed.returncode == 0, listed
    rows = _rows(listed.stdout)
    assert [key_id, "deployer", "deploy:read deploy:write", "active"] in rows
    assert {row[1] for row in rows} == {"deployer"} | {seed["name"] for seed in SEED_KEYS}
    assert len(rows) == len(SEED_KEYS) + 1
    shown = listed.stdout + listed.stderr
    assert secret not in shown
    assert all(seed["key"] not in shown for seed in SEED_KEYS)


async def test_keys_revoke_stops_a_key(servers: PublicServers) -> None:
    api_server = await servers.start(**SHORT_KEY_CACHE)
    key_id, secret = await _create_key(api_server, "temporary", "runs:read")
    async with api_server.client(secret) as client:  # the server now holds it in its cache
        assert_error(await client.get("/v1/runs/wrun_probe"), 404, "run_not_found")
    revoked = await run_cli("keys", "revoke", key_id, *api_server.cli_args)
    assert revoked.returncode == 0, revoked
    assert key_id in revoked.stdout
    await until_refused(api_server, secret)  # another process: within the cache's 0.5 s

    async with api_server.client(secret) as client:
        assert_error(await client.get("/v1/runs/wrun_probe"), 401, "unauthorized")
    listed = await run_cli("keys", "list", *api_server.cli_args)
    (row,) = [row for row in _rows(listed.stdout) if row[0] == key_id]
    assert row[3].startswith("revoked")

    before = await row_counts(api_server, ["api_keys"])
    for missing in (key_id, "key_01M80000000000000000000000"):  # already revoked, unknown
        again = await run_cli("keys", "revoke", missing, *api_server.cli_args)
        assert again.returncode != 0
        assert missing in again.stderr and "Traceback" not in again.stderr
    assert await row_counts(api_server, ["api_keys"]) == before


async def test_on_postgresql_a_cli_revoke_reaches_a_long_cache_at_once(
    servers: PublicServers,
) -> None:
    """The revoke's transaction NOTIFYs every server sharing the database: a key cached
    for 300 s stops working as soon as the CLI process has committed."""
    if servers.backend.kind != "postgres":
        pytest.skip("SQLite has no cross-process announcement: the TTL bounds it")
    api_server = await servers.start(api_key_cache_seconds=300)
    key_id, secret = await _create_key(api_server, "cached", "runs:read")
    async with api_server.client(secret) as client:
        assert_error(await client.get("/v1/runs/wrun_probe"), 404, "run_not_found")
    revoked = await run_cli("keys", "revoke", key_id, *api_server.cli_args)
    assert revoked.returncode == 0, revoked
    await until_refused(api_server, secret, within_s=5.0)  # not the 300 s of the cache


# -- audit -----------------------------------------------------------------------------------


async def test_audit_lists_the_entries_of_one_correlation_id(api_server: PublicServer) -> None:
    correlation = f"forensic-{uuid.uuid4()}"
    async with api_server.client() as api:
        await deploy(api)
        response = await trigger(api, "echo", [1], headers={CORRELATION_HEADER: correlation})
        run_id = assert_ok(response, 202)["runId"]
    async with api_server.client("not-a-key-at-all-0000000000") as stranger:
        response = await stranger.get("/v1/runs/wrun_x", headers={CORRELATION_HEADER: correlation})
        assert_error(response, 401, "unauthorized")

    result = await run_cli("audit", "--correlation-id", correlation, "--json", *api_server.cli_args)
    assert result.returncode == 0, result
    entries = result.json_lines()
    assert [(e["action"], e["status"]) for e in entries] == [
        ("runs.trigger", 202),
        ("auth.failure", 401),
    ]
    assert entries[0]["metadata"] == {"correlationId": correlation, "runId": run_id}
    assert entries[1]["keyId"] is None
    assert all(
        set(e) >= {"id", "time", "keyId", "action", "method", "path", "status", "metadata"}
        for e in entries
    )
    assert ADMIN_KEY not in result.stdout

    text = await run_cli("audit", "--correlation-id", correlation, *api_server.cli_args)
    assert text.returncode == 0, text
    assert len(text.stdout.splitlines()) == 2
    assert "runs.trigger" in text.stdout and correlation in text.stdout

    by_run = await run_cli("audit", "--run-id", run_id, "--json", *api_server.cli_args)
    assert "runs.trigger" in {e["action"] for e in by_run.json_lines()}
    since = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    recent = await run_cli("audit", "--since", since, "--json", *api_server.cli_args)
    assert correlation in {e["metadata"]["correlationId"] for e in recent.json_lines()}
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    later = await run_cli("audit", "--since", future, "--json", *api_server.cli_args)
    assert (later.returncode, later.stdout) == (0, "")
    unknown = await run_cli("audit", "--correlation-id", "nobody", *api_server.cli_args)
    assert (unknown.returncode, unknown.stdout) == (0, "")


async def test_audit_needs_a_filter(api_server: PublicServer) -> None:
    bare = await run_cli("audit", *api_server.cli_args)
    assert bare.returncode != 0
    assert "correlation" in bare.stderr and "Traceback" not in bare.stderr
    bad_time = await run_cli("audit", "--since", "yesterday", *api_server.cli_args)
    assert bad_time.returncode != 0
    assert "--since" in bad_time.stderr and "Traceback" not in bad_time.stderr


# -- migrate ---------------------------------------------------------------------------------

TABLES = {"runs", "events", "deployments", "api_keys", "audit_log", "idempotency_records"}


async def test_migrate_creates_the_schema_in_a_fresh_sqlite_file(tmp_path: Path) -> None:
    database = tmp_path / "fresh" / "world.db"
    database.parent.mkdir()
    flags = ["--sqlite-path", str(database), "--data-dir", str(tmp_path / "data")]
    for _ in range(2):  # a second run finds the schema current
        result = await run_cli("migrate", *flags)
        assert result.returncode == 0, result
        assert str(database) in result.stdout
    with contextlib.closing(sqlite3.connect(database)) as conn:
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        assert names >= TABLES, names
        assert conn.execute("SELECT COUNT(*) FROM api_keys").fetchone()[0] == 0
    listed = await run_cli("keys", "list", *flags)
    assert (listed.returncode, listed.stdout) == (0, "")


async def test_migrate_creates_the_schema_in_a_fresh_postgres_database(
    postgres_url: str, tmp_path: Path
) -> None:
    flags = ["--database-url", postgres_url, "--data-dir", str(tmp_path / "data")]
    for _ in range(2):
        result = await run_cli("migrate", *flags)
        assert result.returncode == 0, result
    conn = await asyncpg.connect(postgres_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    finally:
        await conn.close()
    assert {row["tablename"] for row in rows} >= TABLES


# -- bad flags -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "says", "code"),
    [
        ([], "Usage: compute-worker [OPTIONS] COMMAND", 2),
        (["frobnicate"], "No such command 'frobnicate'", 2),
        (["keys"], "Usage: compute-worker keys [OPTIONS] COMMAND", 2),
        (["keys", "create", "--name", "n"], "--scope", 2),
        (["keys", "create", "--name", "n", "--scope", "root"], "root", 2),
        (["keys", "create", "--name", " ", "--scope", "runs:read"], "name", 1),
        (["keys", "revoke"], "KEY_ID", 2),
        (["serve", "--port", "eighty"], "--port must be an integer between 0 and 65535", 2),
        (["serve", "--seed-api-keys", "{not json"], "--seed-api-keys is not JSON", 2),
        (["serve", "--seed-api-keys", '[{"key": "short", "scopes": ["runs:read"]}]'], "key", 2),
        (["serve", "--webhook-providers", '{"gh": {"scheme": "smtp"}}'], "scheme", 2),
        (["serve", "--worldcompute", "cloud"], "--worldcompute", 2),
        (["serve", "--rate-limit-per-minute", "-1"], "--rate-limit-per-minute must be", 2),
        (["serve", "--process-children", "0"], "--process-children must be", 2),
        (["migrate", "--no-such-flag"], "--no-such-flag", 2),
    ],
)
async def test_bad_flags_exit_non_zero_with_a_message(
    tmp_path: Path, args: list[str], says: str, code: int
) -> None:
    database = tmp_path / "world.db"
    flags = ["--sqlite-path", str(database), "--data-dir", str(tmp_path / "data")]
    with_database = args[:1] in (["serve"], ["migrate"]) or args[:2] == ["keys", "create"]
    result = await run_cli(*args, *(flags if with_database else []), within=30)
    assert result.returncode == code, result
    assert says in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    if code == 2 and not says.startswith("Usage:"):  # a bare group prints its help
        assert len(result.stderr.splitlines()) == 1, result.stderr  # one line, usage or setting
    if args[:1] == ["serve"]:
        assert not database.exists()  # refused before opening anything
