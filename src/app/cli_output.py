"""What the client commands print: rich tables and live lines for people, or — with
``--json`` — one JSON document per line on stdout (the API's camelCase field names),
for scripts. ``RunFollower`` follows a run's events as they are written."""

from __future__ import annotations

import base64
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
from rich.table import Table

from compute_worker.adapters.client.errors import ComputeClientError, RunTimeoutError
from compute_worker.adapters.client.models import (
    Deployment,
    Event,
    Hook,
    Resumed,
    Run,
    RunError,
    Step,
    TriggeredRun,
)
from compute_worker.adapters.client.sync import Client

M = TypeVar("M", bound=BaseModel)
WIDE = 160  # columns when stdout is not a terminal (and COLUMNS is not set)
FOLLOW_POLL, FOLLOW_POLL_MAX = 0.25, 2.0  # seconds between reads of a followed run's
# new events: the shortest right after an event, growing by half while none comes
FOLLOW_STATUS_EVERY = 2.0  # seconds between status checks while no event comes
TERMINAL_EVENTS = frozenset({"run_completed", "run_failed", "run_cancelled"})
STATUS_STYLE = {
    "completed": "green",
    "failed": "red",
    "cancelled": "yellow",
    "running": "cyan",
    "pending": "blue",
}


def _console(stderr: bool) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    terminal = stream.isatty()
    width = None if terminal or os.environ.get("COLUMNS") else WIDE
    return Console(stderr=stderr, width=width, highlight=False, soft_wrap=not terminal)


def plain(value: Any) -> Any:
    """A model (or a list of them) as the JSON the API speaks."""
    if isinstance(value, BaseModel):
        return value.model_dump(by_alias=True, exclude_none=True)
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


def _default(value: Any) -> Any:
    if isinstance(value, datetime):  # as the API writes them: 2026-12-03T11:38:02.234Z
        text = value.isoformat(timespec="milliseconds")
        return text.removesuffix("+00:00") + "Z" if text.endswith("+00:00") else text
    if isinstance(value, bytes):
        return {"__type": "Uint8Array", "data": base64.b64encode(value).decode()}
    raise TypeError(f"{type(value).__name__} is not JSON")


def dumps(value: Any, indent: int | None = None) -> str:
    return json.dumps(plain(value), default=_default, indent=indent, ensure_ascii=False)


def _when(moment: datetime | None) -> str:
    if moment is None:
        return "-"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") + "Z"


