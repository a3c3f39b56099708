"""Settings: the one definition of every option.

Each field below is one setting: its type, default, bounds and a one-line
description. From it come the keyword options of the Python factories, the
``COMPUTE_WORKER_<NAME>`` environment variables, the ``--<name>`` flags of the CLI
and the README's Configuration table (``python -m compute_worker.app.settings_doc``).
Adding a setting is one line: ``name: type = setting(default, "what it does", ...)``.

Precedence: option (or CLI flag) > environment variable > default. Paths are made
absolute once, when the settings are built, against the current directory of that
moment; nothing later resolves a path against whatever directory it runs in.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import functools
import importlib.util
import json
import os
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin
from urllib.parse import urlsplit

from pydantic import BeforeValidator, Field, ValidationError, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, EnvSettingsSource, NoDecode, SettingsConfigDict
from pydantic_settings.sources import PydanticBaseSettingsSource
from pydantic_settings.sources.utils import parse_env_vars
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from compute_worker.app.errors import SettingsError
from compute_worker.domain import errors
from compute_worker.domain.api_keys import check_scopes
from compute_worker.domain.outbound import OutboundPolicy
from compute_worker.domain.use_cases.authenticate import SeedKey
from compute_worker.domain.webhooks import SCHEMES, WebhookProvider

__all__ = ["ENV_PREFIX", "Settings", "SettingsError", "describe_settings", "package_version"]

ENV_PREFIX = "COMPUTE_WORKER_"
DISTRIBUTION = "workflow-compute-worker"
WebhookCallback = Callable[[dict[str, Any]], Awaitable[None]]
Origin = Literal["option", "flag"]


def _span_exporter(value: Any) -> Any:
    """An object with the SpanExporter methods (``export``, ``shutdown``), or None."""
    if value is None or (callable(getattr(value, "export", None))
                         and callable(getattr(value, "shutdown", None))):  # fmt: skip
        return value
    raise ValueError("must be an OpenTelemetry SpanExporter")


@functools.cache
def package_version() -> str:
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "0+unknown"


# -- how a field is declared -----------------------------------------------------------------


def setting(
    default: Any,
    description: str,
    *,
    shown: str | None = None,
    metavar: str | None = None,
    expect: str | None = None,
    python_only: bool = False,
    secret: bool = False,
    **constraints: Any,
) -> Any:
    """One setting: ``default`` and a one-line ``description``. ``shown`` is the default
    as the docs show it (when it is derived or generated), ``metavar`` the flag's value
    placeholder, ``expect`` the phrase for error messages ("must be <expect>"),
    ``python_only`` keeps it out of the environment and the CLI, ``secret`` out of
    dumps and reprs; ``constraints`` are pydantic's (``ge``, ``le``, ``gt``, …)."""
    extra: dict[str, Any] = {
        "shown": shown,
        "metavar": metavar,
        "expect": expect,
        "python_only": python_only,
        "secret": secret,
    }
    return Field(default, description=description, repr=not secret, json_schema_extra=extra,
                 **constraints)  # fmt: skip


def _text(value: Any) -> Any:
    if isinstance(value, str) and not value.strip():
        raise ValueError("must not be empty")
    return value


def _lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


def _json(value: Any) -> Any:
    if isinstance(value, str | bytes):
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"is not JSON: {exc}") from None
    return value


def _seeds(value: Any) -> tuple[SeedKey, ...]:
    value = _json(value)
    if not isinstance(value, list | tuple):
        raise ValueError('must be a JSON list of {"key", "scopes", "name"?}')
    seeds = []
    for index, item in enumerate(value):
        if isinstance(item, SeedKey):
            seeds.append(item)
            continue
        if not isinstance(item, dict) or not isinstance(item.get("key"), str):
            raise ValueError(f"[{index}] needs a string 'key'")
        if len(item["key"]) < 16:
            raise ValueError(f"[{index}].key must have at least 16 characters")
        scopes = item.get("scopes")
        if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
            raise ValueError(f"[{index}].scopes must be a list of strings")
        try:
            checked = check_scopes(scopes)
        except errors.InvalidRequest as exc:
            raise ValueError(f"[{index}].scopes: {exc.message}") from None
        seeds.append(SeedKey(item["key"], checked, str(item.get("name") or f"seed-{index}")))
    return tuple(seeds)


