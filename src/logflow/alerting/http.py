"""One guarded HTTP POST: SSRF check, connection pinned to the checked address, manual redirects.

httpx would resolve the host again at connect time, so a hostile DNS server could answer
"public" to the guard and "127.0.0.1" to the connection (DNS rebinding). Instead the request
goes to the checked IP itself, with the original ``Host`` header and (for https) the original
name as TLS SNI and certificate hostname, so the certificate is still verified for the name the
user wrote. Redirects are never followed by httpx: each ``Location`` is checked like a new URL.
Proxy variables from the environment are ignored (``trust_env=False``): a proxy would make the
pinning meaningless.
"""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

from logflow.alerting.ssrf import Allowlist, Target, UnsafeURL, check_url

MAX_REDIRECTS = 3
REDIRECT_CODES = (301, 302, 303, 307, 308)
MAX_RESPONSE_PREVIEW = 300


@dataclass(frozen=True, slots=True)
class HttpResult:
    """What the final hop answered (after redirects)."""

    status_code: int
    url: str
    body_preview: str
    retry_after_s: float | None = None


def _pinned_url(target: Target, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    parts = urlsplit(target.url)
    host = f"[{address}]" if address.version == 6 else str(address)
    return urlunsplit((target.scheme, f"{host}:{target.port}", parts.path or "/", parts.query, ""))


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: ignore, the exponential backoff applies


def _one_hop(client: httpx.Client, target: Target, body: bytes, headers: dict[str, str],
             timeout: float) -> httpx.Response:
    """POST to the first reachable checked address of ``target``."""
    last_error: httpx.TransportError | None = None
    for address in target.addresses:
        request_headers = {**headers, "Host": target.host_header}
        extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
        try:
            return client.post(_pinned_url(target, address), content=body, headers=request_headers,
                               timeout=timeout, extensions=extensions)
        except httpx.ConnectError as exc:  # try the next address the name resolved to
            last_error = exc
    assert last_error is not None
    raise last_error


def post_json(url: str, body: bytes, headers: dict[str, str], *, allow: Allowlist, timeout: float,
              tls: ssl.SSLContext | None = None) -> HttpResult:
    """POST ``body`` to ``url``; UnsafeURL when the URL or any redirect is refused.

    Transport errors (connect, timeout) propagate as ``httpx.HTTPError``; HTTP error statuses
    are returned, not raised, so the caller decides what is worth retrying.
    """
    current = url
    # ``tls`` adds a private CA; certificates are always verified, for the name in the URL.
    with httpx.Client(trust_env=False, follow_redirects=False, verify=tls or True) as client:
        for _hop in range(MAX_REDIRECTS + 1):
            target = check_url(current, allow)
            response = _one_hop(client, target, body, headers, timeout)
            location = response.headers.get("location")
            if response.status_code in REDIRECT_CODES and location:
                # Webhooks re-POST the same body on every redirect kind: the point is delivery.
                current = urljoin(current, location)
                continue
            preview = response.text[:MAX_RESPONSE_PREVIEW]
            return HttpResult(response.status_code, current, preview, _retry_after(response))
    raise UnsafeURL(f"more than {MAX_REDIRECTS} redirects, last to {current}")
