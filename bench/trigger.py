"""POST /v1/runs over HTTP, beside the same server's GET /v1/health rate.

    .venv/bin/python bench/trigger.py [--seconds 5] [--repeat 3] [--connections 64]
                                      [--client raw|httpx] [--http2] [--split]
                                      [--database-url postgresql://...]

Starts ``compute-worker serve`` as a subprocess (SQLite in a temp data dir,
``--worldcompute local``, a seeded key with every scope), deploys and activates a
bundle with a 0-step workflow, then drives it from this process:

- N connections for a fixed duration, first a ``GET`` of an unknown path (a 404:
  the HTTP stack and middleware alone, for reference), then ``GET /v1/health`` (the
  baseline: same server, same run), then ``POST /v1/runs`` (a unique
  Idempotency-Key each): requests/s, p50 and p99 latency, trigger/health ratio;
- the 0-step run latency, one at a time: trigger, then the long-poll
  ``GET /v1/runs/:id?wait=30`` until completed (what a client that waits for the end
  does; a server without ``wait`` answers at once and is asked again after 1 ms).

The load generator shares the 2 cores with the server, so it must cost little:
``--client raw`` (default) is a minimal keep-alive HTTP/1.1 client on asyncio
streams (~0.02 ms of CPU per request); ``--client httpx`` uses one
``httpx.AsyncClient`` with N pooled connections, which costs ~1 ms of client CPU
per request and collapses at 64 connections (client-bound: ~170 req/s against a
bare Starlette app on this machine), so it measures httpx, not the server.
``--http2`` uses httpx with h2c prior knowledge (one connection, N streams). The
CPU each side used is printed, so a client-bound figure shows.

``--split`` runs two processes on the same data dir: ``--role api`` takes the load and
``--role executor`` executes the runs it accepts (the 0-step latency then crosses
processes: SQLite has no cross-process signal, the executor polls every 0.5 s).

Figures are medians of ``--repeat`` rounds (health and trigger interleaved).
Targets (shared/PERFORMANCE.md): trigger >= 50 % of health, p99 <= 50 ms; 0-step
run <= 8 ms p50.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import astuple, dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx

ROOT = Path(__file__).resolve().parent.parent
SERVER = ROOT / ".venv" / "bin" / "compute-worker"
SCOPES = ["trigger:write", "runs:read", "runs:write", "deploy:read", "deploy:write",
          "world:proxy", "admin"]  # fmt: skip
WORKFLOWS = "from compute_worker import workflow\n@workflow\nasync def zero():\n    return 0\n"
TRIGGER_BODY = b'{"workflowName":"zero"}'
TICK = os.sysconf("SC_CLK_TCK")

# (status, body) of one request
Send = Callable[[str, str, bytes | None, str | None], Awaitable[tuple[int, bytes]]]


@dataclass
class Load:
    rate: float
    p50_ms: float
    p99_ms: float
    errors: float
    client_cpu: float  # share of one core used by this process
    server_cpu: float  # share of one core used by the server process


def percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * fraction))]


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


class Server:
    """``compute-worker serve --worldcompute BACKEND`` in a subprocess, on a free port."""

    def __init__(
        self,
        data_dir: Path,
        key: str,
        backend: str = "local",
        flags: Sequence[str] = (),
        source: Path | None = None,
    ) -> None:
        """``flags``: more ``serve`` flags; ``source``: another checkout's ``src`` folder
        to run instead of this one (a baseline commit, for before/after figures)."""
        seed = json.dumps([{"key": key, "scopes": SCOPES, "name": "bench"}])
        self.backend = backend
        env = None if source is None else {**os.environ, "PYTHONPATH": str(source)}
        self.process = subprocess.Popen(
            [str(SERVER), "serve", "--data-dir", str(data_dir), "--port", "0",
             "--worldcompute", backend, "--log-level", "warning", "--seed-api-keys", seed,
             *flags],
            stdout=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip

    async def wait_listening(self) -> str:
        assert self.process.stdout is not None
        async with asyncio.timeout(60):
            line = await asyncio.to_thread(self.process.stdout.readline)
        found = re.search(r"listening on (http://\S+)", line)
        if found is None:
            raise RuntimeError(f"the {self.backend} server did not start: {line!r}")
        return found.group(1)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class RawConnection:
    """One keep-alive HTTP/1.1 connection; Content-Length bodies only (what the server sends).

    A request whose connection was closed under it is sent again on a new one:
    safe here, GETs and POSTs carrying an Idempotency-Key."""

    def __init__(self, url: str, key: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.head = f"Host: {parts.netloc}\r\nAuthorization: Bearer {key}\r\n".encode()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def send(
        self, method: str, path: str, body: bytes | None, idempotency_key: str | None
    ) -> tuple[int, bytes]:
        request = [f"{method} {path} HTTP/1.1\r\n".encode(), self.head]
        if idempotency_key is not None:
            request.append(f"Idempotency-Key: {idempotency_key}\r\n".encode())
        if body is not None:
            request.append(b"Content-Type: application/json\r\n")
            request.append(f"Content-Length: {len(body)}\r\n\r\n".encode())
            request.append(body)
        else:
            request.append(b"\r\n")
        payload = b"".join(request)
        for _ in range(3):
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            assert self.reader is not None
            self.writer.write(payload)
            try:
                head = await self.reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                self.close()
                continue
            lines = head.split(b"\r\n")
            status = int(lines[0].split(b" ", 2)[1])
            length, close = 0, False
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"connection" and value.strip().lower() == b"close":
                    close = True
            answer = await self.reader.readexactly(length)
            if close:
                self.close()
            return status, answer
        raise ConnectionError(f"{method} {path}: the connection keeps closing")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def httpx_sender(client: httpx.AsyncClient) -> Send:
    async def send(
        method: str, path: str, body: bytes | None, idempotency_key: str | None
    ) -> tuple[int, bytes]:
        headers = {"content-type": "application/json"} if body is not None else {}
        if idempotency_key is not None:
            headers["idempotency-key"] = idempotency_key
        response = await client.request(method, path, content=body, headers=headers)
        return response.status_code, response.content

    return send


def new_httpx(url: str, key: str, connections: int, http2: bool) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=url,
        headers={"authorization": f"Bearer {key}"},
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        http1=not http2,
        http2=http2,
        timeout=30,
    )


async def deploy(url: str, key: str) -> str:
    async with new_httpx(url, key, 1, False) as client:
        body = {"kind": "python", "files": {"workflows.py": WORKFLOWS}}
        created = await client.post("/v1/deployments", json=body)
        if created.status_code != 201:
            raise RuntimeError(f"deployment refused: {created.status_code} {created.text}")
        deployment_id = created.json()["deploymentId"]
        activated = await client.post(f"/v1/deployments/{deployment_id}/activate")
        if activated.status_code >= 300:
            raise RuntimeError(f"activation refused: {activated.status_code} {activated.text}")
    return str(deployment_id)


async def health(send: Send) -> int:
    return (await send("GET", "/v1/health", None, None))[0]


async def trigger(send: Send) -> int:
    return (await send("POST", "/v1/runs", TRIGGER_BODY, uuid.uuid4().hex))[0]


async def not_found(send: Send) -> int:
    return (await send("GET", "/v1/bench-not-found", None, None))[0]


REQUESTS = {"health": (health, 200), "trigger": (trigger, 202), "floor": (not_found, 404)}


async def load(senders: Sequence[Send], server_pid: int, kind: str, seconds: float) -> Load:
    request, expected = REQUESTS[kind]
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def worker(send: Send) -> None:
        nonlocal errors
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            status = await request(send)
            latencies.append(time.perf_counter() - started)
            if status != expected:
                errors += 1

    cpu_client, cpu_server = time.process_time(), cpu_seconds(server_pid)
    started = time.perf_counter()
    await asyncio.gather(*(worker(send) for send in senders))
    elapsed = time.perf_counter() - started
    used_client = time.process_time() - cpu_client
    used_server = cpu_seconds(server_pid) - cpu_server
    latencies.sort()
    return Load(len(latencies) / elapsed, percentile(latencies, 0.5) * 1000,
                percentile(latencies, 0.99) * 1000, errors,
                used_client / elapsed, used_server / elapsed)  # fmt: skip


async def wait_idle(server_pid: int, limit_s: float = 60.0) -> float:
    """Until the server has drained the runs it was given (< 5 % CPU over 200 ms);
    returns the seconds it took, less the idle window that proved it."""
    started = time.perf_counter()
    while time.perf_counter() < started + limit_s:
        before = cpu_seconds(server_pid)
        await asyncio.sleep(0.2)
        if cpu_seconds(server_pid) - before < 0.01:
            break
    return max(0.0, time.perf_counter() - started - 0.2)


async def zero_run(send: Send) -> float:
    started = time.perf_counter()
    status, body = await send("POST", "/v1/runs", TRIGGER_BODY, uuid.uuid4().hex)
    if status != 202:
        raise RuntimeError(f"trigger refused: {status} {body!r}")
    run_id = json.loads(body)["runId"]
    while True:
        status, body = await send("GET", f"/v1/runs/{run_id}?wait=30", None, None)
        run = json.loads(body)
        if run.get("status") == "completed":
            return time.perf_counter() - started
        if status != 200 or run.get("status") in ("failed", "cancelled"):
            raise RuntimeError(f"run {run_id}: {status} {run}")
        await asyncio.sleep(0.001)


def report(name: str, rounds: list[Load]) -> Load:
    figure = Load(
        *(statistics.median(values) for values in zip(*map(astuple, rounds), strict=True))
    )
    print(f"  {name:16s} {figure.rate:7.0f} req/s   p50 {figure.p50_ms:6.1f} ms   "
          f"p99 {figure.p99_ms:6.1f} ms   errors {figure.errors:.0f}   "
          f"CPU (share of a core): server {figure.server_cpu:4.0%}, "
          f"client {figure.client_cpu:4.0%}")  # fmt: skip
    return figure


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per load figure")
    parser.add_argument("--repeat", type=int, default=3, help="rounds per figure (median)")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--runs", type=int, default=200, help="0-step runs for the latency")
    parser.add_argument("--client", choices=["raw", "httpx"], default="raw")
    parser.add_argument("--http2", action="store_true", help="httpx, h2c with prior knowledge")
    parser.add_argument("--split", action="store_true",
                        help="two processes on one database: --role api takes the load, "
                             "--role executor runs what it accepts")  # fmt: skip
    parser.add_argument("--database-url", help="PostgreSQL instead of SQLite (an empty database)")
    args = parser.parse_args()
    database = ["--database-url", args.database_url] if args.database_url else []
    client_name = "httpx" if args.http2 else args.client
    folder = Path(tempfile.mkdtemp(prefix="cw-trigger-"))
    key = "bench_" + secrets.token_hex(16)
    server = Server(folder, key, flags=[*database, *(["--role", "api"] if args.split else [])])
    executor: Server | None = None
    raw: list[RawConnection] = []
    client: httpx.AsyncClient | None = None
    try:
        url = await server.wait_listening()
        pid = server.process.pid
        if args.split:  # the same data dir: database, artifacts and secret shared
            executor = Server(folder, key, flags=[*database, "--role", "executor"])
            await executor.wait_listening()
        busy = pid if executor is None else executor.process.pid  # who executes the runs
        deployment_id = await deploy(url, key)
        if client_name == "raw":
            raw = [RawConnection(url, key) for _ in range(args.connections)]
            senders: list[Send] = [connection.send for connection in raw]
        else:
            client = new_httpx(url, key, args.connections, args.http2)
            senders = [httpx_sender(client)] * args.connections
        for _ in range(200):  # warm up both routes
            await health(senders[0])
            await trigger(senders[0])
        await wait_idle(busy)
        protocol = "h2c (prior knowledge)" if args.http2 else "HTTP/1.1"
        loop = type(asyncio.get_running_loop()).__module__.split(".")[0]
        roles = "--role api + a --role executor process" if args.split else "--role both"
        kind = "PostgreSQL" if database else "SQLite"
        print(f"compute-worker serve (subprocess, {kind}, worldcompute local, {roles}) at "
              f"{url}, deployment {deployment_id}")  # fmt: skip
        print(f"{protocol}, client {client_name} on {loop}, {args.connections} connections, "
              f"{args.seconds:g} s per figure, median of {args.repeat}\n")  # fmt: skip
        floor_rounds: list[Load] = []
        health_rounds: list[Load] = []
        trigger_rounds: list[Load] = []
        drains: list[float] = []
        for _ in range(args.repeat):
            floor_rounds.append(await load(senders, pid, "floor", args.seconds))
            health_rounds.append(await load(senders, pid, "health", args.seconds))
            trigger_rounds.append(await load(senders, pid, "trigger", args.seconds))
            drains.append(await wait_idle(busy))  # the triggered runs execute after their 202
        floor = report("GET (404)", floor_rounds)
        baseline = report("GET /v1/health", health_rounds)
        ours = report("POST /v1/runs", trigger_rounds)
        print(f"  trigger / health: {ours.rate / baseline.rate:.1%} (target >= 50 %); "
              f"trigger p99 {ours.p99_ms:.1f} ms (target <= 50 ms)")  # fmt: skip
        drain = statistics.median(drains)
        print(f"  the runs accepted during a trigger round finished {drain:.1f} s after it "
              f"(~{ours.rate * args.seconds / (args.seconds + drain):.0f} runs/s accepted "
              f"and executed)")  # fmt: skip
        print(f"  (for reference: trigger / 404 {ours.rate / floor.rate:.1%}, health / 404 "
              f"{baseline.rate / floor.rate:.1%}; the 404 is the HTTP stack and middleware "
              f"alone, /v1/health also pings the database and the artifact store)\n")  # fmt: skip
        zero = sorted([await zero_run(senders[0]) for _ in range(args.runs)])
        print(f"0-step run over HTTP, trigger -> completed (GET /v1/runs/:id?wait=30), "
              f"{args.runs} runs one at a time:\n  p50 {statistics.median(zero) * 1000:.2f} ms, "
              f"p99 {percentile(zero, 0.99) * 1000:.2f} ms (target <= 8 ms p50)")  # fmt: skip
    finally:
        for connection in raw:
            connection.close()
        if client is not None:
            await client.aclose()
        server.stop()
        if executor is not None:
            executor.stop()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    try:  # lowers the client's own cost; the server runs its own loop
        import uvloop
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())
