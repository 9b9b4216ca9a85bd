"""The JWT signing secret: configured, or generated once and kept in the data directory.

A missing or weak ``SECRET_KEY`` is replaced by a random one persisted (mode 0600) as
``<data_dir>/secret_key`` in development, so tokens survive restarts; production refuses to
start instead, because a generated key would differ between API replicas and hosts.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
import time
from pathlib import Path

from logflow.auth.errors import StartupRefused
from logflow.settings import Settings

log = logging.getLogger("logflow.auth")

SECRET_FILE = "secret_key"
MIN_SECRET_CHARS = 32
# Placeholders from the seed's docs and common templates: as good as no secret.
KNOWN_PLACEHOLDERS = frozenset(
    {
        "your-secret-key-change-in-production",
        "your-secret-key",
        "change-me",
        "changeme",
        "secret",
        "secret-key",
        "supersecret",
        "logflow",
        "development",
        "dev",
    }
)


def secret_problem(secret: str) -> str | None:
    """Why ``secret`` is unfit for signing tokens, or None when it is fine."""
    if not secret:
        return "is not set"
    if secret.lower() in KNOWN_PLACEHOLDERS:
        return "is a published placeholder"
    if len(secret) < MIN_SECRET_CHARS:
        return f"is shorter than {MIN_SECRET_CHARS} characters"
    if len(set(secret)) < 8:
        return "has too little variety to be random"
    return None


def _read_or_create(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # O_EXCL: when several processes start at once exactly one creates the key, the rest read it.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        if stat.S_IMODE(path.stat().st_mode) & 0o077:
            path.chmod(0o600)  # someone loosened it; a readable key lets anyone mint admin tokens
            log.warning("%s was readable by others; permissions reset to 0600", path)
        for _ in range(50):  # the creator may not have written it yet
            text = path.read_text().strip()
            if text:
                return text
            time.sleep(0.02)
        raise StartupRefused(f"{path} is empty: delete it and restart to generate a new key") from None
    key = secrets.token_hex(32)
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    log.warning("generated a JWT signing key in %s (set LOGFLOW_SECRET_KEY to manage it yourself)", path)
    return key


def resolve_secret_key(settings: Settings) -> str:
    """The signing secret to use; raises StartupRefused in production when it is missing or weak."""
    given = settings.secret_key.get_secret_value()
    problem = secret_problem(given)
    if problem is None:
        return given
    if settings.env == "production":
        raise StartupRefused(
            f"LOGFLOW_SECRET_KEY {problem}: production needs a random secret of at least "
            f"{MIN_SECRET_CHARS} characters, e.g. `openssl rand -hex 32`"
        )
    if given:
        log.warning("SECRET_KEY %s; using the generated key in the data directory instead", problem)
    return _read_or_create(settings.data_dir / SECRET_FILE)
