"""SSRF guard for webhook and Slack targets: which URLs LogFlow may send a request to.

A rule's URL is user input that the server will POST to, so an attacker who can create a rule
could otherwise reach the cloud metadata service (169.254.169.254), the database on localhost
or anything on the private network. The guard is applied when a rule is saved, before every
send and before following every redirect:

* only ``http``/``https``, no credentials in the URL;
* the host must be a DNS name or a canonical IP literal: numeric spellings that resolvers accept
  but people do not read as addresses (``2130706433``, ``0x7f.1``, ``0177.0.0.1``, ``127.1``)
  are refused outright;
* the name is resolved and *every* address must be public — one private answer is enough to
  refuse, so a name with mixed records cannot be used to sneak in;
* IPv6 forms that embed an IPv4 address (mapped ``::ffff:a.b.c.d``, compatible, 6to4, NAT64,
  Teredo) are judged by the embedded address too;
* ``LOGFLOW_WEBHOOK_ALLOWED_HOSTS`` (host names or CIDRs) opens specific targets.

The checked addresses are returned so that the sender connects to exactly those (see
``alerting.http``): a second, different DNS answer at connect time (DNS rebinding) is not used.
"""

from __future__ import annotations

import ipaddress
import socket
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

SCHEMES = ("http", "https")
DEFAULT_PORTS = {"http": 80, "https": 443}
RESOLVE_TIMEOUT_S = 5.0
# getaddrinfo cannot be interrupted; a small shared pool bounds how many lookups may hang.
_resolver_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="logflow-resolve")
# Well-known prefixes whose addresses carry an IPv4 address in their last 32 bits.
_NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))


class UnsafeURL(ValueError):
    """The URL must not be requested; the message says why (safe to show to the rule's author)."""


class Unresolvable(UnsafeURL):
    """The host name did not resolve (now). At save time this is tolerated, at send time not."""


@dataclass(frozen=True, slots=True)
class Allowlist:
    """Targets the operator opened explicitly: exact host names and address ranges."""

    hosts: frozenset[str] = frozenset()
    networks: tuple[IPNetwork, ...] = ()

    def allows_host(self, host: str) -> bool:
        return host in self.hosts

    def allows_address(self, address: IPAddress) -> bool:
        return any(address.version == net.version and address in net for net in self.networks)


@dataclass(frozen=True, slots=True)
class Target:
    """A checked URL: where to connect (``addresses``, in resolver order) and what to ask for."""

    url: str
    scheme: str
    host: str  # lower-case, IDNA-encoded, without brackets
    port: int
    addresses: tuple[IPAddress, ...]

    @property
    def host_header(self) -> str:
        shown = f"[{self.host}]" if ":" in self.host else self.host
        return shown if self.port == DEFAULT_PORTS[self.scheme] else f"{shown}:{self.port}"


def parse_allowlist(raw: str) -> Allowlist:
    """``"hooks.example.com, 10.1.2.0/24, 127.0.0.1"`` → Allowlist; ValueError names a bad entry."""
    hosts: set[str] = set()
    networks: list[IPNetwork] = []
    for entry in (part.strip() for part in raw.split(",")):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            continue
        except ValueError:
            pass
        name = entry.lower().rstrip(".")
        if not name or any(ch in name for ch in "/:@ ") or _numeric_ipv4(name) is not None:
            raise ValueError(f"webhook allowlist entry {entry!r} is neither a host name nor an IP/CIDR")
        hosts.add(_idna(name))
    return Allowlist(frozenset(hosts), tuple(networks))


def _idna(host: str) -> str:
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        raise UnsafeURL(f"host {host!r} is not a valid domain name") from None


def _numeric_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """How ``inet_aton`` would read ``host`` (1-4 parts, decimal/octal/hex), or None if not numeric.

    Resolvers accept ``2130706433``, ``0x7f000001``, ``0177.0.0.1`` and ``127.1`` as 127.0.0.1;
    recognising them here means they can be refused instead of resolved.
    """
    parts = host.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    values: list[int] = []
    for part in parts:
        try:
            if part[:2] in ("0x", "0X"):
                values.append(int(part[2:] or "0", 16))
            elif len(part) > 1 and part.startswith("0"):
                values.append(int(part, 8))
            else:
                if not part.isdigit():
                    return None
                values.append(int(part))
        except ValueError:
            return None
    *head, last = values
    if any(v > 255 for v in head) or last >= 256 ** (5 - len(values)):
        return None
    number = 0
    for v in head:
        number = number << 8 | v
    number = number << 8 * (5 - len(values)) | last
    return ipaddress.IPv4Address(number)


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for, if it is one of the embedding forms."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]  # (server, client): the client is where packets end up
    if any(address in net for net in _NAT64):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    packed = int(address)
    if packed >> 32 == 0 and packed > 1:  # deprecated IPv4-compatible ::a.b.c.d
        return ipaddress.IPv4Address(packed)
    return None