def _seconds(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return "-"
    return f"{(end - start).total_seconds():.1f} s"


def _status(status: str) -> str:
    return f"[{STATUS_STYLE.get(status, 'white')}]{status}[/]"


def _error_text(error: Any) -> str:
    """A step's or run's error as one line: ``{message, stack}`` dicts, strings, …"""
    if isinstance(error, RunError):
        return error.message + (f" ({error.code})" if error.code else "")
    if isinstance(error, dict):
        return str(error.get("message") or error.get("error") or json.dumps(error))
    return str(error)


class Output:
    """Every command's printing, for people or (``as_json``) for scripts."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.console = _console(stderr=False)
        self.err = _console(stderr=True)

    def _json(self, value: Any) -> None:
        sys.stdout.write(dumps(value) + "\n")
        sys.stdout.flush()

    def _line(self, text: str) -> None:
        self.console.print(text)

    # -- errors ------------------------------------------------------------------------------

    def error(self, error: ComputeClientError) -> None:
        """With ``--json``, the error as ``{"error": {...}}`` on stdout (the command then
        prints its one line on stderr and exits with its code)."""
        if self.as_json:
            body = {
                "status": error.status,
                "code": error.code,
                "message": error.message,
                "details": error.details,
                "correlationId": error.correlation_id,
            }
            if isinstance(error, RunTimeoutError):
                body["run"] = plain(error.run)
            self._json({"error": {k: v for k, v in body.items() if v not in (None, {})}})

    def problems_text(self, error: ComputeClientError) -> str:
        """A refused bundle's problems, one per line (graph bundles list every one)."""
        problems = error.details.get("problems")
        if not isinstance(problems, list) or not problems:
            return self.details_text(error)
        lines = []
        for problem in problems:
            if not isinstance(problem, dict):
                lines.append(f"\n  - {problem}")
                continue
            where = [
                f"{key} {problem[key]}" for key in ("workflow", "node", "field") if problem.get(key)
            ]
            prefix = f"{', '.join(where)}: " if where else ""
            lines.append(f"\n  - {prefix}{problem.get('message', '')}")
        return "".join(lines)

    @staticmethod
    def details_text(error: ComputeClientError) -> str:
        shown = {k: v for k, v in error.details.items() if k not in ("requiredScope",)}
        return "".join(f"\n  {key}: {json.dumps(value)}" for key, value in shown.items())

    # -- deployments -------------------------------------------------------------------------

    @contextmanager
    def upload(self, path: Path) -> Iterator[Callable[[int, int], None] | None]:
        """A progress bar of the upload on stderr (when it is a terminal)."""
        if self.as_json or not self.err.is_terminal:
            yield None
            return
        columns = (
            TextColumn(f"uploading {escape(path.name)}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
        )
        with Progress(*columns, console=self.err, transient=True) as bar:
            task = bar.add_task("upload", total=None)

            def progress(sent: int, total: int) -> None:
                bar.update(task, completed=sent, total=total)

            yield progress

    def deployment(self, deployment: Deployment, verb: str | None = None) -> None:
        if self.as_json:
            self._json(deployment)
            return
        state = " [green](active)[/]" if deployment.active else ""
        head = f"{verb} " if verb else ""
        self._line(
            f"{head}[bold]{deployment.deployment_id}[/]{state}  kind {deployment.kind}, "
            f"digest {deployment.digest[:19]}…, created {_when(deployment.created_at)}"
        )
        if deployment.pinned_runs is not None:
            self._line(f"  runs still pinned to it: {deployment.pinned_runs}")
        for workflow in deployment.workflows:
            steps = f"  (steps: {', '.join(workflow.steps)})" if workflow.steps else ""
            self._line(f"  workflow [bold]{escape(workflow.name)}[/]{escape(steps)}")
        if deployment.metadata:
            self._line(f"  metadata: {escape(dumps(deployment.metadata))}")

    def deployments(self, found: Sequence[Deployment]) -> None:
        columns = ("DEPLOYMENT", "KIND", "ACTIVE", "WORKFLOWS", "PINNED RUNS", "CREATED")
        self._listing(found, "deployments", columns, lambda d: (
            d.deployment_id, d.kind, "yes" if d.active else "",
            escape(", ".join(d.workflow_names())), str(d.pinned_runs or 0), _when(d.created_at),
        ))  # fmt: skip

    def _listing(
        self,
        found: Sequence[M],
        what: str,
        columns: Sequence[str],
        row: Callable[[M], Sequence[str]],
    ) -> None:
        """Each item as a JSON line, or a table of them (``no <what>`` when empty)."""
        if self.as_json:
            for item in found:
                self._json(item)
        elif not found:
            self._line(f"no {what}")
        else:
            table = Table(*columns, box=None, header_style="bold")
            for item in found:
                table.add_row(*row(item))
            self.console.print(table)

    # -- runs --------------------------------------------------------------------------------

    def triggered(self, run: TriggeredRun) -> None:
        if self.as_json:
            self._json(run)
            return
        self.started(run)
        if run.replayed:
            self._line("  (the run of an earlier trigger with this idempotency key)")
        self._line(f"  watch it: compute-worker runs watch {run.run_id}")

    def started(self, run: TriggeredRun) -> None:
        if not self.as_json:
            self._line(
                f"started [bold]{run.run_id}[/] {escape(run.workflow_name)} on {run.deployment_id}"
            )

    def waiting(self, run_id: str) -> Any:
        if self.as_json or not self.err.is_terminal:
            return nullcontext()
        return self.err.status(f"waiting for {run_id}…")

    def ended(self, run: Run) -> None:
        if self.as_json:
            self._json(run)
            return
        took = _seconds(run.started_at or run.created_at, run.completed_at)
        self._line(f"run {run.run_id} {_status(run.status)} in {took}")
        if run.status == "completed":
            self.console.print_json(dumps(run.output))
        elif run.error is not None:
            self._line(f"  error: {escape(_error_text(run.error))}")

    def run(self, run: Run, verb: str | None = None) -> None:
        if self.as_json:
            self._json(run)
            return
        if verb:
            self._line(f"{verb} {run.run_id}")
        rows: list[tuple[str, str]] = [
            ("run", f"[bold]{run.run_id}[/]"),
            ("workflow", escape(run.workflow_name)),
            ("status", _status(run.status)),
            ("deployment", run.deployment_id),
            ("created", _when(run.created_at)),
            ("started", _when(run.started_at)),
            ("completed", _when(run.completed_at)),
            ("duration", _seconds(run.started_at or run.created_at, run.completed_at)),
            ("input", escape(dumps(run.input))),
        ]
        if run.status == "completed":
            rows.append(("output", escape(dumps(run.output))))
        if run.error is not None:
            rows.append(("error", escape(_error_text(run.error))))
        if run.execution is not None:
            rows.append(("execution", escape(dumps(run.execution))))
        if run.parent_run_id is not None:
            rows.append(("parent", run.parent_run_id))
        for child in run.children:
            rows.append(("child", f"{child.run_id} {escape(child.workflow_name)}"))
        if run.stuck is not None:
            stuck = run.stuck
            rows.append(("stuck", f"[red]{stuck.reason}[/] since {_when(stuck.since)}: "
                                  f"{escape(stuck.message)}"))  # fmt: skip
        table = Table(box=None, show_header=False)
        table.add_column(style="bold")
        table.add_column(overflow="fold")
        for row in rows:
            table.add_row(*row)
        self.console.print(table)

    def runs(self, found: Sequence[Run]) -> None:
        columns = ("RUN", "WORKFLOW", "STATUS", "CREATED", "DURATION", "DEPLOYMENT")
        self._listing(found, "runs", columns, lambda r: (
            r.run_id, escape(r.workflow_name),
            _status(r.status) + (f" [red](stuck: {r.stuck.reason})[/]" if r.stuck else ""),
            _when(r.created_at),
            _seconds(r.started_at or r.created_at, r.completed_at), r.deployment_id,
        ))  # fmt: skip

    def steps(self, found: Sequence[Step]) -> None:
        columns = ("STEP", "STATUS", "ATTEMPTS", "STARTED", "DURATION", "RETRY AT", "ERROR")
        self._listing(found, "steps", columns, lambda s: (
            escape(s.step_name), _status(s.status), str(s.attempt), _when(s.started_at),
            _seconds(s.started_at, s.completed_at),
            _when(s.retry_after) if s.status == "pending" and s.retry_after else "",
            escape(_error_text(s.error)) if s.error else "",
        ))  # fmt: skip

    def events(self, found: Sequence[Event]) -> None:
        self._listing(found, "events", ("TIME", "EVENT", "CORRELATION", "DATA"), lambda e: (
            _when(e.created_at), e.event_type, e.correlation_id or "",
            escape(dumps(e.event_data)) if e.event_data else "",
        ))  # fmt: skip

    def hooks(self, found: Sequence[Hook]) -> None:
        self._listing(found, "hooks waiting", ("HOOK", "TOKEN", "CREATED", "METADATA"), lambda h: (
            h.hook_id, escape(h.token) if h.token is not None else "(needs runs:write)",
            _when(h.created_at), escape(dumps(h.metadata)) if h.metadata is not None else "",
        ))  # fmt: skip

    def chunk(self, index: int, chunk: bytes) -> None:
        if self.as_json:
            try:
                self._json({"index": index, "text": chunk.decode()})
            except UnicodeDecodeError:
                self._json({"index": index, "base64": base64.b64encode(chunk).decode()})
            return
        sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.flush()

    def resumed(self, resumed: Resumed) -> None:
        if self.as_json:
            self._json(resumed)
            return
        self._line(f"resumed {resumed.run_id} (hook {resumed.hook_id})")

    # -- following a run ---------------------------------------------------------------------

    def event(self, event: Event, line: str | None) -> None:
        if self.as_json:
            self._json(event)
        elif line is not None:
            self._line(f"[dim]{_when(event.created_at)}[/]  {line}")


class RunFollower:
    """Prints a run's history, then each new event as it is written, until the run ends:
    steps appearing, their attempts and retries, sleeps with their wake time, hooks
    waiting with their token."""

    def __init__(self, client: Client, run_id: str, out: Output) -> None:
        self._cw = client
        self._run_id = run_id
        self._out = out
        self._steps: dict[str, str] = {}  # correlation id → step name
        self._attempts: dict[str, int] = {}

    def follow(self, timeout: float | None) -> Run:
        """The run once it is over; ``RunTimeoutError`` after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        cursor: str | None = None
        checked = time.monotonic()
        pause = FOLLOW_POLL
        while True:
            page = self._cw.runs.events_page(self._run_id, cursor, limit=100)
            cursor = page.cursor or cursor
            pause = FOLLOW_POLL if page.data else min(pause * 1.5, FOLLOW_POLL_MAX)
            ended = False
            for event in page.data:
                self._out.event(event, None if self._out.as_json else self._describe(event))
                ended = ended or event.event_type in TERMINAL_EVENTS
            if ended:
                return self._cw.runs.get(self._run_id)
            if page.has_more:
                continue
            now = time.monotonic()
            if now - checked >= FOLLOW_STATUS_EVERY:  # an end with no event of its own
                checked = now
                run = self._cw.runs.get(self._run_id, resolve_data="none")
                if run.is_terminal:
                    return self._cw.runs.get(self._run_id)
            if deadline is not None and now >= deadline:
                run = self._cw.runs.get(self._run_id, resolve_data="none")
                raise RunTimeoutError(f"run {self._run_id} is still {run.status}", run=run)
            time.sleep(pause if deadline is None else min(pause, deadline - now))

    def _describe(self, event: Event) -> str | None:
        data = event.event_data or {}
        corr = event.correlation_id or ""
        name = escape(self._steps.get(corr, corr))
        kind = event.event_type
        if kind == "run_started":
            return "run started"
        if kind == "step_created":
            self._steps[corr] = str(data.get("stepName", corr))
            return f"step [bold]{escape(self._steps[corr])}[/] created"
        if kind == "step_started":
            self._attempts[corr] = self._attempts.get(corr, 0) + 1
            return f"step [bold]{name}[/] attempt {self._attempts[corr]} started"
        if kind == "step_completed":
            return f"step [bold]{name}[/] [green]completed[/]"
        if kind == "step_retrying":
            at = data.get("retryAfter")
            when = f", retry at {escape(str(at))}" if at else ""
            return (
                f"step [bold]{name}[/] attempt {self._attempts.get(corr, 1)} [yellow]failed"
                f"[/]: {escape(_error_text(data.get('error')))}{when}"
            )
        if kind == "step_failed":
            return f"step [bold]{name}[/] [red]failed[/]: {escape(_error_text(data.get('error')))}"
        if kind == "wait_created":
            return f"sleeping until {escape(str(data.get('resumeAt', '?')))}"
        if kind == "wait_completed":
            return "woke up"
        if kind == "hook_created":
            return self._hook_line(corr, data.get("token"))
        if kind == "hook_received":
            return f"hook {escape(corr)} received a payload"
        if kind == "run_completed":
            return "run [green]completed[/]"
        if kind == "run_failed":
            return f"run [red]failed[/]: {escape(_error_text(data.get('error')))}"
        if kind == "run_cancelled":
            return "run [yellow]cancelled[/]"
        return None  # run_created, hook_disposed, …: nothing a watcher needs

    def _hook_line(self, hook_id: str, token: Any) -> str:
        """The event's token, else the live hook's (either is shown only to keys that may
        resume the run)."""
        if not isinstance(token, str):
            live = (h for h in self._cw.runs.hooks(self._run_id) if h.hook_id == hook_id)
            token = next((h.token for h in live), None)
        if token is None:  # hidden from this key, or resumed or disposed since
            return f"waiting on hook {escape(hook_id)}"
        shown = escape(token)
        return (
            f"waiting on hook {escape(hook_id)}, token [bold]{shown}[/] — resume it with "
            f"compute-worker hooks resume '{shown}' --payload JSON"
        )
