"""A child of the ``process`` backend:
``python -m compute_worker.adapters.worldcompute.process.child``.

It imports one deployment's bundle, then executes the runs the parent assigns
(one at a time), reaching the World through the parent over the same pipes
(``pipe.PipeRunWorld``): it holds no credential. Protocol: JSON lines
(``adapters.codec``); the parent writes ``run``/``wake``/``stop`` and the ``reply`` to
each World call on stdin; the child answers ``ready`` (with the names of the workflows it
loaded) or ``failed`` (the bundle did not load, in the words the upload check uses), then
``call`` (a World call), ``step`` / ``step_done`` (for the parent's time and CPU
watchdog), ``beat`` (every ``CW_BEAT_INTERVAL`` s while the event loop is free: the
workflow-code watchdog), ``log`` and ``done`` on the original stdout, no line longer than
``CW_MESSAGE_BYTES``. Anything the bundle prints goes to stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import socket as sock_module
import sys
import threading
from pathlib import Path
from typing import Any, BinaryIO

from compute_worker.adapters import codec, world_wire
from compute_worker.adapters.system import LocalSignal, freeze_startup_heap, run_on_loop
from compute_worker.adapters.worldcompute.bundles.importer import load_workflows
from compute_worker.adapters.worldcompute.bundles.isolation import limit_resource
from compute_worker.adapters.worldcompute.graph.interpreter import HttpLimits
from compute_worker.adapters.worldcompute.process.pipe import REPLY, PipeRunWorld
from compute_worker.adapters.worldcompute.runtime.context import WorkflowContext, iso
from compute_worker.adapters.worldcompute.runtime.failures import (
    RunCancelled,
    StartFailed,
    error_data,
)
from compute_worker.adapters.worldcompute.runtime.runner import Outcome, run_workflow
from compute_worker.domain import errors
from compute_worker.domain.authoring import StepSpec
from compute_worker.domain.world import RUNTIME_ERROR, EventRequest, EventType, run_topic

ENV_BUNDLE = "CW_BUNDLE_DIR"
ENV_ENTRYPOINT = "CW_ENTRYPOINT"
ENV_KIND = "CW_KIND"
ENV_MEMORY = "CW_MEMORY_LIMIT"
ENV_PARK_AFTER = "CW_PARK_AFTER"
ENV_POLL = "CW_POLL_INTERVAL"
ENV_BEAT = "CW_BEAT_INTERVAL"
ENV_TURN = "CW_WORKFLOW_TURN"  # seconds workflow code may await nothing durable
ENV_MESSAGE_BYTES = "CW_MESSAGE_BYTES"  # the longest line the parent reads
ENV_EGRESS = "CW_EGRESS_SOCKET"  # sandbox network "allow-list": the parent's proxy
ENV_LOOP = "CW_EVENT_LOOP"


_WRITING = threading.Lock()  # log records may come from the bundle's own threads
MAX_LOG_CHARS = 10_000  # of a log record's message (the parent keeps as many)
TRACE = "traceparent"
_FROM_PARENT = sys.maxsize  # the parent is trusted: a reply is as long as the run's log


def _write(out: BinaryIO, line: bytes) -> None:
    with _WRITING:
        out.write(line)
        out.flush()


class Reporter:
    def __init__(self, out: BinaryIO, run_id: str) -> None:
        self._out = out
        self._run_id = run_id

    def send(self, message: dict[str, Any]) -> None:
        _write(self._out, codec.dumps(message) + b"\n")

    def step_began(self, step_id: str, spec: StepSpec, attempt: int) -> None:
        self.send({"op": "step", "runId": self._run_id, "stepId": step_id, "name": spec.name,
                   "attempt": attempt, "maxRetries": spec.max_retries,
                   "timeout": spec.timeout_seconds})  # fmt: skip

    def step_ended(self, step_id: str, error: str | None = None) -> None:
        done = {"op": "step_done", "runId": self._run_id, "stepId": step_id}
        self.send(done if error is None else {**done, "error": error[:2000]})


class ForwardLogs(logging.Handler):
    """Log records of the bundle (and of the graph interpreter) go to the parent, which
    writes them into the server's structured log with the run id."""

    def __init__(self, out: BinaryIO) -> None:
        super().__init__(logging.DEBUG)
        self._reporter = Reporter(out, "")
        self.run_id: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._reporter.send({"op": "log", "level": record.levelname.lower(),
                                 "logger": record.name[:200],
                                 "message": record.getMessage()[:MAX_LOG_CHARS],
                                 "runId": self.run_id})  # fmt: skip
        except Exception:
            self.handleError(record)


def _take_config() -> dict[str, str]:
    """Read our settings and remove them from the environment the bundle sees."""
    return {name: os.environ.pop(name) for name in list(os.environ) if name.startswith("CW_")}


