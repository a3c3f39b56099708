"""``HkdfRunKeyDeriver`` (decision D10): HKDF-SHA256 over an installation secret.

The secret is 32 random bytes, configured or generated once into the data
directory (mode 0600). Same run → same key, in any process, after any restart.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from compute_worker.domain.ports.security import PayloadCipher, RunKeyDeriver

SECRET_BYTES = 32


class HkdfRunKeyDeriver(RunKeyDeriver):
    def __init__(self, secret: bytes | None) -> None:
        if secret is not None and len(secret) < SECRET_BYTES:
            raise ValueError(f"the encryption secret needs at least {SECRET_BYTES} bytes")
        self._secret = secret

    def derive(self, deployment_id: str, run_id: str) -> bytes | None:
        if self._secret is None:
            return None
        hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=bytes(32),
                    info=f"{deployment_id}|{run_id}".encode())  # fmt: skip
        return hkdf.derive(self._secret)


class AesGcmPayloads(PayloadCipher):
    """Reads what a WDK runtime encrypted with a run's key (``@workflow/core``
    ``encryption.js``: a 12-byte nonce, then AES-256-GCM ciphertext with its tag)."""

    NONCE_BYTES = 12

    def decrypt(self, key: bytes, data: bytes) -> bytes:
        if len(data) <= self.NONCE_BYTES:
            raise ValueError("too short for AES-GCM")
        try:
            return AESGCM(key).decrypt(data[: self.NONCE_BYTES], data[self.NONCE_BYTES :], None)
        except InvalidTag:
            raise ValueError("the payload does not authenticate with this key") from None


def load_or_create_secret(path: Path) -> bytes:
    """Read the installation secret (base64), creating it atomically on first use."""
    try:
        return base64.b64decode(path.read_text().strip(), validate=True)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, base64.b64encode(os.urandom(SECRET_BYTES)) + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(temporary, path)  # fails if another process won the race: use theirs
    except FileExistsError:
        pass
    finally:
        temporary.unlink()
    return base64.b64decode(path.read_text().strip(), validate=True)
