"""Errors raised by the auth layer; the API maps them to 401/403/404/409/422/429."""

from __future__ import annotations


class StartupRefused(Exception):
    """LogFlow must not start with this configuration; the message says what to fix."""


class AuthError(Exception):
    """A request-level failure with the HTTP status it maps to."""

    def __init__(self, status: int, detail: str, *, retry_after: int | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.retry_after = retry_after


class TokenError(Exception):
    """A token is malformed, forged, expired, revoked or of the wrong kind (always a 401)."""
