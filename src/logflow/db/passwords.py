"""Password hashing: argon2id when ``argon2-cffi`` is installed, else the standard library's scrypt.

Hashes are self-describing (``$argon2id$...`` or ``scrypt$n$r$p$salt$hash``), so ``verify_password``
accepts both whatever is installed now; ``needs_rehash`` tells a login to upgrade an old hash.
The auth work may replace this module; keep the two functions' contracts.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import importlib
import secrets
from typing import Any

# scrypt: N=2**15, r=8, p=3 — one of OWASP's equivalent minimums (32 MiB per hash, ~0.15 s here).
_N, _R, _P, _DKLEN = 2**15, 8, 3, 32
_MAXMEM = 64 * 1024 * 1024


def _argon2() -> Any | None:
    try:
        module = importlib.import_module("argon2")
    except ImportError:
        return None
    return module.PasswordHasher()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, dklen: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=dklen, maxmem=_MAXMEM)


def hash_password(password: str) -> str:
    """A salted hash of ``password`` for storage in ``users.password_hash``."""
    hasher = _argon2()
    if hasher is not None:
        return str(hasher.hash(password))
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, _N, _R, _P, _DKLEN)
    return f"scrypt${_N}${_R}${_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches ``stored``; False (never an exception) for malformed hashes."""
    if stored.startswith("$argon2"):
        hasher = _argon2()
        if hasher is None:
            return False
        try:
            return bool(hasher.verify(stored, password))
        except Exception:  # argon2's VerifyMismatchError / InvalidHashError
            return False
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = _unb64(digest)
        actual = _scrypt(password, _unb64(salt), int(n), int(r), int(p), len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def needs_rehash(stored: str) -> bool:
    """True when ``stored`` uses weaker parameters or another scheme than ``hash_password`` would."""
    hasher = _argon2()
    if hasher is not None:
        return not stored.startswith("$argon2") or bool(hasher.check_needs_rehash(stored))
    return not stored.startswith(f"scrypt${_N}${_R}${_P}$")
