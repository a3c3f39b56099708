"""The box a workflow child runs in: bubblewrap (``bwrap``, Debian package
``bubblewrap``), run by the server, with the child dropped to an unprivileged uid by
``setpriv`` when the server is root.

Inside the mount namespace the child sees: its bundle read-only at ``/bundle``, the
Python runtime read-only (the interpreter's prefix, the virtual environment, the server's
own package), ``/usr`` and the few ``/etc`` files name resolution and TLS need, a
private tmpfs as ``/tmp`` (its only writable place; also ``HOME``), its own ``/proc``
(its own PID namespace: no other process is visible) and a minimal ``/dev``. Not the
data dir, the database, the keys or other bundles. IPC, UTS and cgroup namespaces are
its own; with ``network="none"`` so is the network namespace (only a loopback of its
own): the World is reached through the parent over the child's stdin and stdout. With
``network="allow-list"`` the namespace is empty too, and a Unix socket bind-mounted at
``EGRESS_SOCKET`` leads to an HTTP proxy of the parent that connects only to hosts of
the allow-list (``EgressProxy``, served by ``EgressSocket``); the child points
``HTTP(S)_PROXY`` at it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket as socket_module
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from compute_worker.domain.outbound import OutboundPolicy, OutboundRefused

BUNDLE = "/bundle"
EGRESS_SOCKET = "/run/compute-worker/egress.sock"  # network "allow-list": the way out
MAX_PROXY_HEAD = 64 * 1024
SCRATCH = "/tmp"
PATH = "/usr/local/bin:/usr/bin:/bin"
_ETC = ("resolv.conf", "hosts", "nsswitch.conf", "host.conf", "gai.conf", "localtime",
        "ssl", "ca-certificates", "pki", "mime.types")  # fmt: skip
_MERGED = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
PROBE_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class Sandbox:
    """How children are boxed: ``network`` "none" (own empty network namespace),
    "allow-list" (the same, with a proxy to ``allow``'s hosts) or "host" (the server's
    network: steps may call any API); ``uid``/``gid``: what a child runs as when the
    server is root."""

    bwrap: str
    network: str = "none"
    uid: int = 65534
    gid: int = 65534
    scratch_bytes: int = 256 * 1024 * 1024
    allow: tuple[str, ...] = ()  # network "allow-list": host patterns (domain.outbound)

    def command(
        self,
        inner: Sequence[str],
        bundle: Path,
        *,
        graph: bool = False,
        egress: Path | None = None,
        offline: bool = False,
    ) -> list[str]:
        """``inner`` (a program of the Python runtime) run in the box. A ``graph``
        bundle runs no code of its author (the interpreter is the server's, and its HTTP
        nodes obey ``graph_http_allow``), so it keeps the server's network; ``offline``:
        no network whatever the setting (the upload check)."""
        args = [self.bwrap, "--unshare-ipc", "--unshare-pid", "--unshare-uts",
                "--unshare-cgroup-try", "--die-with-parent",
                "--hostname", "workflow", "--proc", "/proc", "--dev", "/dev"]  # fmt: skip
        if offline or (self.network != "host" and not graph):
            args.append("--unshare-net")
        # the scratch tmpfs before the runtime's binds: a runtime installed under /tmp
        # (a virtual environment made there) is bound on top of it, not hidden by it
        args += ["--size", str(self.scratch_bytes), "--perms", "1777", "--tmpfs", SCRATCH]
        made: set[str] = {SCRATCH}
        args += ["--ro-bind", "/usr", "/usr"]
        for name in _MERGED:
            host = Path("/") / name
            if host.is_symlink():
                args += ["--symlink", os.readlink(host), str(host)]
            elif host.is_dir():
                args += ["--ro-bind", str(host), str(host)]
        args += ["--perms", "0755", "--dir", "/etc"]
        for name in _ETC:
            args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
        for root in runtime_roots():
            if not root.startswith("/usr/"):
                args += [*_parents(root, made), "--ro-bind", root, root]
        args += ["--perms", "0755", "--dir", "/run", "--perms", "0755",
                 "--dir", str(Path(EGRESS_SOCKET).parent)]  # fmt: skip
        if egress is not None:
            args += ["--bind", str(egress), EGRESS_SOCKET]
        args += ["--ro-bind", str(bundle), BUNDLE, "--chdir", BUNDLE]
        if os.geteuid() == 0:
            setpriv = shutil.which("setpriv") or "/usr/bin/setpriv"
            args += ["--", setpriv, f"--reuid={self.uid}", f"--regid={self.gid}",
                     "--clear-groups", "--inh-caps=-all", "--bounding-set=-all",
                     "--no-new-privs", *inner]  # fmt: skip
        else:
            args += ["--cap-drop", "ALL", "--", *inner]
        return args


def runtime_roots() -> list[str]:
    """What the child's Python needs to see: the interpreter's prefix, the virtual
    environment's and the folder holding the ``compute_worker`` package."""
    from compute_worker.adapters.worldcompute.bundles.isolation import source_root

    roots: list[str] = []
    for path in (sys.base_prefix, sys.prefix, source_root(),
                 str(Path(sys.executable).resolve().parent)):  # fmt: skip
        resolved = str(Path(path).resolve())
        if not any(resolved == r or resolved.startswith(r + "/") for r in roots):
            roots = [r for r in roots if not r.startswith(resolved + "/")] + [resolved]
    return sorted(roots)


