"""Realistic synthetic logs for ``logflow generate``, ``logflow serve --demo`` and ``logflow bench``.

Simulated requests enter through ``api-gateway`` and flow through the services of their route;
all lines of one request share ``trace_id`` and ``request_id`` (plus one ``span_id`` per hop) and
several requests are in flight at once, so their lines interleave. Background lines (health
checks, GC, pool stats) carry no request context; ~5% of levels are shipper aliases ("warning",
"err", "Info"). Incidents (``error_spike``, ``latency_storm``) change one service for
``duration_events`` generated events. Built for volume: templates are parsed once at import, all
randomness comes from one seeded ``random.Random`` (with wall-clock timestamps only ``timestamp``
varies between seeded runs) and timestamps are formatted from a cached per-second prefix.
"""

from __future__ import annotations

import random
import string
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import orjson

DEFAULT_SERVICES: tuple[str, ...] = (
    "api-gateway", "auth-service", "payment-service", "order-service",
    "inventory-service", "user-service", "notification-service", "search-service",
)
INCIDENT_KINDS: tuple[str, ...] = ("error_spike", "latency_storm")


@dataclass
class GeneratorConfig:
    """How to generate. ``incident_probability`` is per :meth:`LogGenerator.batch` call.

    With ``start_us`` set, the n-th event is stamped ``start_us + n * 1e6 / rate``. Otherwise a
    batch of n events is spread evenly up to the wall clock's now, from ``n / rate`` seconds ago or
    from the previous batch's last timestamp, whichever is later (never going backwards).
    """

    services: tuple[str, ...] = DEFAULT_SERVICES
    seed: int | None = None
    incident_probability: float = 0.002
    start_us: int | None = None
    rate: float = 100.0

    def __post_init__(self) -> None:
        if not self.services:
            raise ValueError("services must not be empty")
        if not 0.0 <= self.incident_probability <= 1.0:
            raise ValueError("incident_probability must be between 0 and 1")
        if not self.rate > 0:
            raise ValueError("rate must be positive")


TRACE, DEBUG, INFO, WARN, ERROR, CRITICAL = range(6)
_LEVEL_NAMES = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "CRITICAL")
_LEVEL_ALIASES: tuple[tuple[str, ...], ...] = (  # as shippers send them; all known to parse_level
    ("trace", "verbose", "Trace"), ("debug", "dbg", "Debug"), ("info", "information", "notice", "Info"),
    ("warning", "warn", "Warning", "WARNING"), ("err", "error", "Error", "severe"),
    ("fatal", "crit", "critical", "FATAL"),
)
_ALIAS_SHARE = 0.05
_BACKGROUND_SHARE = 0.15
_CONCURRENT_FLOWS = 8
_GATEWAY = "api-gateway"


def _table(weights: dict[int, int]) -> tuple[int, ...]:
    """A 1000-entry lookup table: ``table[int(random() * 1000)]`` draws a level by weight."""
    table = tuple(level for level, count in weights.items() for _ in range(count))
    assert len(table) == 1000
    return table


_NORMAL_LEVELS = _table({TRACE: 5, DEBUG: 100, INFO: 695, WARN: 120, ERROR: 70, CRITICAL: 10})
_SPIKE_LEVELS = _table({INFO: 80, WARN: 100, ERROR: 700, CRITICAL: 120})
_STATUS: tuple[tuple[int, ...], ...] = (  # gateway status by level (a 200 to a POST becomes 201)
    (200,), (200,), (200,) * 8 + (204, 304), (400, 401, 403, 404, 404, 409, 422, 429),
    (500, 502, 502, 504), (503,),
)

