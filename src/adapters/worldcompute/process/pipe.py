"""The World of a run over the pipe between the ``process`` backend's parent and its
child. ``PipeRunWorld``, the child's ``RunWorld``, writes each call as a JSON line
(``adapters.codec``) ``{"op": "call", "id", "method", <arguments>}`` on the child's
stdout and awaits ``{"op": "reply", "id", "result"}`` or ``{"op": "reply", "id",
"error": {"code", "message"}}`` on its stdin. ``WorldCalls``, the parent's side, answers
the calls of the one run the child executes through the server's in-process RunWorld,
each in a task of its own (replies come in any order). Entities travel in the world
lane's shapes (``adapters.world_wire``).

The child runs hostile code: the parent checks every member of a call, refuses a call
for any other run (``Forbidden``), answers a failure it did not foresee with a generic
``internal_error``, and answers at most ``MAX_IN_FLIGHT`` calls of a child at a time."""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from compute_worker.adapters import codec
from compute_worker.adapters.system import LocalSignal
from compute_worker.adapters.world_wire import (
    event_from,
    event_request_wire,
    event_requests_from,
    event_result_wire,
    event_wire,
    field,
    input_field,
    result_from,
    run_from,
    run_wire,
)
from compute_worker.domain import errors
from compute_worker.domain.ids import ulid_datetime
from compute_worker.domain.ports.engine import RunWorld
from compute_worker.domain.ports.streams import Subscription
from compute_worker.domain.world import Event, EventRequest, EventResult, Run, run_topic

log = logging.getLogger(__name__)

CALL = "call"
REPLY = "reply"
MAX_IN_FLIGHT = 64  # calls of one child answered at once; the next waits for a free slot
MAX_ID = 2**53  # ids are JSON numbers every reader keeps exact
INTERNAL = "internal_error"
# the errors the child rebuilds from their code (any other: StorageUnavailable)
_ERRORS: dict[str, type[errors.DomainError]] = {
    cls.code: cls
    for cls in (errors.InvalidRequest, errors.RunNotFound, errors.StepNotFound,
                errors.HookNotFound, errors.WaitNotFound, errors.EntityConflict,
                errors.RunExpired, errors.RunNotSupported, errors.StorageUnavailable,
                errors.StreamClosed, errors.Unauthorized, errors.Forbidden,
                errors.WorkflowNotFound, errors.RunAlreadyTerminal)
}  # fmt: skip


class PipeRunWorld(RunWorld):
    """The child's World: ``write`` puts one line on the pipe to the parent; the child's
    reader hands each reply to ``answer``. Wake-ups stay local: the parent forwards them
    into ``signal``."""

    def __init__(self, write: Callable[[bytes], None], signal: LocalSignal, max_bytes: int) -> None:
        self._write = write
        self.signal = signal
        self._max_bytes = max_bytes  # the longest line the parent reads
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[Any]] = {}

    async def _call(self, method: str, **arguments: Any) -> Any:
        call_id = next(self._ids)
        line = codec.dumps({"op": CALL, "id": call_id, "method": method, **arguments})
        if len(line) > self._max_bytes:  # as the world lane's 413 was seen over HTTP
            raise errors.StorageUnavailable(
                f"the {method} call exceeds {self._max_bytes} bytes (max_body_bytes)"
            )
        answer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[call_id] = answer
        try:
            self._write(line + b"\n")
            return await answer
        finally:
            del self._waiting[call_id]

    def answer(self, reply: dict[str, Any]) -> None:
        call_id = reply.get("id")
        waiting = self._waiting.get(call_id) if isinstance(call_id, int) else None
        if waiting is None or waiting.done():
            return
        error = reply.get("error")
        if isinstance(error, dict):
            kind = _ERRORS.get(str(error.get("code")), errors.StorageUnavailable)
            waiting.set_exception(kind(str(error.get("message"))))
        else:
            waiting.set_result(reply.get("result"))

    def hang_up(self) -> None:
        """The parent closed the pipe: every call still waiting fails."""
        for waiting in self._waiting.values():
            if not waiting.done():
                waiting.set_exception(errors.StorageUnavailable("the server closed the pipe"))

    async def record(self, run_id: str, requests: Sequence[EventRequest]) -> list[EventResult]:
        wire = [event_request_wire(request) for request in requests]
        return [result_from(item) for item in await self._call("record", runId=run_id,
                                                                events=wire)]  # fmt: skip

    async def run(self, run_id: str) -> Run | None:
        found = await self._call("run", runId=run_id)
        return None if found is None else run_from(found)

    async def events(self, run_id: str, after_event_id: str | None = None) -> list[Event]:
        found = await self._call("events", runId=run_id, afterEventId=after_event_id)
        return [event_from(item) for item in found]

    def subscribe(self, run_id: str) -> Subscription:
        return self.signal.subscribe(run_topic(run_id))

    async def write_stream(self, name: str, run_id: str, chunks: Sequence[bytes]) -> None:
        await self._call("write_stream", name=name, runId=run_id, chunks=list(chunks))

    async def close_stream(self, name: str, run_id: str) -> None:
        await self._call("close_stream", name=name, runId=run_id)

    async def start_child(self, parent_run_id: str, workflow_name: str, run_input: list[Any],
                          token: str) -> str:  # fmt: skip
        started = await self._call("start_child", parentRunId=parent_run_id,
                                   workflowName=workflow_name, input=run_input,
                                   token=token)  # fmt: skip
        return str(started)


