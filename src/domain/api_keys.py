"""API key secrets: generated with 256 bits of entropy, stored as SHA-256 hashes.

A fast hash is enough here: the secrets are random, not passwords, so there is
nothing to brute-force. Keys are looked up by that hash, so the secret itself is
never compared: what a lookup's timing could reveal is about the hash, which says
nothing about the secret.
"""

from __future__ import annotations

import hashlib
import secrets

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