def forbidden_reason(address: IPAddress) -> str | None:
    """Why ``address`` is not a public unicast address, or None when it is."""
    if isinstance(address, ipaddress.IPv6Address):
        inner = embedded_ipv4(address)
        if inner is not None:
            reason = forbidden_reason(inner)
            return f"{reason} (embedded in {address})" if reason else None
    checks = (
        (address.is_loopback, "loopback"),
        (address.is_link_local, "link-local"),
        (address.is_multicast, "multicast"),
        (address.is_unspecified, "unspecified"),
        (isinstance(address, ipaddress.IPv4Address) and address in _CGNAT, "shared (CGNAT)"),
        (isinstance(address, ipaddress.IPv6Address) and address.is_site_local, "site-local"),
        (address.is_private, "private"),
        (address.is_reserved, "reserved"),
        (not address.is_global, "not globally routable"),
    )
    for hit, label in checks:
        if hit:
            return f"{label} address {address}"
    return None


_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")


def _resolve(host: str, port: int) -> tuple[IPAddress, ...]:
    def lookup() -> list[tuple[object, ...]]:
        return list(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))

    try:
        infos = _resolver_pool.submit(lookup).result(timeout=RESOLVE_TIMEOUT_S)
    except FutureTimeout:
        raise Unresolvable(f"host {host!r} did not resolve within {RESOLVE_TIMEOUT_S:g}s") from None
    except (OSError, UnicodeError, ValueError) as exc:  # gaierror is an OSError
        raise Unresolvable(f"host {host!r} does not resolve: {exc}") from None
    found: list[IPAddress] = []
    for info in infos:
        sockaddr = info[4]
        assert isinstance(sockaddr, tuple)
        # Strip an IPv6 zone ("fe80::1%eth0"): the address itself decides.
        addr = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if addr not in found:
            found.append(addr)
    if not found:
        raise Unresolvable(f"host {host!r} has no addresses")
    return tuple(found)


def split_url(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an http(s) URL; UnsafeURL for anything else."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise UnsafeURL(f"invalid URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise UnsafeURL(f"only http and https URLs are allowed, got {scheme or 'no scheme'!r}")
    if parts.username is not None or parts.password is not None:
        raise UnsafeURL("credentials in the URL are not allowed; use notification_config.headers")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise UnsafeURL("the URL has no host")
    if any(ch.isspace() or not ch.isprintable() or ch in "\\%" for ch in host):
        raise UnsafeURL(f"invalid host {host!r}")
    return scheme, host, port or DEFAULT_PORTS[scheme]


def check_url(url: str, allow: Allowlist, *, resolve: bool = True) -> Target:
    """The checked target of ``url``, or UnsafeURL saying why it is refused.

    ``resolve=False`` checks everything but the DNS answer (used nowhere on the send path).
    """
    scheme, host, port = split_url(url)
    literal: IPAddress | None
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is None:
        numeric = _numeric_ipv4(host)
        if numeric is not None:
            raise UnsafeURL(f"host {host!r} is a non-canonical spelling of {numeric}; refused")
        host = _idna(host.lower())
    if literal is not None:
        addresses: tuple[IPAddress, ...] = (literal,)
    elif not resolve:
        return Target(url, scheme, host, port, ())
    else:
        addresses = _resolve(host, port)
    if not allow.allows_host(host):
        for address in addresses:
            if allow.allows_address(address):
                continue
            reason = forbidden_reason(address)
            if reason is not None:
                raise UnsafeURL(f"{host} resolves to a {reason}; refused "
                                "(LOGFLOW_WEBHOOK_ALLOWED_HOSTS can open it)")
    return Target(url, scheme, str(literal) if literal is not None else host, port, addresses)