def _providers(value: Any) -> tuple[WebhookProvider, ...]:
    """``{"<name>": {"scheme", "secret", "trigger"?: {"workflow", "deploymentId"?},
    "resume"?: {"tokenField"}}}``, or ``WebhookProvider`` objects."""
    value = _json(value)
    if isinstance(value, tuple | list) and all(isinstance(p, WebhookProvider) for p in value):
        return tuple(value)
    if not isinstance(value, dict):
        raise ValueError("must be a JSON object of provider name → settings")
    providers = []
    for name, spec in value.items():
        where = f".{name}"
        if not isinstance(spec, dict) or spec.get("scheme") not in SCHEMES:
            raise ValueError(f"{where}.scheme must be one of {', '.join(SCHEMES)}")
        if not isinstance(spec.get("secret"), str) or not spec["secret"]:
            raise ValueError(f"{where}.secret must be a non-empty string")
        trigger = spec.get("trigger") or {}
        resume = spec.get("resume") or {}
        if not isinstance(trigger, dict) or not isinstance(resume, dict) or (trigger and resume):
            raise ValueError(f"{where} takes at most one action: trigger or resume")
        if trigger and not isinstance(trigger.get("workflow"), str):
            raise ValueError(f"{where}.trigger.workflow must be a string")
        if resume and not isinstance(resume.get("tokenField"), str):
            raise ValueError(f"{where}.resume.tokenField must be a string")
        providers.append(
            WebhookProvider(
                name=name,
                scheme=spec["scheme"],
                secret=spec["secret"],
                trigger_workflow=trigger.get("workflow"),
                deployment_id=trigger.get("deploymentId"),
                resume_token_field=resume.get("tokenField"),
            )
        )
    return tuple(providers)


def _secret(value: Any) -> bytes:
    secret: bytes
    if isinstance(value, bytes):
        secret = value
    else:
        try:
            secret = base64.b64decode(str(value).strip(), validate=True)
        except binascii.Error:
            raise ValueError("must be base64 (of 32 bytes or more)") from None
    if len(secret) < 32:
        raise ValueError(f"must hold 32 bytes or more, not {len(secret)}")
    return secret


