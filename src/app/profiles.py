"""Where the client commands of the CLI connect: flags, else the environment, else a
profile of the config file, else the client's default (``make run``'s address).

The config file is TOML, at ``$COMPUTE_WORKER_CONFIG`` or else
``$XDG_CONFIG_HOME/compute-worker/config.toml`` (``~/.config/compute-worker/config.toml``);
each table is a profile, ``default`` unless ``--profile`` / ``COMPUTE_WORKER_PROFILE``
names another::

    [default]
    url = "http://127.0.0.1:8080"
    api_key = "…"

    [staging]
    url = "https://cw.staging.example"
    api_key_file = "~/.secrets/cw-staging"   # or the key itself, as api_key
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click

from compute_worker.adapters.client.config import DEFAULT_URL, KEY_ENV, URL_ENV

CONFIG_ENV = "COMPUTE_WORKER_CONFIG"
PROFILE_ENV = "COMPUTE_WORKER_PROFILE"
DEFAULT_PROFILE = "default"
PROFILE_FIELDS = frozenset({"url", "api_key", "api_key_file"})


@dataclass(frozen=True)
class Profile:
    url: str
    api_key: str | None
    name: str
    path: Path  # the config file it was read from (which may not exist)
    url_from: str  # which of flag, environment, profile, default gave the url

    def describe(self) -> str:
        return f"url from {self.url_from}; profile {self.name!r} of {self.path}"


def config_path() -> Path:
    given = os.environ.get(CONFIG_ENV)
    if given:
        return Path(given).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "compute-worker" / "config.toml"


def load_profile(name: str | None, url: str | None, api_key: str | None) -> Profile:
    """The connection of a command: ``url`` and ``api_key`` are its flags. A bad config
    file, or a profile asked for by name that it does not hold, is a usage error."""
    path = config_path()
    chosen = name or os.environ.get(PROFILE_ENV) or DEFAULT_PROFILE
    entries = _profile_entries(path, chosen, required=bool(name or os.environ.get(PROFILE_ENV)))
    found_url, url_from = _first(
        (url, "--url"),
        (os.environ.get(URL_ENV), URL_ENV),
        (entries.get("url"), f"profile {chosen!r}"),
        (DEFAULT_URL, "the default"),
    )
    parts = urlsplit(found_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise click.UsageError(
            f"the server URL {found_url!r} (from {url_from}) is not an http:// or https:// URL, "
            f"e.g. {DEFAULT_URL}"
        )
    key = api_key or os.environ.get(KEY_ENV) or _profile_key(entries, chosen, path)
    return Profile(found_url, key or None, chosen, path, url_from)


def _first(*candidates: tuple[str | None, str]) -> tuple[str, str]:
    return next((value, origin) for value, origin in candidates if value)


def _profile_entries(path: Path, name: str, *, required: bool) -> dict[str, Any]:
    if not path.is_file():
        if required:
            raise click.UsageError(f"no config file at {path} to read the profile {name!r} from")
        return {}
    try:
        tables = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise click.UsageError(f"cannot read the config file {path}: {error}") from None
    entries = tables.get(name)
    if entries is None:
        if required:
            names = ", ".join(sorted(tables)) or "none"
            raise click.UsageError(f"{path} has no profile {name!r} (its profiles: {names})")
        return {}
    unknown = set(entries) - PROFILE_FIELDS if isinstance(entries, dict) else None
    if unknown is None or unknown or not all(isinstance(v, str) for v in entries.values()):
        raise click.UsageError(
            f"profile {name!r} of {path}: expected a table of the strings "
            f"{', '.join(sorted(PROFILE_FIELDS))}"
        )
    return dict(entries)


def _profile_key(entries: dict[str, Any], name: str, path: Path) -> str | None:
    if entries.get("api_key"):
        return str(entries["api_key"])
    if not entries.get("api_key_file"):
        return None
    key_file = Path(str(entries["api_key_file"])).expanduser()
    try:
        return key_file.read_text().strip() or None
    except OSError as error:
        raise click.UsageError(
            f"profile {name!r} of {path}: cannot read api_key_file {key_file}: {error.strerror}"
        ) from None
