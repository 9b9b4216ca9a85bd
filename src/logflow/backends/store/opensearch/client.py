"""A thin JSON-over-HTTP client for the REST API that OpenSearch 2.x and Elasticsearch 8 share.

Plain httpx: no product check, no client library, one code path for both engines. Engine
failures become LogFlow's backend errors here, so nothing above this module sees httpx.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
import orjson

from logflow.backends.errors import BackendError, BackendUnavailable

# store_url scheme -> HTTP scheme. opensearch:// and elasticsearch:// name the engine, not TLS.
_SCHEMES = {"opensearch": "http", "elasticsearch": "http", "http": "http", "https": "https"}
_REASON_CHARS = 500


class ApiError(BackendError):
    """The engine refused a request for good (4xx other than 429): retrying the same call cannot help."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"HTTP {status}: {reason}")
        self.status = status
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where the engine listens and how to authenticate (basic auth from the URL's user:pass)."""

    base_url: str
    auth: tuple[str, str] | None = field(default=None, repr=False)  # never print the password

    @property
    def display(self) -> str:
        """The URL without credentials, for messages and logs."""
        return self.base_url


def parse_store_url(url: str) -> Endpoint:
    """``opensearch://h:p`` and ``elasticsearch://h:p`` mean http; ``http(s)://[user:pass@]h:p`` as is."""
    parts = urlsplit(url)
    scheme = _SCHEMES.get(parts.scheme)
    if scheme is None:
        raise ValueError(f"not an OpenSearch/Elasticsearch URL: {url!r} (schemes: {', '.join(_SCHEMES)})")
    host = parts.hostname or "127.0.0.1"
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    port = parts.port or 9200
    path = parts.path.rstrip("/")  # a path prefix, for an engine behind a reverse proxy
    auth = (unquote(parts.username), unquote(parts.password or "")) if parts.username else None
    return Endpoint(base_url=f"{scheme}://{host}:{port}{path}", auth=auth)


def error_reason(body: Any) -> str:
    """The engine's own explanation from an error body (``error.type: error.reason``)."""
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            root = error.get("root_cause")
            if isinstance(root, list) and root and isinstance(root[0], dict) and root[0].get("reason"):
                error = root[0]
            return f"{error.get('type', 'error')}: {error.get('reason', '')}"[:_REASON_CHARS]
        if error is not None:
            return str(error)[:_REASON_CHARS]
    return str(body)[:_REASON_CHARS]


class RestClient:
    """JSON requests, errors mapped: unreachable, 429, 5xx -> BackendUnavailable; other 4xx -> ApiError."""

    def __init__(self, endpoint: Endpoint, *, timeout_s: float = 30.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.endpoint = endpoint
        self._http = httpx.Client(
            base_url=endpoint.base_url,
            auth=endpoint.auth,
            timeout=httpx.Timeout(timeout_s, connect=min(5.0, timeout_s)),
            transport=transport,
        )

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: dict[str, str] | None = None,
        ndjson: bytes | None = None,
        allow: tuple[int, ...] = (),
        timeout_s: float | None = None,
        decode: bool = True,
    ) -> Any:
        """Send one request and return the decoded JSON answer (its bytes with ``decode=False``).

        ``allow`` lists error statuses the caller handles itself (their body is returned).
        """
        headers = {"accept": "application/json"}
        content: bytes | None = None
        if ndjson is not None:
            content, headers["content-type"] = ndjson, "application/x-ndjson"
        elif body is not None:
            content, headers["content-type"] = orjson.dumps(body), "application/json"
        timeout = httpx.USE_CLIENT_DEFAULT if timeout_s is None else httpx.Timeout(timeout_s)
        try:
            response = self._http.request(method, path, content=content, params=params, headers=headers,
                                          timeout=timeout)
        except httpx.HTTPError as exc:
            reason = f"{type(exc).__name__}: {exc}"
            raise BackendUnavailable(f"{self.endpoint.display} unreachable: {reason}") from exc
        status = response.status_code
        if not decode and (status < 300 or status in allow):
            return response.content
        try:
            data: Any = orjson.loads(response.content) if response.content else {}
        except orjson.JSONDecodeError:
            data = response.text
        if status < 300 or status in allow:
            return data
        if status == 429 or status >= 500:
            raise BackendUnavailable(f"{self.endpoint.display} answered {status}: {error_reason(data)}")
        raise ApiError(status, error_reason(data))

    def close(self) -> None:
        self._http.close()