async def _execute(world: PipeRunWorld, workflows: dict[str, Any], given: dict[str, Any],
                   out: BinaryIO, config: dict[str, str]) -> dict[str, Any]:  # fmt: skip
    """Execute the run the parent ``given`` (its ``run`` and its log, ``events``)."""
    run_id = given["runId"]
    reporter = Reporter(out, run_id)
    try:
        run = world_wire.run_from(given["run"])
        workflow = workflows.get(run.workflow_name)
        if workflow is None:
            error = errors.WorkflowNotFound(f"workflow {run.workflow_name!r} is not in the bundle")
            await world.record(
                run_id,
                [EventRequest(EventType.RUN_FAILED, None, None, error_data(error, RUNTIME_ERROR))],
            )
            return {"outcome": "finished"}  # fmt: skip
        events = [world_wire.event_from(item) for item in given["events"]]
        poll = float(config.get(ENV_POLL, "1.0"))
        park_after = float(config.get(ENV_PARK_AFTER, "1.0"))
        root = Path(config[ENV_BUNDLE]) if config.get(ENV_KIND, "python") == "python" else None
        context = WorkflowContext(world, run, events, poll, observer=reporter, code_root=root)
        stall_after = float(config.get(ENV_TURN, "60"))
        outcome: Outcome = await run_workflow(context, workflow, park_after, stall_after)
        if outcome.kind == "stalled":
            await context.flush()  # what it did before counts (a step's result, say)
            message = (
                f"the workflow code awaited nothing durable for {stall_after:g} s (an "
                "asyncio.sleep or other I/O in the @workflow body? use "
                "compute_worker.sleep for a durable sleep, or put the work in a step)"
            )
            failed = {"error": {"message": message}, "errorCode": RUNTIME_ERROR}
            await world.record(run_id, [EventRequest(EventType.RUN_FAILED, None, None, failed)])
            return {"outcome": "finished"}
    except (RunCancelled, errors.RunExpired, errors.EntityConflict):
        return {"outcome": "cancelled"}
    except errors.DomainError as error:
        return {"outcome": "interrupted", "message": error.message}
    wakes_at = iso(outcome.wakes_at) if outcome.wakes_at is not None else None
    return {"outcome": outcome.kind, "wakesAt": wakes_at, "readUpTo": outcome.read_up_to}


async def serve(out: BinaryIO, config: dict[str, str]) -> None:
    forward = ForwardLogs(out)
    logging.basicConfig(level=logging.INFO, handlers=[forward], force=True)
    for chatty in ("httpx", "httpcore"):  # graph HTTP nodes' requests, one line each
        logging.getLogger(chatty).setLevel(logging.WARNING)
    folder = Path(config[ENV_BUNDLE])
    try:
        kind = config.get(ENV_KIND, "python")
        http = HttpLimits.from_env(config)
        workflows = load_workflows(folder, config[ENV_ENTRYPOINT], kind, keep_path=True,
                                   http=lambda: http)  # fmt: skip
    except StartFailed as failure:
        Reporter(out, "").send({"op": "failed", "message": failure.message,
                                "stack": failure.stack})  # fmt: skip
        return
    freeze_startup_heap()  # the runtime and the bundle's code, loaded for good
    signal = LocalSignal()
    world = PipeRunWorld(lambda line: _write(out, line), signal, int(config[ENV_MESSAGE_BYTES]))
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader(limit=_FROM_PARENT)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    Reporter(out, "").send({"op": "ready", "workflows": sorted(workflows)})
    beats = asyncio.create_task(_beat(Reporter(out, ""), float(config.get(ENV_BEAT, "1"))))
    running: asyncio.Task[None] | None = None

    async def execute(given: dict[str, Any]) -> None:
        run_id = forward.run_id = given["runId"]
        _carry_trace(given.get(TRACE))
        answer = await _execute(world, workflows, given, out, config)
        Reporter(out, run_id).send({"op": "done", "runId": run_id, **answer})

    while line := await stdin.readline():
        message = codec.loads(line, codec.STORED_MAX_DEPTH)
        if message["op"] == REPLY:
            world.answer(message)
        elif message["op"] == "run":
            running = asyncio.create_task(execute(message))
        elif message["op"] == "wake":
            signal.notify(run_topic(message["runId"]))
        elif message["op"] == "stop":
            break
    world.hang_up()
    beats.cancel()
    if running is not None and not running.done():
        running.cancel()


def _carry_trace(traceparent: str | None) -> None:
    """The run's trace context (W3C ``traceparent``, from the parent) in the environment
    as ``TRACEPARENT``, for workflow code that traces itself (the parent answers the run's
    World calls in the run's trace)."""
    if traceparent:
        os.environ["TRACEPARENT"] = traceparent
    else:
        os.environ.pop("TRACEPARENT", None)


async def _beat(reporter: Reporter, interval: float) -> None:
    """Tell the parent, now and then, that workflow code is not hogging the event loop."""
    while True:
        await asyncio.sleep(interval)
        reporter.send({"op": "beat"})


def _proxy_through(socket: str) -> None:
    """Serve the parent's allow-list proxy (a Unix socket) on a loopback port of this
    network namespace, from a thread of its own (a step blocking the event loop must not
    block its own requests), and point ``HTTP(S)_PROXY`` of the bundle's code at it."""
    listener = sock_module.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)

    def relay(a: sock_module.socket, b: sock_module.socket) -> None:
        with contextlib.suppress(OSError):
            while data := a.recv(65536):
                b.sendall(data)
        with contextlib.suppress(OSError):
            b.shutdown(sock_module.SHUT_WR)

    def accept() -> None:
        while True:
            client, _ = listener.accept()
            upstream = sock_module.socket(sock_module.AF_UNIX)
            try:
                upstream.connect(socket)
            except OSError:
                client.close()
                continue
            threading.Thread(target=relay, args=(client, upstream), daemon=True).start()
            threading.Thread(target=relay, args=(upstream, client), daemon=True).start()

    threading.Thread(target=accept, daemon=True, name="egress-proxy").start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        os.environ[name] = url
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        os.environ.pop(name, None)


def main() -> None:
    config = _take_config()
    limit_resource(resource.RLIMIT_AS, int(config.get(ENV_MEMORY) or 0))
    if config.get(ENV_EGRESS):
        _proxy_through(config[ENV_EGRESS])
    out = os.fdopen(os.dup(1), "wb")  # the protocol keeps the real stdout
    os.dup2(2, 1)  # what the bundle prints goes to stderr
    run_on_loop(serve(out, config), config.get(ENV_LOOP) or "asyncio")


if __name__ == "__main__":
    main()
