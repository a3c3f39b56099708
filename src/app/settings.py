"""Settings: one place that reads options, environment variables and CLI flags.

Precedence: explicit option (or CLI flag) > ``COMPUTE_WORKER_<NAME>`` environment
variable > default. Every option is documented in the README.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import functools
import json
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from domain import errors
from domain.use_cases.authenticate import SeedKey, check_scopes
from domain.webhooks import SCHEMES, WebhookProvider

ENV_PREFIX = "COMPUTE_WORKER_"
DISTRIBUTION = "workflow-compute-worker"
WebhookCallback = Callable[[dict[str, Any]], Awaitable[None]]


@functools.cache
def package_version() -> str:
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "0+unknown"


class SettingsError(ValueError):
    """A setting has a value that cannot be used; the message names it."""


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = Path("data")
    sqlite_path: Path | None = None
    artifact_dir: Path | None = None
    database_url: str | None = None
    worldcompute: str = "process"
    expected_target_world: str | None = None
    seed_api_keys: tuple[SeedKey, ...] = ()
    require_https: bool = False
    trust_forwarded_proto: bool = False
    rate_limit_per_minute: int = 0
    max_body_bytes: int = 10 * 1024 * 1024
    encryption: bool = True
    encryption_secret: bytes | None = field(default=None, repr=False)
    stream_poll_interval: float = 0.1
    certfile: Path | None = None
    keyfile: Path | None = None
    log_level: str = "info"
    on_webhook: WebhookCallback | None = None
    webhook_providers: tuple[WebhookProvider, ...] = ()
    internal_url: str | None = None
    process_memory_mb: int = 1024
    step_timeout_seconds: float = 300.0
    process_children: int = 4
    idempotency_retention_hours: float = 24.0
    max_start_attempts: int = 5
    start_retry_seconds: float = 2.0
    max_executor_losses: int = 20

    @property
    def version(self) -> str:
        return package_version()

    @property
    def target_world(self) -> str:
        """The world this server is (``WORKFLOW_TARGET_WORLD``), reported by health."""
        return os.environ.get("WORKFLOW_TARGET_WORLD") or self.expected_target_world or "local"

    @property
    def database_path(self) -> Path:
        return self.sqlite_path or self.data_dir / "compute-worker.db"

    @property
    def artifacts_path(self) -> Path:
        return self.artifact_dir or self.data_dir / "artifacts"

    @property
    def secret_path(self) -> Path:
        return self.data_dir / "encryption.key"

    @classmethod
    def load(
        cls, options: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None
    ) -> Settings:
        """Build settings from options (None values ignored) over the environment."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for item in dataclasses.fields(cls):
            raw = env.get(ENV_PREFIX + item.name.upper())
            if raw is not None and raw != "" and item.name != "on_webhook":
                values[item.name] = _from_env(item.name, raw)
        for name, value in (options or {}).items():
            if name not in cls.__dataclass_fields__:
                raise SettingsError(f"unknown option {name!r}")
            if value is not None:
                values[name] = _coerce(name, value)
        return cls(**values)


_BOOLS = {"require_https", "trust_forwarded_proto", "encryption"}
_INTS = {"port", "rate_limit_per_minute", "max_body_bytes", "process_memory_mb", "process_children",
         "max_start_attempts", "max_executor_losses"}  # fmt: skip
_PATHS = {"data_dir", "sqlite_path", "artifact_dir", "certfile", "keyfile"}


def _from_env(name: str, raw: str) -> Any:
    if name in _BOOLS:
        lowered = raw.strip().lower()
        if lowered not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            raise SettingsError(f"{ENV_PREFIX}{name.upper()} must be true or false, not {raw!r}")
        return lowered in ("1", "true", "yes", "on")
    if name in ("seed_api_keys", "webhook_providers"):
        try:
            return _coerce(name, json.loads(raw))
        except json.JSONDecodeError as exc:
            raise SettingsError(f"{ENV_PREFIX}{name.upper()} is not JSON: {exc}") from None
    return _coerce(name, raw)


