"""One async start/stop context shared by the server, the CLI and scripts.

    async with Runtime(settings) as container:
        await container.proxy_world_event().execute(...)

Start: prepare the storage folders (0700, writable), resolve the encryption secret,
check that the database answers, migrate, seed API keys. Every start-up failure the
environment causes is a one-line ``StartupError``.
Stop: flush and close the writer, dispose the engines.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from types import TracebackType

from compute_worker.adapters.observability.otel import TracingUnavailable
from compute_worker.adapters.security.run_keys import load_or_create_secret
from compute_worker.adapters.sql.database import Database
from compute_worker.adapters.sql.pg_signal import PostgresSignal
from compute_worker.app.container import Container
from compute_worker.app.errors import StartupError
from compute_worker.app.settings import Settings
from compute_worker.app.startup import check_database, guard_os, prepare_storage

log = logging.getLogger(__name__)
HOUSEKEEPING_SECONDS = 600
STUCK_SCAN_MAX_SECONDS = 30.0


class Runtime:
    """``execute=True`` (the server) also starts the housekeeping, logs ``compute-worker
    started`` (with ``listening_url()``) and ``compute-worker stopped``, and, unless its
    ``role`` is ``api``, the workflow engine, the app dispatcher and the scheduler.
    A start that failed keeps its ``StartupError`` in ``failure``."""

    def __init__(
        self,
        settings: Settings,
        execute: bool = False,
        own_url: Callable[[], str | None] | None = None,
        listening_url: Callable[[], str | None] | None = None,
    ) -> None:
        self.settings = settings
        self.serving = execute
        self.execute = execute and settings.role != "api"
        self.failure: StartupError | None = None
        self._listening_url = listening_url or (lambda: settings.internal_url)
        self._started_at: float | None = None
        self._housekeeping: asyncio.Task[None] | None = None
        self._scheduler: asyncio.Task[None] | None = None
        self._detector: asyncio.Task[None] | None = None
        self.container = Container(
            settings=settings,
            own_url=own_url or (lambda: settings.internal_url),
        )

    async def __aenter__(self) -> Container:
        try:
            return await self._start()
        except StartupError as failure:
            self.failure = failure
            raise

    async def _start(self) -> Container:
        settings = self.settings
        await asyncio.to_thread(prepare_storage, settings)
        secret = None
        if settings.encryption:
            secret = settings.encryption_secret or await asyncio.to_thread(
                guard_os,
                f"read or create the encryption secret {settings.secret_path}",
                "data_dir",
                lambda: load_or_create_secret(settings.secret_path),
            )
        self.container.run_key_secret.override(secret)
        try:
            self.container.tracer()  # tracing asked for but unavailable: say so now
        except TracingUnavailable as error:
            raise StartupError(f"cannot start tracing: {error}") from None
        database = guard_os(
            f"open the database {settings.sqlite_path}",
            "sqlite_path",
            self.container.database,
        )
        try:
            await check_database(database)
            await _migrate(database)
            signal = self.container.signal()
            if isinstance(signal, PostgresSignal):
                await signal.start()
            await self.container.seed_api_keys().execute(settings.seed_api_keys)
            if self.serving:
                self._housekeeping = asyncio.create_task(self._keep_house())
                self._detector = asyncio.create_task(self._detect_stuck_runs())
            if self.execute:
                await self.container.workflow_engine().start()
                await self.container.app_dispatcher().start()
                if settings.schedule_poll_seconds > 0:
                    self._scheduler = asyncio.create_task(self._schedule())
        except BaseException:
            await database.close()
            raise
        log.info("runtime started", extra={"database": database.config.describe()})
        if self.serving:
            self._started_at = time.monotonic()
            log.info(
                "compute-worker started",
                extra={
                    "url": self._listening_url(),
                    "database": settings.database_kind,
                    "databaseAt": database.config.where(),
                    "role": settings.role,
                    "worldcompute": settings.worldcompute,
                    "dataDir": str(settings.data_dir),
                    "version": settings.version,
                },
            )
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

    async def _detect_stuck_runs(self) -> None:
        """Look for stuck runs a batch at a time (``DetectStuckRuns``), several times per
        threshold; say so once per run and reason."""
        detector = self.container.detect_stuck_runs()
        interval = min(STUCK_SCAN_MAX_SECONDS, max(0.2, detector.threshold.total_seconds() / 4))
        while True:
            await asyncio.sleep(interval)
            try:
                for stuck in await detector.tick():
                    log.warning(
                        "run is stuck (%s): %s", stuck.reason, stuck.message,
                        extra={"runId": stuck.run_id, "reason": stuck.reason,
                               "since": stuck.since.isoformat()},
                    )  # fmt: skip
            except Exception:
                log.warning("stuck-run detection failed; will retry", exc_info=True)

    async def _schedule(self) -> None:
        """Start the active deployment's scheduled runs as their slots come due (every
        worker may: a slot's run starts once, see ``domain/schedules.py``)."""
        run_schedules = self.container.run_schedules()
        while True:
            try:
                for started in await run_schedules.execute():
                    run = started.run
                    extra = {"runId": run.run_id, "workflow": run.workflow_name}
                    log.info("scheduled run started", extra=extra)
            except Exception:
                log.warning("the scheduler's pass failed; will retry", exc_info=True)
            await asyncio.sleep(self.settings.schedule_poll_seconds)

    async def stop_executing(self) -> None:
        """Stop the engine (and its workflow processes); idempotent. The server calls it
        before it closes connections, so children do not hold them open."""
        for task in (self._scheduler, self._housekeeping, self._detector):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._housekeeping = self._scheduler = self._detector = None
        if self.execute:
            self.execute = False
            await self.container.app_dispatcher().stop()
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
        await asyncio.to_thread(self.container.tracer().shutdown)  # export what is left
        if self._started_at is not None:
            uptime = round(time.monotonic() - self._started_at, 3)
            self._started_at = None
            log.info("compute-worker stopped", extra={"uptimeSeconds": uptime})


async def _migrate(database: Database) -> None:
    """The schema at the latest revision, or a ``StartupError`` saying why not."""
    try:
        await database.migrate()
    except Exception as error:
        reason = str(getattr(error, "orig", None) or error).strip().splitlines()
        raise StartupError(
            f"cannot bring the database at {database.config.where()} to the latest schema: "
            f"{reason[0] if reason else type(error).__name__}"
        ) from error