def _postgres_url(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    example = "a URL like postgresql+asyncpg://user@host:5432/db"
    try:
        url = make_url(value.strip())
    except ArgumentError:
        raise ValueError(f"must be {example}") from None
    if url.drivername not in ("postgresql", "postgres", "postgresql+asyncpg"):
        raise ValueError(f"must be {example} (PostgreSQL; for SQLite use sqlite_path)")
    return value.strip()


def _http_url(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL, e.g. http://10.0.0.5:8080")
    return value.strip().rstrip("/")


def _patterns(value: Any) -> Any:
    """Outbound host patterns: a JSON list or a comma- or space-separated string."""
    if isinstance(value, str):
        text = value.strip()
        value = _json(text) if text.startswith("[") else text.replace(",", " ").split()
    if not isinstance(value, list | tuple) or not all(isinstance(p, str) for p in value):
        raise ValueError("must be host patterns, comma-separated or a JSON list of strings")
    try:
        OutboundPolicy(tuple(value))
    except ValueError as exc:
        raise ValueError(f"must be valid host patterns: {exc}") from None
    return tuple(value)


def _absolute(path: Path) -> Path:
    """Absolute against the current directory now, ``~`` expanded, symlinks kept."""
    return Path(os.path.abspath(path.expanduser()))


Text = Annotated[str, BeforeValidator(_text)]
PathSetting = Annotated[Path, BeforeValidator(_text)]
JsonSeeds = Annotated[tuple[SeedKey, ...], NoDecode, BeforeValidator(_seeds)]
HostPatterns = Annotated[tuple[str, ...], NoDecode, BeforeValidator(_patterns)]
JsonProviders = Annotated[tuple[WebhookProvider, ...], NoDecode, BeforeValidator(_providers)]


# -- the settings ----------------------------------------------------------------------------

_ENVIRON: ContextVar[Mapping[str, str] | None] = ContextVar("compute_worker_environ", default=None)


class Settings(BaseSettings):
    """Frozen; build it with ``Settings.load(options, env)``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_ignore_empty=True,
        frozen=True,
        extra="forbid",
        validate_default=False,
        arbitrary_types_allowed=True,
    )

    host: Text = setting("127.0.0.1", "interface to listen on (0.0.0.0: every IPv4 interface)",
                         metavar="HOST")  # fmt: skip
    port: int = setting(8080, "TCP port to listen on (0: any free port)", ge=0, le=65535)
    data_dir: PathSetting = setting(
        Path("data"),
        "home of the SQLite file, artifacts, unpacked code, the encryption secret and the dev key",
        shown="./data",
    )
    sqlite_path: PathSetting = setting(
        None, "embedded SQLite database file (WAL); unused with database_url",
        shown="<data_dir>/compute-worker.db",
    )  # fmt: skip
    database_url: Annotated[str | None, BeforeValidator(_postgres_url)] = setting(
        None, "PostgreSQL, e.g. postgresql+asyncpg://user@host:5432/db; replaces SQLite",
        metavar="URL", secret=True,
    )  # fmt: skip
    artifact_dir: PathSetting = setting(
        None, "deployment artifact store (give workers on several machines the same one)",
        shown="<data_dir>/artifacts",
    )  # fmt: skip
    code_dir: PathSetting = setting(
        None, "where deployment bundles are unpacked for execution (a local folder)",
        shown="<artifact_dir>/unpacked",
    )  # fmt: skip
    worldcompute: Annotated[Literal["process", "local"], BeforeValidator(_lower)] = setting(
        "process", "execution backend: process (isolated children) or local (in the server)"
    )
    role: Annotated[Literal["both", "api", "executor"], BeforeValidator(_lower)] = setting(
        "both",
        "what this process does: both, api (serves the API, executes nothing) or "
        "executor (executes runs; serves only health, metrics and the internal lane)",
    )
    expected_target_world: Text | None = setting(
        None, "world that WORKFLOW_TARGET_WORLD must name in production", metavar="WORLD"
    )
    seed_api_keys: JsonSeeds = setting(
        (), 'JSON list of {"key", "scopes", "name"?} created at start (changed scopes are updated)',
        shown="[]", metavar="JSON", secret=True,
    )  # fmt: skip
    require_https: bool = setting(False, "refuse requests that did not arrive over TLS")
    trust_forwarded_proto: bool = setting(
        False, "accept X-Forwarded-Proto: https from a trusted proxy"
    )
    rate_limit_per_minute: int = setting(
        0, "requests per API key per minute (0: no limit)", ge=0, le=1_000_000
    )
    ui: bool | None = setting(
        None, "serve the dashboard at /ui (it asks for an API key and calls the API with it)",
        shown="on with serve --dev, off otherwise",
    )  # fmt: skip
    metrics_access: Annotated[Literal["loopback", "key", "open"], BeforeValidator(_lower)] = (
        setting("loopback", "who may GET /metrics: loopback (no key from 127.0.0.1/::1, "
                "a runs:read key from elsewhere), key (a runs:read key always) or open")
    )  # fmt: skip
    max_body_bytes: int = setting(
        10 * 1024 * 1024, "largest request body in bytes; larger ones get 413 payload_too_large",
        ge=1, le=1024**3,
    )  # fmt: skip
    max_events_per_run: int = setting(
        25_000, "most events a run may hold, announced to Workflow DevKit runtimes as maxEvents "
        "on run lifecycle answers of events.create (the runtime fails a run that reaches it)",
        ge=1, le=100_000_000,
    )  # fmt: skip
    encryption: bool = setting(
        True, "derive per-run encryption keys (off: encryption-key answers null, plaintext)"
    )
    encryption_secret: Annotated[bytes | None, BeforeValidator(_secret)] = setting(
        None, "base64 installation secret (32+ bytes) for run keys; share it between machines",
        shown="generated into <data_dir>/encryption.key", metavar="BASE64", secret=True,
    )  # fmt: skip
    stream_poll_interval: float = setting(
        0.1, "seconds between checks for stream chunks written by other processes",
        gt=0, le=60,
    )  # fmt: skip
    api_key_cache_seconds: float = setting(
        5.0, "seconds a found API key is served from memory (0: look it up on every request); "
        "a key revoked by another process stops working here at once on PostgreSQL (NOTIFY), "
        "within this time on SQLite",
        ge=0, le=300,
    )  # fmt: skip
    certfile: PathSetting | None = setting(
        None, "TLS certificate (PEM); enables HTTPS with h2 and http/1.1 via ALPN"
    )
    keyfile: PathSetting | None = setting(None, "TLS private key (PEM), unless in certfile")
    log_level: Annotated[Literal["debug", "info", "warning", "error"], BeforeValidator(_lower)] = (
        setting("info", "least severe JSON log line written to stderr")
    )
    event_loop: Annotated[Literal["auto", "asyncio", "uvloop"], BeforeValidator(_lower)] = (
        setting("auto", "event loop of the server and its workflow processes: uvloop "
                "(auto: when installed, a dependency on Linux and macOS) or asyncio's")
    )  # fmt: skip
    on_webhook: WebhookCallback | None = setting(
        None, "async def (delivery: dict), called after an accepted webhook delivery is stored",
        python_only=True, expect="an async function",
    )  # fmt: skip
    trace_exporter: Annotated[Any, BeforeValidator(_span_exporter)] = setting(
        None, "an OpenTelemetry SpanExporter receiving the server's spans (turns tracing on "
        "like OTEL_EXPORTER_OTLP_ENDPOINT / OTEL_TRACES_EXPORTER; see Traces)",
        python_only=True, expect="an OpenTelemetry SpanExporter",
    )  # fmt: skip
    webhook_providers: JsonProviders = setting(
        (), "JSON object: provider name → {scheme, secret, trigger | resume} (see Webhooks)",
        shown="{}", metavar="JSON", secret=True,
    )  # fmt: skip
    idempotency_retention_hours: float = setting(
        24.0, "hours a POST /v1/runs Idempotency-Key is kept", gt=0, le=24 * 366
    )
    internal_url: Annotated[str | None, BeforeValidator(_http_url)] = setting(
        None, "where the worker is reached, refused to graph HTTP nodes like its bound "
        "address (set it behind another ASGI server)",
        shown="the bound address", metavar="URL",
    )  # fmt: skip
    process_memory_mb: int = setting(
        1024, "process backend: address-space limit of each workflow child, MiB",
        ge=128, le=1024 * 1024,
    )  # fmt: skip
    step_timeout_seconds: float = setting(
        300.0, "process backend: wall-clock and CPU limit of a step attempt without a timeout",
        gt=0, le=7 * 24 * 3600,
    )  # fmt: skip
    workflow_turn_seconds: float = setting(
        60.0, "process backend: workflow code (outside steps) holding its process this long "
        "without yielding is killed (the run is tried 3 times, then fails); awaiting nothing "
        "durable (asyncio.sleep in the body) this long fails the run",
        gt=0, le=3600,
    )  # fmt: skip
    sandbox: Annotated[Literal["auto", "required", "off"], BeforeValidator(_lower)] = setting(
        "auto", "process backend: box each workflow child with bubblewrap (README: Threat "
        "model). auto: when the host can; when it cannot, a warning, and serve without --dev "
        "refuses to start; required: refuse to start without it; off: accept the risk",
    )  # fmt: skip
    sandbox_network: Annotated[
        Literal["none", "allow-list", "host"], BeforeValidator(_lower)
    ] = setting(
        "none", "process backend: a sandboxed child's network: none (its own, empty; the World "
        "still answers over its stdin and stdout), allow-list (the same, plus an HTTP(S) proxy "
        "to the hosts of sandbox_allow) or host (the server's: steps may call any API)",
    )  # fmt: skip
    sandbox_allow: HostPatterns = setting(
        (), "hosts a sandboxed child may reach with sandbox_network=allow-list, through "
        "HTTP_PROXY/HTTPS_PROXY: comma-separated patterns (as delivery_allow)",
        shown="none", metavar="PATTERNS",
    )  # fmt: skip
    sandbox_uid: int = setting(
        65534, "process backend: the unprivileged uid (and gid) a sandboxed child runs as when "
        "the server runs as root", ge=1, le=2**31 - 1,
    )  # fmt: skip
    process_children: int = setting(
        4, "process backend: child processes (runs executing at once) per deployment",
        ge=1, le=256,
    )  # fmt: skip
    max_start_attempts: int = setting(
        5, "failed starts in a row (process or bundle load) before a run fails", ge=1, le=1000
    )
    start_retry_seconds: float = setting(
        2.0, "first delay before a failed start is tried again (doubles, up to 60 s)",
        gt=0, le=3600,
    )  # fmt: skip
    stuck_after_seconds: float = setting(
        600.0, "a live run not waiting on a sleep or hook and without progress this long is "
        "reported stuck (GET /v1/runs?stuck=true, the runs_stuck metric, a warning log)",
        gt=0, le=30 * 24 * 3600,
    )  # fmt: skip
    max_executor_losses: int = setting(
        20, "lost executors in a row (worker died, lease ran out) before a run fails",
        ge=1, le=10_000,
    )  # fmt: skip
    schedule_catch_up: Annotated[Literal["skip", "one", "all"], BeforeValidator(_lower)] = (
        setting("one", "schedules: what becomes of slots missed while no worker ran: skip "
                "(none), one (the latest only) or all (each, oldest first); a schedule may "
                "set its own")
    )  # fmt: skip
    schedule_late_seconds: float = setting(
        60.0, "schedules: a slot not started within this many seconds of its time is missed "
        "(and handled per schedule_catch_up)",
        gt=0, le=86_400,
    )  # fmt: skip
    schedule_poll_seconds: float = setting(
        1.0, "schedules: seconds between the scheduler's passes over the active deployment's "
        "schedules (0 stops the scheduler of this worker)",
        ge=0, le=3600,
    )  # fmt: skip

    graph_http_allow: HostPatterns = setting(
        ("*",), "hosts graph http_request nodes may reach: comma-separated patterns (as "
        "delivery_allow); * is any public host: loopback, private and cloud metadata "
        "addresses need an explicit IP, CIDR or localhost, and the worker's own address is "
        "always refused",
        shown="* (--dev: *, localhost, private networks)", metavar="PATTERNS",
    )  # fmt: skip
    graph_http_max_bytes: int = setting(
        10 * 1024 * 1024, "largest response body a graph http_request node reads, in bytes "
        "(a larger one fails the node)",
        ge=1, le=1024**3,
    )  # fmt: skip
    delivery_allow: HostPatterns = setting(
        (), "hosts that queue deliveries to WDK apps (kind wdk) may reach: comma-separated "
        "patterns (api.example.com, *.example.com, host:port, IP, CIDR, localhost, *)",
        shown="none (--dev: localhost)", metavar="PATTERNS",
    )  # fmt: skip
    delivery_timeout_seconds: float = setting(
        300.0, "seconds one delivery to a WDK app may take before it counts as failed",
        gt=0, le=3600,
    )  # fmt: skip
    delivery_concurrency: int = setting(
        16, "deliveries in flight at once per WDK deployment, per worker process", ge=1, le=1024
    )
    delivery_lease_seconds: float = setting(
        30.0, "lease on a message being delivered, renewed while in flight: how soon another "
        "worker delivers the messages of a worker that died", ge=1, le=3600,
    )  # fmt: skip
    delivery_max_failures: int = setting(
        48, "failed deliveries in a row (backoff 1 s doubling to 60 s) before a message is "
        "dropped with an error log", ge=1, le=100_000,
    )  # fmt: skip

    @model_validator(mode="after")
    def _resolve(self) -> Settings:
        """Absolute paths, derived defaults, and checks across settings."""
        data_dir = _absolute(self.data_dir)
        artifact_dir = _absolute(self.artifact_dir) if self.artifact_dir else data_dir / "artifacts"
        resolved = {
            "data_dir": data_dir,
            "sqlite_path": _absolute(self.sqlite_path)
            if self.sqlite_path
            else data_dir / "compute-worker.db",
            "artifact_dir": artifact_dir,
            "code_dir": _absolute(self.code_dir) if self.code_dir else artifact_dir / "unpacked",
            "certfile": _absolute(self.certfile) if self.certfile else None,
            "keyfile": _absolute(self.keyfile) if self.keyfile else None,
        }
        for name, value in resolved.items():
            object.__setattr__(self, name, value)  # frozen: set once, while validating
        if self.keyfile is not None and self.certfile is None:
            raise ValueError("keyfile is set but certfile is not: TLS needs a certificate")
        if self.event_loop == "uvloop" and importlib.util.find_spec("uvloop") is None:
            raise ValueError("event_loop is uvloop but uvloop is not installed")
        return self

    # -- derived values -----------------------------------------------------------------------

    @property
    def version(self) -> str:
        return package_version()

    @property
    def target_world(self) -> str:
        """The world this server is (``WORKFLOW_TARGET_WORLD``), reported by health."""
        return os.environ.get("WORKFLOW_TARGET_WORLD") or self.expected_target_world or "local"

    @property
    def database_kind(self) -> str:
        return "sqlite" if self.database_url is None else "postgresql"

    @property
    def secret_path(self) -> Path:
        return self.data_dir / "encryption.key"

    @property
    def dev_key_path(self) -> Path:
        return self.data_dir / "dev-api-key"

    # -- building -----------------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        options: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        *,
        origin: Origin = "option",
    ) -> Settings:
        """Settings from ``options`` (None values ignored) over ``env`` (default: the
        process environment) over the defaults. ``origin`` says how errors name an
        option: ``option port`` (Python) or ``--port`` (CLI). Raises ``SettingsError``
        with one line naming the setting."""
        given = {name: value for name, value in (options or {}).items() if value is not None}
        known = {spec.name for spec in describe_settings()}
        for name in given:
            if name not in known:
                close = difflib.get_close_matches(name, sorted(known), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise SettingsError(f"unknown option {name!r}{hint}")
        environ = os.environ if env is None else env
        token = _ENVIRON.set(environ)
        try:
            return cls(**given)
        except ValidationError as exc:
            raise SettingsError(_explain(exc, given, environ, origin)) from None
        finally:
            _ENVIRON.reset(token)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        environ = _ENVIRON.get()
        source = _Environment(settings_cls, os.environ if environ is None else environ)
        return (init_settings, source)

    def public(self) -> dict[str, Any]:
        """Every setting as JSON values, secrets withheld (``compute-worker settings``)."""
        shown: dict[str, Any] = {}
        for spec in describe_settings():
            value = getattr(self, spec.name)
            if spec.name == "database_url" and value is not None:
                value = make_url(value).render_as_string(hide_password=True)
            elif spec.name == "seed_api_keys":
                value = [{"name": s.name, "scopes": sorted(s.scopes)} for s in value]
            elif spec.name == "webhook_providers":
                value = {p.name: {"scheme": p.scheme} for p in value}
            elif spec.secret or spec.python_only:
                value = None if value is None else "(set)"
            elif isinstance(value, Path):
                value = str(value)
            shown[spec.name] = value
        return shown


class _Environment(EnvSettingsSource):
    """``COMPUTE_WORKER_<NAME>`` variables of a given mapping; Python-only settings skipped."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(
            self._environ, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str
        )

    def __call__(self) -> dict[str, Any]:
        values = super().__call__()
        for spec in describe_settings():
            if spec.python_only:
                values.pop(spec.name, None)
        return values


# -- what the definition says, for the CLI, the docs and error messages ----------------------


@dataclass(frozen=True, slots=True)
class SettingSpec:
    name: str
    description: str
    default: str  # as the docs show it
    kind: str  # bool, int, float, choice, path, json, text
    choices: tuple[str, ...]
    metavar: str
    expect: str  # "an integer between 0 and 65535", for "must be …"
    python_only: bool
    secret: bool

    @property
    def env(self) -> str | None:
        return None if self.python_only else ENV_PREFIX + self.name.upper()

    @property
    def flag(self) -> str | None:
        return None if self.python_only else "--" + self.name.replace("_", "-")

    @property
    def flags(self) -> str | None:
        """As the CLI spells it: ``--port`` or ``--require-https/--no-require-https``."""
        if self.flag is None:
            return None
        return f"{self.flag}/--no-{self.flag[2:]}" if self.kind == "bool" else self.flag


@functools.cache
def describe_settings() -> tuple[SettingSpec, ...]:
    return tuple(_spec(name, info) for name, info in Settings.model_fields.items())


def _spec(name: str, info: FieldInfo) -> SettingSpec:
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    kind, choices = _kind(info.annotation)
    if extra.get("metavar") == "JSON":
        kind = "json"
    bounds = _bounds(info.metadata)
    expect = {
        "bool": "true or false",
        "int": "an integer" + bounds,
        "float": "a number" + bounds,
        "choice": "one of " + ", ".join(repr(c) for c in choices),
        "path": "a path",
        "json": "JSON",
    }.get(kind) or {"URL": "a URL", "BASE64": "base64"}.get(
        str(extra.get("metavar")), "a non-empty string"
    )
    metavar = {"int": "INTEGER", "float": "NUMBER", "path": "PATH", "choice": "|".join(choices)}
    return SettingSpec(
        name=name,
        description=info.description or "",
        default=str(extra.get("shown") or _shown(info.default)),
        kind=kind,
        choices=choices,
        metavar=str(extra.get("metavar") or metavar.get(kind, "TEXT")),
        expect=str(extra.get("expect") or expect),
        python_only=bool(extra.get("python_only")),
        secret=bool(extra.get("secret")),
    )


def _kind(annotation: Any) -> tuple[str, tuple[str, ...]]:
    for candidate in _flatten(annotation):
        if candidate is bool:
            return "bool", ()
        if candidate is int:
            return "int", ()
        if candidate is float:
            return "float", ()
        if candidate is Path:
            return "path", ()
        if get_origin(candidate) is Literal:
            return "choice", tuple(str(arg) for arg in get_args(candidate))
    return "text", ()


def _flatten(annotation: Any) -> Iterator[Any]:
    origin = get_origin(annotation)
    if origin is Annotated:
        yield from _flatten(get_args(annotation)[0])
    elif origin is not None and origin is not Literal and type(None) in get_args(annotation):
        for arg in get_args(annotation):
            if arg is not type(None):
                yield from _flatten(arg)
    else:
        yield annotation


def _bounds(metadata_: list[Any]) -> str:
    found: dict[str, Any] = {}
    for item in metadata_:  # annotated_types.Ge(ge=0), Le(le=...), ...
        for key in ("ge", "gt", "le", "lt"):
            if getattr(item, key, None) is not None:
                found[key] = getattr(item, key)
    low = ("ge", found["ge"]) if "ge" in found else ("gt", found["gt"]) if "gt" in found else None
    high = ("le", found["le"]) if "le" in found else ("lt", found["lt"]) if "lt" in found else None
    if low and high and low[0] == "ge" and high[0] == "le":
        return f" between {_number(low[1])} and {_number(high[1])}"
    parts = []
    if low:
        parts.append(f"of {_number(low[1])} or more" if low[0] == "ge" else
                     f"greater than {_number(low[1])}")  # fmt: skip
    if high:
        parts.append(f"at most {_number(high[1])}" if high[0] == "le" else
                     f"less than {_number(high[1])}")  # fmt: skip
    return " " + " and ".join(parts) if parts else ""


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _shown(default: Any) -> str:
    if default is None:
        return "—"
    if isinstance(default, bool):
        return "true" if default else "false"
    if isinstance(default, float):
        return _number(default)
    return str(default)


def _explain(
    exc: ValidationError, given: Mapping[str, Any], environ: Mapping[str, str], origin: Origin
) -> str:
    """The first problem as one line naming the setting the way it was given."""
    specs = {spec.name: spec for spec in describe_settings()}
    problems = []
    for error in exc.errors():
        name = str(error["loc"][0]) if error["loc"] else None
        spec = specs.get(name) if name else None
        if spec is None:
            message = str(error.get("ctx", {}).get("error") or error["msg"])
            problems.append(message.removeprefix("Value error, "))
            continue
        if name in given:
            where = spec.flag if origin == "flag" and spec.flag else f"option {name}"
        else:
            where = spec.env or f"option {name}"
        if error["type"] == "value_error":
            detail = str(error.get("ctx", {}).get("error") or error["msg"])
            joiner = "" if detail.startswith(("[", ".")) else " "
            problems.append(f"{where}{joiner}{detail}")
        else:
            shown = error.get("input")
            shown = "<withheld>" if spec.secret else repr(shown)
            problems.append(f"{where} must be {spec.expect}, not {shown}")
    first = problems[0] if problems else str(exc)
    more = len(problems) - 1
    return first + (f" (and {more} more problem{'s' if more > 1 else ''})" if more else "")