# Templates per step, "<level letter>|<format>". Fields are flow-scoped (set once per request,
# see ``_new_ctx``), event-scoped (drawn per line, see ``_EVENT_FIELDS``), or ``service``/``status``.
_TEMPLATES: dict[str, tuple[str, ...]] = {
    "trace": ("T|enter {func} args={n}", "T|exit {func} after {us}us"),
    "gw_in": (
        "D|routing {method} {path} to upstream {upstream} (route_id={hexid})",
        'I|incoming request {method} {path} from {client_ip} user_agent="{ua}"',
        "W|request from {client_ip} missing X-Request-ID header, generated {request_id}",
        "W|rate limit at {hi_pct}% for client {client_ip} on {method} {path}",
        "E|TLS handshake failed from {client_ip}: tls: client offered only unsupported versions",
        "C|listener 0.0.0.0:8443 accept queue overflow, dropped {n} connections",
    ),
    "gw_out": (
        "D|upstream {upstream} response headers received in {duration_ms}ms",
        "I|request completed: {method} {path} {status} in {duration_ms}ms",
        'I|{client_ip} - "{method} {path} HTTP/1.1" {status} {bytes} {duration_ms}ms',
        "W|client error: {method} {path} returned {status} in {duration_ms}ms",
        "W|request {request_id} completed with {status} after retry to {upstream}",
        "E|request failed: {method} {path} {status} upstream={upstream} in {duration_ms}ms",
        "E|upstream {upstream} connection reset by peer: {method} {path} -> {status}",
        "C|no healthy upstream hosts for {upstream}, returning {status} for {method} {path}",
    ),
    "auth-service": (
        "D|validating JWT for user {user_id}: kid={hexid} alg=RS256",
        "I|token validated for user {user_id} in {duration_ms}ms",
        "I|session {session} refreshed for user {user_id}, expires in 3600s",
        "W|token for user {user_id} expires in {n}s, refresh recommended",
        "W|failed login attempt {attempt}/5 for user {user_id} from {client_ip}",
        "E|token validation failed for user {user_id}: signature verification error (kid={hexid})",
        "E|LDAP bind to ldap-{shard}.corp.internal:636 failed: invalid credentials",
        "C|JWKS endpoint unreachable, cannot validate tokens: connect timeout after {timeout_ms}ms",
    ),
    "order-service": (
        "D|loaded cart for user {user_id}: {qty} items, subtotal {amount:.2f} {currency}",
        "I|order {order_id} created for user {user_id}: {qty} items, total {amount:.2f} {currency}",
        "I|order {order_id} status changed PENDING -> CONFIRMED",
        "W|order {order_id} retrying inventory reservation (attempt {attempt}/3)",
        "E|SQL timeout after {timeout_ms}ms: UPDATE orders SET status='CONFIRMED' WHERE id='{order_id}'",
        "E|KeyError: 'shipping_address' in create_order (orders/service.py:{line})",
        "C|database orders-db-{shard} is read-only, rejecting writes for order {order_id}",
    ),
    "inventory-service": (
        "D|stock lookup for {sku} in {warehouse}: {n} available",
        "I|reserved {qty} units of {sku} in {warehouse} for order {order_id}",
        "I|stock level for {sku} updated: {n} units remaining",
        "W|low stock for {sku} in {warehouse}: {attempt} units left",
        "E|reservation for {sku} failed: deadlock detected, transaction rolled back",
        "C|inventory sync with {warehouse} lost: replication lag {lag}s",
    ),
    "payment-service": (
        "D|tokenizing card for order {order_id} via {provider}",
        "I|payment authorized for order {order_id}: {amount:.2f} {currency} via {provider} ({duration_ms}ms)",
        "I|payment captured for order {order_id}: {amount:.2f} {currency} via {provider}",
        "W|payment for order {order_id} requires 3-D Secure challenge",
        "W|{provider} API latency {duration_ms}ms above SLO, switching to fallback region",
        "E|payment declined for order {order_id}: insufficient_funds code=card_declined via {provider}",
        "E|java.net.SocketTimeoutException: Read timed out at com.shop.payments.ProviderClient"
        ".charge(ProviderClient.java:{line})",
        "C|ledger write failed for order {order_id}: double-entry mismatch of {amount:.2f} {currency}",
    ),
    "user-service": (
        "D|cache hit for profile {user_id} (ttl {n}s)",
        "I|profile loaded for user {user_id} in {duration_ms}ms",
        "I|user {user_id} logged in from {client_ip} ({region})",
        "W|user {user_id} has unverified email, limiting features",
        "E|failed to load profile {user_id}: users-db-{shard} query timeout after {timeout_ms}ms",
        "C|user store unavailable: FATAL too many connections (max_connections=500)",
    ),
    "notification-service": (
        "D|rendering template order_confirmation locale=en-US for {user_id}",
        "I|{channel} notification queued for user {user_id} (order {order_id})",
        "I|{channel} notification delivered to user {user_id} in {duration_ms}ms",
        "W|{channel} provider throttling: retry in {n}s (attempt {attempt}/3)",
        "E|failed to send {channel} to user {user_id}: 550 mailbox unavailable",
        "C|queue notifications.outbound backlog {lag} messages, dropping oldest",
    ),
    "search-service": (
        'D|parsed query "{query}" into {attempt} terms, using index products-v{shard}',
        'I|search "{query}" returned {hits} hits in {duration_ms}ms',
        'I|autocomplete for "{query}" served from cache in {us}us',
        'W|search "{query}" was slow: {duration_ms}ms across {shard} shards',
        "E|shard products-v3[{shard}] failed: circuit_breaking_exception [parent] Data too large",
        "C|search cluster status RED: {shard} primary shards unassigned",
    ),
    "generic": (
        "D|handling {method} {path} (span {hexid})",
        "I|processed {method} {path} in {duration_ms}ms",
        "I|request {request_id} completed by {service} in {duration_ms}ms",
        "W|{service} retrying downstream call (attempt {attempt}/3) after {duration_ms}ms",
        "E|{service} failed to process {method} {path}: internal error id={hexid}",
        "C|{service} worker pool exhausted, rejecting requests",
    ),
    "background": (
        "D|cache stats: hits={n} misses={attempt} evictions=0 size={mb}MB",
        "D|config watcher: no changes in /etc/{service}/config.yaml",
        "I|health check passed: GET /healthz 200 in {us}us",
        "I|db connection pool stats: active={shard} idle={n} waiting=0",
        "I|consumer group {service}-consumers committed offset {bytes} on partition {shard}",
        "I|scheduled job cleanup_expired_sessions completed: removed {n} rows in {duration_ms}ms",
        "W|GC pause of {duration_ms}ms exceeded target 200ms (heap {hi_pct}% used)",
        "W|consumer lag on topic events.{service} is {lag} messages (threshold 10000)",
        "W|TLS certificate for {service}.internal expires in {attempt} days",
        "E|failed to flush metrics to statsd-{shard}.internal:8125: connection refused",
        "E|health check failed: redis-cache-{shard}.internal:6379 unreachable after {timeout_ms}ms",
        "C|out of memory: heap {hi_pct}% used, killing worker pid {pid}",
    ),
}
# Error-spike signatures (ERROR, CRITICAL) per service; "*" for any other service.
_SIGNATURES: dict[str, tuple[str, str]] = {
    "payment-service": ("payment provider timeout after 30000ms (provider={provider}, order {order_id})",
                        "payment provider {provider} unavailable: circuit breaker OPEN after {n} timeouts"),
    "order-service": ("database query timeout after 30000ms: SELECT * FROM orders WHERE id='{order_id}'",
                      "orders-db connection pool exhausted (50/50 in use), failing order {order_id}"),
    "auth-service": ("token signing key fetch failed: connection refused (vault.internal:8200)",
                     "auth-service cannot reach vault.internal:8200, all logins failing"),
    "inventory-service": ("stock reservation for {sku} failed: lock wait timeout exceeded",
                          "inventory-db replica lag {lag}s, reservations disabled"),
    "user-service": ("user store query timeout after 30000ms for {user_id}",
                     "user store unavailable: too many connections"),
    "notification-service": ("SMTP relay smtp.internal:587 rejected connection: 421 too many messages",
                             "notification delivery halted: SMTP relay unreachable"),
    "search-service": ("search failed: all shards failed (index products-v3)",
                       "search cluster unavailable: no master node elected"),
    _GATEWAY: ("upstream connection pool exhausted: {method} {path} rejected",
               "gateway worker crashed: segfault in lua filter, restarting"),
    "*": ("{service} dependency timeout after 30000ms", "{service} unavailable: dependency unreachable"),
}
_META: dict[str, tuple[str, ...]] = {
    "gw_in": ("method", "path", "client_ip"),
    "gw_out": ("method", "path", "status", "duration_ms", "client_ip"),
    "auth-service": ("user_id", "region"),
    "order-service": ("order_id", "user_id", "amount", "currency"),
    "inventory-service": ("sku", "qty", "warehouse"),
    "payment-service": ("order_id", "amount", "currency", "provider", "duration_ms"),
    "user-service": ("user_id", "region"),
    "notification-service": ("user_id", "channel"),
    "search-service": ("query", "hits", "duration_ms"),
    "generic": ("user_id", "region", "duration_ms"),
    "background": (),
}
_EVENT_FIELDS = frozenset({
    "duration_ms", "n", "attempt", "shard", "timeout_ms", "hexid", "func", "us", "hits", "line",
    "lag", "hi_pct", "mb", "bytes", "pid",
})
# (method, path, downstream services in call order, weight)
_ROUTES: tuple[tuple[str, str, tuple[str, ...], int], ...] = (
    ("POST", "/api/v1/orders",
     ("auth-service", "order-service", "inventory-service", "payment-service", "notification-service"), 3),
    ("GET", "/api/v1/orders/{order_id}", ("auth-service", "order-service"), 3),
    ("GET", "/api/v1/search", ("search-service", "inventory-service"), 5),
    ("GET", "/api/v1/products/{sku}", ("inventory-service",), 3),
    ("POST", "/api/v1/auth/login", ("auth-service", "user-service"), 2),
    ("GET", "/api/v1/users/{user_id}", ("auth-service", "user-service"), 2),
    ("POST", "/api/v1/orders/{order_id}/refund",
     ("auth-service", "payment-service", "order-service", "notification-service"), 1),
    ("PUT", "/api/v1/users/{user_id}/preferences",
     ("auth-service", "user-service", "notification-service"), 1),
)
_REGIONS = ("us-east-1", "us-east-1", "us-west-2", "eu-west-1", "eu-central-1", "ap-southeast-1")
_CURRENCIES = ("USD", "USD", "USD", "EUR", "EUR", "GBP", "JPY")
_PROVIDERS = ("stripe", "adyen", "braintree", "paypal")
_CHANNELS = ("email", "email", "sms", "push")
_WAREHOUSES = ("wh-iad-1", "wh-iad-2", "wh-fra-1", "wh-sin-1")
_TIMEOUTS = (1000, 2000, 5000, 10000, 30000)
_FUNCS = ("handle_request", "load_session", "serialize_response", "acquire_conn", "cache_get", "publish")
_QUERIES = ("wireless headphones", "running shoes", "usb-c cable", "coffee grinder", "4k monitor",
            "yoga mat", "mechanical keyboard", "phone case", "air fryer", "desk lamp", "backpack",
            "bluetooth speaker", "water bottle", "gaming mouse", "standing desk", "kindle")
