"""API keys: secrets generated with 256 bits of entropy, stored as SHA-256 hashes; the
scopes a key may hold and the check that it holds a route's.

A fast hash is enough here: the secrets are random, not passwords, so there is
nothing to brute-force. Keys are looked up by that hash, so the secret itself is
never compared: what a lookup's timing could reveal is about the hash, which says
nothing about the secret.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable

from compute_worker.domain import errors
from compute_worker.domain.ports.security import ApiKey

SECRET_PREFIX = "cwk_"


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


PUBLIC_SCOPES = frozenset(
    {"trigger:write", "runs:read", "runs:write", "deploy:read", "deploy:write"}
)
WORLD_SCOPE = "world:proxy"
ADMIN_SCOPE = "admin"
ALL_SCOPES = PUBLIC_SCOPES | {WORLD_SCOPE, ADMIN_SCOPE}
KEYS_TOPIC = "api-keys"  # notified when a stored key changes (revoked, deleted, re-seeded)


def check_scopes(scopes: Iterable[str]) -> frozenset[str]:
    """Known scopes, at least one; ``InvalidRequest`` otherwise."""
    wanted = frozenset(scopes)
    unknown = sorted(wanted - ALL_SCOPES)
    if unknown or not wanted:
        raise errors.InvalidRequest(
            f"unknown or missing scopes: {', '.join(unknown) or '(none)'}; "
            f"known: {', '.join(sorted(ALL_SCOPES))}",
            {"field": "scopes"},
        )
    return wanted


def authorize(key: ApiKey, required_scope: str) -> None:
    """``Forbidden`` unless ``key`` holds ``required_scope``."""
    if required_scope not in key.scopes:
        raise errors.Forbidden(
            f"This API key lacks the scope {required_scope}",
            {"requiredScope": required_scope},
        )