def _coerce(name: str, value: Any) -> Any:
    try:
        if name in _INTS:
            number = int(value)
            if number < 0:
                raise ValueError
            return number
        if name in ("stream_poll_interval", "idempotency_retention_hours", "step_timeout_seconds",
                    "start_retry_seconds"):  # fmt: skip
            seconds = float(value)
            if seconds <= 0:
                raise ValueError
            return seconds
        if name == "webhook_providers":
            return _providers(value)
        if name in _PATHS:
            return Path(value)
        if name in _BOOLS:
            return bool(value)
        if name == "seed_api_keys":
            return _seeds(value)
        if name == "encryption_secret":
            return _secret(value)
        if name == "worldcompute" and value not in ("local", "process"):
            raise SettingsError("worldcompute must be 'local' or 'process'")
    except (TypeError, ValueError) as exc:
        if isinstance(exc, SettingsError):
            raise
        raise SettingsError(f"option {name} has an invalid value: {value!r}") from None
    return value


def _seeds(value: Any) -> tuple[SeedKey, ...]:
    if isinstance(value, tuple) and all(isinstance(item, SeedKey) for item in value):
        return value
    if not isinstance(value, list | tuple):
        raise SettingsError('seed_api_keys must be a list of {"key", "scopes", "name"?}')
    seeds = []
    for index, item in enumerate(value):
        if isinstance(item, SeedKey):
            seeds.append(item)
            continue
        if not isinstance(item, dict) or not isinstance(item.get("key"), str):
            raise SettingsError(f"seed_api_keys[{index}] needs a string 'key'")
        if len(item["key"]) < 16:
            raise SettingsError(f"seed_api_keys[{index}].key must have at least 16 characters")
        scopes = item.get("scopes")
        if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
            raise SettingsError(f"seed_api_keys[{index}].scopes must be a list of strings")
        try:
            checked = check_scopes(scopes)
        except errors.InvalidRequest as exc:
            raise SettingsError(f"seed_api_keys[{index}]: {exc.message}") from None
        seeds.append(SeedKey(item["key"], checked, str(item.get("name") or f"seed-{index}")))
    return tuple(seeds)


def _providers(value: Any) -> tuple[WebhookProvider, ...]:
    """``{"<name>": {"scheme", "secret", "trigger"?: {"workflow", "deploymentId"?},
    "resume"?: {"tokenField"}}}``, or a tuple of ``WebhookProvider``."""
    if isinstance(value, tuple | list) and all(isinstance(p, WebhookProvider) for p in value):
        return tuple(value)
    if not isinstance(value, dict):
        raise SettingsError("webhook_providers must be an object of provider name → settings")
    providers = []
    for name, spec in value.items():
        where = f"webhook_providers.{name}"
        if not isinstance(spec, dict) or spec.get("scheme") not in SCHEMES:
            raise SettingsError(f"{where}.scheme must be one of {', '.join(SCHEMES)}")
        if not isinstance(spec.get("secret"), str) or not spec["secret"]:
            raise SettingsError(f"{where}.secret must be a non-empty string")
        trigger = spec.get("trigger") or {}
        resume = spec.get("resume") or {}
        if not isinstance(trigger, dict) or not isinstance(resume, dict) or (trigger and resume):
            raise SettingsError(f"{where} takes at most one action: trigger or resume")
        if trigger and not isinstance(trigger.get("workflow"), str):
            raise SettingsError(f"{where}.trigger.workflow must be a string")
        if resume and not isinstance(resume.get("tokenField"), str):
            raise SettingsError(f"{where}.resume.tokenField must be a string")
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
    if isinstance(value, bytes):
        return value
    try:
        return base64.b64decode(str(value), validate=True)
    except binascii.Error:
        raise SettingsError("encryption_secret must be base64 (32 bytes or more)") from None
