"""Password hashing: argon2id with OWASP's parameters; older scrypt hashes still verify.

Hashes are self-describing (``$argon2id$v=19$m=...`` or ``scrypt$n$r$p$salt$hash``).
``verify_password`` accepts both; ``needs_rehash`` tells a successful login to replace a scrypt
hash (or an argon2 hash with weaker parameters) with a fresh argon2id one.

``dummy_verify`` burns the same work as a real verification: login calls it for an unknown user
so the answer time does not reveal whether the account exists.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

# OWASP Password Storage Cheat Sheet: argon2id, 19 MiB of memory, 2 iterations, 1 lane.
ARGON2_MEMORY_KIB = 19 * 1024
ARGON2_TIME_COST = 2
ARGON2_PARALLELISM = 1

_HASHER = PasswordHasher(
    time_cost=ARGON2_TIME_COST,
    memory_cost=ARGON2_MEMORY_KIB,
    parallelism=ARGON2_PARALLELISM,
    hash_len=32,
    salt_len=16,
    type=Type.ID,
)
# Legacy scrypt hashes (written before argon2 was a dependency) may use at most this much memory.
_SCRYPT_MAXMEM = 64 * 1024 * 1024

_dummy_lock = threading.Lock()
_dummy_hash: str | None = None


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str) -> str:
    """A salted argon2id hash of ``password`` for ``users.password_hash``."""
    return _HASHER.hash(password)


def _verify_scrypt(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = _unb64(digest)
        actual = hashlib.scrypt(
            password.encode(),
            salt=_unb64(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
            maxmem=_SCRYPT_MAXMEM,
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches ``stored``; False (never an exception) for malformed hashes."""
    if stored.startswith("$argon2"):
        try:
            return _HASHER.verify(stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
    return _verify_scrypt(password, stored)


def needs_rehash(stored: str) -> bool:
    """True when ``stored`` is not argon2id with the current parameters."""
    if not stored.startswith("$argon2id$"):
        return True
    try:
        return _HASHER.check_needs_rehash(stored)
    except InvalidHashError:
        return True


def dummy_verify(password: str) -> None:
    """Verify ``password`` against a fixed hash and discard the answer (constant-time login)."""
    global _dummy_hash
    if _dummy_hash is None:
        with _dummy_lock:
            if _dummy_hash is None:
                _dummy_hash = hash_password("logflow-dummy-password-for-timing")
    verify_password(password, _dummy_hash)
