"""One async start/stop context shared by the server, the CLI and scripts.

    async with Runtime(settings) as container:
        await container.proxy_world_event().execute(...)

Start: open the database, migrate, resolve the encryption secret, seed API keys.
Stop: flush and close the writer, dispose the engines.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from types import TracebackType

from adapters.security.run_keys import load_or_create_secret
from adapters.sql.pg_signal import PostgresSignal
from app.container import Container
from app.settings import Settings

log = logging.getLogger(__name__)
HOUSEKEEPING_SECONDS = 600


class Runtime:
    """``execute=True`` (the server) also starts the workflow engine."""

    def __init__(
        self,
        settings: Settings,
        execute: bool = False,
        world_url: Callable[[], str | None] | None = None,
    ) -> None:
        self.settings = settings
        self.execute = execute
        self._housekeeping: asyncio.Task[None] | None = None
        self.container = Container(
            settings=settings,
            world_url=world_url or (lambda: settings.internal_url),
        )

    async def __aenter__(self) -> Container:
        settings = self.settings
        secret = None
        if settings.encryption:
            secret = settings.encryption_secret or await asyncio.to_thread(
                load_or_create_secret, settings.secret_path
            )
        self.container.run_key_secret.override(secret)
        database = self.container.database()
        try:
            await database.migrate()
            signal = self.container.signal()
            if isinstance(signal, PostgresSignal):
                await signal.start()
            await self.container.seed_api_keys().execute(settings.seed_api_keys)
            if self.execute:
                await self.container.workflow_engine().start()
                self._housekeeping = asyncio.create_task(self._keep_house())
        except BaseException:
            await database.close()
            raise
        log.info("runtime started", extra={"database": database.config.describe()})
        return self.container

    async def _keep_house(self) -> None:
        """Forget expired idempotency keys and the minted keys of children that died with
        their server, now and then (any worker may; it is idempotent)."""
        while True:
            try:
                removed = await self.container.housekeeping().purge_expired(
                    self.container.clock().now()
                )
                if removed:
                    log.info("forgot expired idempotency keys", extra={"count": removed})
                purged = await self.container.manage_api_keys().purge_expired()
                if purged:
                    log.info("deleted expired child keys", extra={"count": purged})
            except Exception:
                log.warning("housekeeping failed; will retry", exc_info=True)
            await asyncio.sleep(HOUSEKEEPING_SECONDS)

    async def stop_executing(self) -> None:
        """Stop the engine (and its workflow processes); idempotent. The server calls it
        before it closes connections, so children do not hold them open."""
        if self._housekeeping is not None:
            self._housekeeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._housekeeping
            self._housekeeping = None
        if self.execute:
            self.execute = False
            await self.container.workflow_engine().stop()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop_executing()
        signal = self.container.signal()
        if isinstance(signal, PostgresSignal):
            await signal.close()
        await self.container.database().close()