_AGENTS = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64)", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4)",
           "okhttp/4.12.0", "python-requests/2.31.0", "curl/8.5.0", "ShopApp/5.2.1 (Android 14)")

_Template = tuple[str, tuple[str, ...]]  # (format, event-scoped fields to draw before formatting)
_FORMATTER = string.Formatter()
_ANY_META = ("duration_ms", "hits")


def _compile(fmt: str, meta: tuple[str, ...]) -> _Template:
    fields = [name for _, name, _, _ in _FORMATTER.parse(fmt) if name]
    return fmt, tuple(dict.fromkeys(f for f in (*fields, *meta) if f in _EVENT_FIELDS))


def _pools(step: str) -> tuple[tuple[_Template, ...], ...]:
    """Templates of ``step`` indexed by level (TRACE lines are shared by every step)."""
    by_level: list[list[_Template]] = [[] for _ in _LEVEL_NAMES]
    for spec in (*_TEMPLATES["trace"], *_TEMPLATES[step]):
        letter, fmt = spec.split("|", 1)
        by_level["TDIWEC".index(letter)].append(_compile(fmt, _META[step]))
    return tuple(tuple(pool) for pool in by_level)


_POOLS = {step: _pools(step) for step in _META}
_SIGNATURE_POOLS = {svc: tuple(_compile(fmt, _ANY_META) for fmt in pair) for svc, pair in _SIGNATURES.items()}
_SLOW_GW, _SLOW, _TIMEOUT_GW, _TIMEOUT, _UPSTREAM_FAILED = (_compile(fmt, _ANY_META) for fmt in (
    "slow response: {method} {path} took {duration_ms}ms (threshold 1000ms, upstream {upstream})",
    "slow response from {service}: {method} {path} took {duration_ms}ms (threshold 1000ms)",
    "upstream timeout: {method} {path} exceeded {duration_ms}ms, returning 504",
    "{service} operation timed out after {duration_ms}ms: {method} {path}",
    "upstream {upstream} returned {status}: {method} {path} failed after {duration_ms}ms",
))


