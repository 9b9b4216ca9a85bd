"""POST batches to LogFlow's native ``/api/v1/ingest`` as gzip NDJSON and classify the answer."""

from __future__ import annotations

import gzip
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import orjson

from logflow import __version__


class RetryLater(Exception):
    """LogFlow is unreachable or asked to come back later (connection error, timeout, 5xx, 429)."""

    def __init__(self, reason: str, retry_after_s: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after_s = retry_after_s


class Unsendable(Exception):
    """Retrying cannot help (bad credentials, wrong URL): the shipper stops without checkpointing."""


class TooLarge(Exception):
    """The whole request was refused as too large: send it in smaller pieces."""


@dataclass(frozen=True, slots=True)
class ItemResult:
    """LogFlow's final word on one item: accepted, or rejected with a code and reason."""

    accepted: bool
    code: int | None = None
    error: str | None = None


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def encode(items: list[dict[str, Any]]) -> bytes:
    """NDJSON, gzip-compressed (fast level: the shipper runs next to the application)."""
    return gzip.compress(b"".join(orjson.dumps(item) + b"\n" for item in items), compresslevel=5)


class Sender:
    """One HTTP client to LogFlow; ``send`` returns per-item results or raises RetryLater/Unsendable/TooLarge."""

    def __init__(self, target: str, api_key: str | None = None, *, timeout_s: float = 30.0) -> None:
        headers = {
            "Content-Type": "application/x-ndjson",
            "Content-Encoding": "gzip",
            "User-Agent": f"logflow-ship/{__version__}",
        }
        if api_key:
            headers["X-API-Key"] = api_key
        self.url = target.rstrip("/") + "/api/v1/ingest"
        self.client = httpx.Client(headers=headers, timeout=timeout_s)

    def send(self, items: list[dict[str, Any]]) -> list[ItemResult]:
        body = encode(items)
        try:
            response = self.client.post(self.url, content=body)
        except httpx.HTTPError as exc:  # refused, reset, timed out: the classic "LogFlow is down"
            raise RetryLater(f"{type(exc).__name__}: {exc}") from None
        status = response.status_code
        if status == 429 or status >= 500:
            raise RetryLater(f"HTTP {status}: {response.text[:200]}", _retry_after(response))
        if status in (401, 403):
            raise Unsendable(f"HTTP {status} from {self.url}: {response.text[:200]} (check --api-key)")
        try:
            doc = response.json()
        except ValueError:
            doc = None
        if isinstance(doc, dict) and isinstance(doc.get("results"), list):
            results = doc["results"]
            if len(results) != len(items):
                raise Unsendable(f"LogFlow answered {len(results)} results for {len(items)} events")
            return [
                ItemResult(accepted=r.get("status") == "accepted", code=r.get("code"), error=r.get("error"))
                for r in results
            ]
        if status == 413:
            raise TooLarge(str(doc.get("detail") if isinstance(doc, dict) else response.text[:200]))
        if status == 404:
            raise Unsendable(f"HTTP 404 from {self.url}: is --target a LogFlow API?")
        if 200 <= status < 300:
            raise Unsendable(f"unexpected answer from {self.url}: HTTP {status} {response.text[:200]}")
        # A whole-body 4xx (400, 415): final for every item of this batch.
        reason = doc.get("detail") if isinstance(doc, dict) else response.text[:200]
        return [ItemResult(accepted=False, code=status, error=str(reason))] * len(items)

    def close(self) -> None:
        self.client.close()