Reply = Callable[[dict[str, Any]], Awaitable[None]]


class WorldCalls:
    """The parent's side for the child executing ``run_id``: ``take`` each call the child
    sends, ``drain`` once the run is over. Calls are answered in the context ``take``'s
    creator ran in (the run's trace)."""

    def __init__(self, world: RunWorld, run_id: str, reply: Reply) -> None:
        self._world = world
        self.run_id = run_id
        self._reply = reply
        self._slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        self._tasks: set[asyncio.Task[None]] = set()
        self._context = contextvars.copy_context()

    async def take(self, call: dict[str, Any]) -> None:
        """Start answering ``call``; waits while ``MAX_IN_FLIGHT`` calls are answered."""
        await self._slots.acquire()
        task = asyncio.create_task(self._answer(call), context=self._context)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait for the calls being answered."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _answer(self, call: dict[str, Any]) -> None:
        try:
            call_id = call.get("id")
            if type(call_id) is not int or not 0 <= call_id < MAX_ID:
                log.warning("a workflow process sent a call without a valid id",
                            extra={"runId": self.run_id})  # fmt: skip
                return
            try:
                reply = {"op": REPLY, "id": call_id, "result": await self._serve(call)}
            except errors.DomainError as error:
                failure = {"code": error.code, "message": error.message}
                reply = {"op": REPLY, "id": call_id, "error": failure}
            except Exception:
                log.exception("a World call of a workflow process failed",
                              extra={"runId": self.run_id})  # fmt: skip
                failure = {"code": INTERNAL, "message": "internal error"}
                reply = {"op": REPLY, "id": call_id, "error": failure}
            await self._reply(reply)
        finally:
            self._slots.release()

    async def _serve(self, call: dict[str, Any]) -> Any:
        method = call.get("method")
        serve = _METHODS.get(method) if isinstance(method, str) else None
        if serve is None:
            raise errors.InvalidRequest(
                f"method must be one of {', '.join(sorted(_METHODS))}", {"field": "method"}
            )
        return await serve(self, call)

    def _own(self, call: dict[str, Any], name: str = "runId") -> str:
        run_id: str = field(call, name, str, required=True)
        if run_id != self.run_id:
            raise errors.Forbidden(
                f"this workflow process acts on its run {self.run_id} only", {"field": name}
            )
        return run_id

    async def _record(self, call: dict[str, Any]) -> list[dict[str, Any]]:
        run_id = self._own(call)
        requests = event_requests_from(field(call, "events", list, required=True))
        return [event_result_wire(result) for result in await self._world.record(run_id, requests)]

    async def _run(self, call: dict[str, Any]) -> dict[str, Any] | None:
        run = await self._world.run(self._own(call))
        return None if run is None else run_wire(run)

    async def _events(self, call: dict[str, Any]) -> list[dict[str, Any]]:
        run_id = self._own(call)
        after = field(call, "afterEventId", str)
        if after is not None:
            try:
                ulid_datetime(after)
            except ValueError:
                raise errors.InvalidRequest(
                    "afterEventId must be an event id", {"field": "afterEventId"}
                ) from None
        return [event_wire(event) for event in await self._world.events(run_id, after)]

    async def _write_stream(self, call: dict[str, Any]) -> None:
        name: str = field(call, "name", str, required=True)
        run_id = self._own(call)
        chunks = field(call, "chunks", list, required=True)
        for index, chunk in enumerate(chunks):
            if not isinstance(chunk, bytes):
                raise errors.InvalidRequest(
                    f"chunks[{index}] must be a Uint8Array envelope", {"field": f"chunks[{index}]"}
                )
        await self._world.write_stream(name, run_id, chunks)

    async def _close_stream(self, call: dict[str, Any]) -> None:
        name: str = field(call, "name", str, required=True)
        await self._world.close_stream(name, self._own(call))

    async def _start_child(self, call: dict[str, Any]) -> str:
        parent = self._own(call, "parentRunId")
        name: str = field(call, "workflowName", str, required=True)
        token: str = field(call, "token", str, required=True)
        return await self._world.start_child(parent, name, input_field(call), token)


_METHODS: dict[str, Callable[[WorldCalls, dict[str, Any]], Awaitable[Any]]] = {
    "record": WorldCalls._record,
    "run": WorldCalls._run,
    "events": WorldCalls._events,
    "write_stream": WorldCalls._write_stream,
    "close_stream": WorldCalls._close_stream,
    "start_child": WorldCalls._start_child,
}