@dataclass(slots=True)
class _Incident:
    kind: str
    service: str
    remaining: int


@dataclass(frozen=True, slots=True)
class _Route:
    method: str
    path: str
    steps: tuple[tuple[str, str], ...]  # (service, template step)


def _build_routes(services: tuple[str, ...]) -> tuple[_Route, ...]:
    """Routes restricted to the configured services; unknown services get a generic route each."""
    chosen = set(services)
    routes: list[_Route] = []
    for method, path, chain, weight in _ROUTES:
        steps = tuple((svc, svc) for svc in chain if svc in chosen)
        if steps or _GATEWAY in chosen:
            routes.extend([_Route(method, path, steps)] * weight)
    known = {svc for _, _, chain, _ in _ROUTES for svc in chain} | {_GATEWAY}
    for svc in dict.fromkeys(services):
        if svc not in known:
            routes.extend([_Route("GET", f"/api/v1/{svc}", ((svc, "generic"),))] * 2)
    return tuple(routes)


class LogGenerator:
    """Synthetic, correlated, JSON-ready log events in LogFlow's ingest shape."""

    def __init__(self, config: GeneratorConfig) -> None:
        self._config = config
        rng = random.Random(config.seed)
        self._rand = r = rng.random
        self._bits = b = rng.getrandbits
        self._services = config.services
        self._gateway = _GATEWAY in config.services
        self._routes = _build_routes(config.services)
        self._hosts: dict[str, tuple[tuple[str, str, int], ...]] = {}
        for svc in config.services:
            deploy = f"{b(16):04x}"
            self._hosts[svc] = tuple((f"{svc}-{deploy}-{i}", _REGIONS[int(r() * 6)], 1 + int(r() * 32000))
                                     for i in range(1, 3 + int(r() * 4)))
        self._ips = tuple(f"{(203, 198, 192, 10)[i % 4]}.{b(8)}.{b(8)}.{1 + b(7)}" for i in range(2000))
        self._gens: dict[str, Callable[[], object]] = {
            "duration_ms": lambda: int(2 + 400 * r() ** 3), "n": lambda: 1 + int(r() * 120),
            "attempt": lambda: 1 + int(r() * 3), "shard": lambda: int(r() * 8),
            "timeout_ms": lambda: _TIMEOUTS[int(r() * 5)], "hexid": lambda: f"{b(32):08x}",
            "func": lambda: _FUNCS[int(r() * len(_FUNCS))], "us": lambda: 20 + int(r() * 900),
            "hits": lambda: int(r() ** 2 * 800), "line": lambda: 40 + int(r() * 600),
            "lag": lambda: int(r() ** 2 * 50000), "hi_pct": lambda: 85 + int(r() * 15),
            "mb": lambda: 64 + int(r() * 1984), "bytes": lambda: 120 + int(r() ** 2 * 60000),
            "pid": lambda: 1000 + int(r() * 60000),
        }
        self._incidents: dict[str, _Incident] = {}
        self._started = 0
        self._emitted = 0
        self._last_us: int | None = None
        self._second = -1
        self._prefix = ""
        self._bg_ctx = self._new_ctx(self._routes[0])
        self._flows = [self._flow() for _ in range(_CONCURRENT_FLOWS)]

    @property
    def incidents_started(self) -> int:
        """Incidents started so far, by :meth:`start_incident` or at random."""
        return self._started

    def start_incident(self, kind: str, service: str | None = None, duration_events: int = 500) -> None:
        """Start ``kind`` on ``service`` for the next ``duration_events`` generated events.

        Without ``service`` an error spike hits a random service and a latency storm the gateway
        (a random service when there is none). A new incident on a service replaces its current one.
        """
        if kind not in INCIDENT_KINDS:
            raise ValueError(f"unknown incident kind {kind!r}; expected one of {', '.join(INCIDENT_KINDS)}")
        if service is None:
            pick = self._services[int(self._rand() * len(self._services))]
            service = _GATEWAY if kind == "latency_storm" and self._gateway else pick
        elif service not in self._services:
            raise ValueError(f"unknown service {service!r}")
        if duration_events <= 0:
            raise ValueError("duration_events must be positive")
        self._incidents[service] = _Incident(kind, service, duration_events)
        self._started += 1

    def batch(self, n: int) -> list[dict[str, object]]:
        """The next ``n`` events, oldest first, as JSON-ready dicts (no ``id``: the server assigns it)."""
        if n < 0:
            raise ValueError("n must not be negative")
        r = self._rand
        if self._config.incident_probability and r() < self._config.incident_probability:
            kind = INCIDENT_KINDS[int(r() * 2)]
            self.start_incident(kind, duration_events=200 + int(r() * 1800))
        out: list[dict[str, object]] = []
        append = out.append
        flows = self._flows
        incidents = self._incidents
        for _ in range(n):
            if r() < _BACKGROUND_SHARE:
                if r() < 0.01:
                    self._bg_ctx = self._new_ctx(self._routes[0])
                svc = self._services[int(r() * len(self._services))]
                append(self._event("background", svc, self._bg_ctx, None))
            else:
                i = int(r() * _CONCURRENT_FLOWS)
                event = next(flows[i], None)
                while event is None:
                    flows[i] = self._flow()
                    event = next(flows[i], None)
                append(event)
            if incidents:
                for svc, incident in list(incidents.items()):
                    incident.remaining -= 1
                    if incident.remaining <= 0:
                        del incidents[svc]
        self._stamp(out)
        return out

    def _new_ctx(self, route: _Route) -> dict[str, object]:
        """Values shared by every line of one request."""
        r, b = self._rand, self._bits
        ctx: dict[str, object] = {
            "trace_id": f"{b(128):032x}", "request_id": f"req_{b(64):016x}",
            "user_id": f"usr_{int(r() * 250_000):06d}", "order_id": f"ord_{b(40):010x}",
            "sku": f"SKU-{int(r() * 5000):05d}", "session": f"sess_{b(48):012x}",
            "amount": round(3.5 + 496.5 * r() ** 2, 2), "qty": 1 + int(r() ** 2 * 6),
            "currency": _CURRENCIES[int(r() * len(_CURRENCIES))], "region": _REGIONS[int(r() * 6)],
            "client_ip": self._ips[int(r() * 2000)], "ua": _AGENTS[int(r() * len(_AGENTS))],
            "query": _QUERIES[int(r() * len(_QUERIES))], "provider": _PROVIDERS[int(r() * 4)],
            "channel": _CHANNELS[int(r() * 4)], "warehouse": _WAREHOUSES[int(r() * 4)],
            "method": route.method, "upstream": route.steps[0][0] if route.steps else "backend",
            "duration_ms": 0, "status": 200, "hits": 0,
        }
        ctx["path"] = route.path.format_map(ctx) if "{" in route.path else route.path
        return ctx

    def _flow(self) -> Iterator[dict[str, object]]:
        """The lines of one simulated request, in the order the services log them."""
        r, b = self._rand, self._bits
        route = self._routes[int(r() * len(self._routes))]
        ctx = self._new_ctx(route)
        root = f"{b(64):016x}"
        if self._gateway:
            yield self._event("gw_in", _GATEWAY, ctx, root)
        for svc, step in route.steps:
            span = f"{b(64):016x}"
            repeat = 2 if r() < 0.3 else 1
            incident = self._incidents.get(svc)
            if incident is not None and incident.kind == "error_spike":
                repeat += 1 + int(r() * 2)  # retries
            for _ in range(repeat):
                yield self._event(step, svc, ctx, span)
        if self._gateway:
            yield self._event("gw_out", _GATEWAY, ctx, root)

    def _event(self, step: str, service: str, ctx: dict[str, object], span: str | None) -> dict[str, object]:
        r = self._rand
        level = _NORMAL_LEVELS[int(r() * 1000)]
        tmpl: _Template | None = None
        slow_ms = 0  # an incident's duration for this line, overriding the drawn one
        if self._incidents:
            incident = self._incidents.get(service)
            if incident is not None:
                level, tmpl, slow_ms = self._incident_line(incident.kind, step, service, ctx, level)
            if step == "gw_out" and "failed" in ctx and r() < 0.7:
                level, tmpl, ctx["upstream"] = ERROR, _UPSTREAM_FAILED, ctx["failed"]
        if tmpl is None:
            pool = _POOLS[step][level]
            tmpl = pool[int(r() * len(pool))]
            if tmpl is ctx.get("last") and len(pool) > 1:  # a service's second line says something else
                tmpl = pool[pool.index(tmpl) - 1]
            ctx["last"] = tmpl
        gens = self._gens
        for name in tmpl[1]:
            ctx[name] = gens[name]()
        if step == "gw_out":
            if slow_ms:
                ctx["status"] = 504 if level >= ERROR else 200
            else:
                statuses = _STATUS[level]
                status = statuses[int(r() * len(statuses))]
                ctx["status"] = 201 if status == 200 and ctx["method"] == "POST" else status
                if level >= ERROR:
                    ctx["duration_ms"] = 50 + int(r() * 10_000)
        if slow_ms:
            ctx["duration_ms"] = slow_ms
        ctx["service"] = service
        hosts = self._hosts[service]
        host = hosts[int(r() * len(hosts))]
        text = _LEVEL_NAMES[level] if r() >= _ALIAS_SHARE else self._alias(level)
        message = tmpl[0].format_map(ctx)
        if span is None:
            return {"timestamp": "", "level": text, "service": service, "host": host[0], "message": message,
                    "metadata": {"region": host[1], "pid": host[2]}}
        meta = {key: ctx[key] for key in _META[step]}
        if slow_ms:
            meta["duration_ms"] = slow_ms
        return {"timestamp": "", "level": text, "service": service, "host": host[0], "message": message,
                "request_id": ctx["request_id"], "trace_id": ctx["trace_id"], "span_id": span,
                "metadata": meta}

    def _incident_line(
        self, kind: str, step: str, service: str, ctx: dict[str, object], level: int
    ) -> tuple[int, _Template | None, int]:
        """(level, template or None for the usual pool, duration or 0) of a line during an incident."""
        r = self._rand
        if kind == "error_spike":
            level = _SPIKE_LEVELS[int(r() * 1000)]
            if level < ERROR:
                return level, None, 0
            ctx["failed"] = service
            if r() < 0.85:  # the recognisable signature: timeouts (ERROR) and fast failures (CRITICAL)
                signature = _SIGNATURE_POOLS.get(service, _SIGNATURE_POOLS["*"])[level - ERROR]
                return level, signature, 30_000 + int(r() * 40) if level == ERROR else 0
            return level, None, 0
        if step in ("gw_in", "background"):  # latency storms slow down requests only
            return level, None, 0
        slow_ms, x = 1200 + int(28_800 * r() ** 2), r()
        if x < 0.75:
            return WARN, (_SLOW_GW if step == "gw_out" else _SLOW), slow_ms
        if x < 0.85:
            return ERROR, (_TIMEOUT_GW if step == "gw_out" else _TIMEOUT), slow_ms
        return INFO, None, slow_ms

    def _alias(self, level: int) -> str:
        aliases = _LEVEL_ALIASES[level]
        return aliases[int(self._rand() * len(aliases))]

    def _stamp(self, events: list[dict[str, object]]) -> None:
        """Set ``timestamp`` on every event: monotonic non-decreasing across batches."""
        n = len(events)
        if not n:
            return
        start = self._config.start_us
        if start is not None:
            base, step, first = start, 1_000_000 / self._config.rate, self._emitted
        else:
            now = time.time_ns() // 1000
            low = now - int(n * 1_000_000 / self._config.rate)
            if self._last_us is not None and low < self._last_us:
                low = self._last_us
            base, step, first = low, max(now - low, 0) / n, 1
        second, prefix = self._second, self._prefix
        ts = 0
        for j, event in enumerate(events, first):
            ts = base + int(j * step)
            sec, micros = divmod(ts, 1_000_000)
            if sec != second:
                second = sec
                prefix = time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(sec))
            event["timestamp"] = f"{prefix}{micros:06d}Z"
        self._second, self._prefix, self._last_us = second, prefix, ts
        self._emitted += n


def to_ndjson(events: list[dict[str, object]]) -> bytes:
    """Newline-delimited JSON (one event per line, trailing newline) for the ingest endpoints."""
    return b"\n".join(map(orjson.dumps, events)) + b"\n" if events else b""