def _parents(path: str, made: set[str]) -> list[str]:
    """``--dir`` for each missing parent of ``path``, readable by the child (bwrap would
    otherwise copy the host's modes, e.g. ``/root``'s 0700)."""
    args: list[str] = []
    for parent in reversed(Path(path).parents):
        name = str(parent)
        if name in ("/", "/usr") or name.startswith("/usr/") or name in made:
            continue
        made.add(name)
        args += ["--perms", "0755", "--dir", name]
    return args


def sandbox_unavailable(sandbox: Sandbox | None, bwrap: str | None) -> str | None:
    """Why children cannot be boxed on this host (None: they can): bwrap missing, or a
    trial box that does not start (no namespaces in this container, say)."""
    if bwrap is None:
        return "bwrap (Debian package bubblewrap) is not installed"
    trial = Sandbox(bwrap) if sandbox is None else sandbox
    with tempfile.TemporaryDirectory() as folder:
        command = trial.command([sys.executable, "-c", "pass"], Path(folder))
        try:
            done = subprocess.run(command, capture_output=True, timeout=PROBE_TIMEOUT,
                                  env={"PATH": PATH}, check=False)  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as error:
            return f"a trial sandbox did not start: {error}"
    if done.returncode != 0:
        said = done.stderr.decode(errors="replace").strip().splitlines()
        return f"a trial sandbox did not start: {said[-1] if said else done.returncode}"
    return None


class EgressSocket:
    """The Unix socket the boxed children of the ``allow-list`` network reach the outside
    through: each connection is served by an ``EgressProxy`` of the parent."""

    def __init__(self, policy: OutboundPolicy) -> None:
        self._proxy = EgressProxy(policy)
        self._folder: tempfile.TemporaryDirectory[str] | None = None
        self._server: asyncio.AbstractServer | None = None
        self._open: set[asyncio.StreamWriter] = set()  # connections being served

    async def path(self) -> Path:
        """The socket, started on first use."""
        if self._folder is None:
            self._folder = tempfile.TemporaryDirectory(prefix="cw-egress-")  # 0700
        socket = Path(self._folder.name) / "egress.sock"
        if self._server is None:
            self._server = await asyncio.start_unix_server(
                self._serve, path=str(socket), limit=MAX_PROXY_HEAD
            )
            socket.chmod(0o666)  # the child's uid; the folder keeps everyone else out
        return socket

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._open.add(writer)
        try:
            await self._proxy.serve(reader, writer)
        finally:
            self._open.discard(writer)
            writer.close()

    async def close(self) -> None:
        """Stop listening and close the connections still open (a server's ``close``
        leaves them to their handlers)."""
        if self._server is not None:
            self._server.close()
            for writer in list(self._open):
                writer.close()
            await self._server.wait_closed()
            self._server = None
        if self._folder is not None:
            self._folder.cleanup()
            self._folder = None


class EgressProxy:
    """The HTTP proxy a child with the ``allow-list`` network reaches the outside by:
    ``CONNECT host:port`` (HTTPS, end to end) or an absolute-form request (plain HTTP,
    sent on with ``connection: close`` so each request is checked), to hosts the policy
    allows — by name, then each address the name resolves to (a DNS answer cannot swap
    in an internal address). Anything else: 403 with the reason."""

    def __init__(self, policy: OutboundPolicy) -> None:
        self._policy = policy

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            method, target, _ = head.split(b"\r\n", 1)[0].decode("latin1").split(" ", 2)
            url = f"https://{target}" if method == "CONNECT" else target
            up_reader, up_writer = await self._connect(url)
        except OutboundRefused as refused:
            _answer(writer, 403, refused.message)
            return
        except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            _answer(writer, 502, "the proxy could not reach the host")
            return
        if method == "CONNECT":
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:
            up_writer.write(_closing(head))
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    async def _connect(self, url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        target = self._policy.check_url(url)
        found = await asyncio.get_running_loop().getaddrinfo(
            target.host, target.port, type=socket_module.SOCK_STREAM
        )
        for *_, address in found:
            self._policy.check_address(target, str(address[0]))
        return await asyncio.open_connection(str(found[0][4][0]), target.port)


def _closing(head: bytes) -> bytes:
    """A request head with ``connection: close`` in place of its own connection headers."""
    lines = head[:-4].split(b"\r\n")
    kept = [line for line in lines[1:]
            if not line.lower().startswith((b"connection:", b"proxy-connection:"))]  # fmt: skip
    return b"\r\n".join([lines[0], *kept, b"connection: close"]) + b"\r\n\r\n"


def _answer(writer: asyncio.StreamWriter, status: int, message: str) -> None:
    body = message.encode()
    reason = {403: "Forbidden", 502: "Bad Gateway"}[status]
    head = (f"HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n")  # fmt: skip
    writer.write(head.encode() + body)
    with contextlib.suppress(OSError, RuntimeError):
        writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (OSError, asyncio.IncompleteReadError):
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            writer.close()
