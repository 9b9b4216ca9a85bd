"""The cache contract, run against every implementation (in-process memory and real Redis).

The Redis parameter uses the shared test database (``LOGFLOW_TEST_REDIS_URL``), which other test
runs may use concurrently: each test gets its own cache namespace, and the server-wide counters
are checked as deltas, never absolute values. The outage tests start their own ``redis-server``.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from logflow.backends.cache.base import Cache, CacheStats
from logflow.backends.cache.memory import MemoryCache
from logflow.backends.cache.redis import RedisCache
from tests.conftest import require_engine


def _redis(namespace: str | None = None) -> RedisCache:
    return RedisCache(require_engine("redis"), namespace=namespace or f"lf-test-{uuid.uuid4().hex[:12]}:")


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.distributed)])
def cache(request: pytest.FixtureRequest) -> Iterator[Cache]:
    made: Cache = MemoryCache() if request.param == "memory" else _redis()
    try:
        yield made
    finally:
        made.clear(None)
        made.close()


@pytest.fixture
def ns() -> str:
    """A key prefix unique to this test."""
    return f"lf-test-{uuid.uuid4().hex[:12]}:"


def test_get_set_round_trips_bytes_exactly(cache: Cache, ns: str) -> None:
    values = {
        f"{ns}binary": bytes(range(256)),
        f"{ns}json": b'{"total": 3, "levels": {"ERROR": 1}}',
        f"{ns}utf8": "naïve ✓ 日本".encode(),
        f"{ns}empty": b"",
        f"{ns}large": b"x" * 1_000_000,
    }
    for key, value in values.items():
        cache.set(key, value, 60)
    for key, value in values.items():
        got = cache.get(key)
        assert got == value and type(got) is bytes, key
    assert cache.get(f"{ns}missing") is None


def test_set_overwrites(cache: Cache, ns: str) -> None:
    cache.set(f"{ns}k", b"one", 60)
    cache.set(f"{ns}k", b"two", 60)
    assert cache.get(f"{ns}k") == b"two"


def test_entries_expire_after_ttl(cache: Cache, ns: str) -> None:
    cache.set(f"{ns}short", b"v", 1)
    cache.set(f"{ns}long", b"v", 60)
    assert cache.get(f"{ns}short") == b"v"
    time.sleep(1.1)
    assert cache.get(f"{ns}short") is None
    assert cache.get(f"{ns}long") == b"v"


def test_clear_by_pattern_deletes_only_matching_keys(cache: Cache, ns: str) -> None:
    doomed = [f"{ns}metrics:service:{name}" for name in ("api", "db", "auth")]
    kept = [f"{ns}metrics:overview", f"{ns}metrics:services", f"{ns}logs:recent:100"]
    for key in doomed + kept:
        cache.set(key, b"v", 60)
    assert cache.clear(f"{ns}metrics:service:*") == len(doomed)
    assert [cache.get(k) for k in doomed] == [None] * len(doomed)
    assert [cache.get(k) for k in kept] == [b"v"] * len(kept)
    assert cache.clear(f"{ns}metrics:service:*") == 0


def test_clear_pattern_spanning_many_scan_batches(cache: Cache, ns: str) -> None:
    keys = [f"{ns}bulk:{i}" for i in range(1234)]  # > 2 Redis SCAN/UNLINK batches of 500
    for key in keys:
        cache.set(key, b"v", 60)
    cache.set(f"{ns}other", b"v", 60)
    assert cache.clear(f"{ns}bulk:*") == len(keys)
    assert cache.get(keys[0]) is None and cache.get(keys[-1]) is None
    assert cache.get(f"{ns}other") == b"v"


def test_clear_all(cache: Cache, ns: str) -> None:
    keys = [f"{ns}a", f"{ns}b:c", f"{ns}d"]
    for key in keys:
        cache.set(key, b"v", 60)
    assert cache.clear(None) >= len(keys)
    assert [cache.get(k) for k in keys] == [None] * len(keys)


def test_stats_counters_move(cache: Cache, ns: str) -> None:
    before = cache.stats()
    assert before.connected is True
    for i in range(3):
        cache.set(f"{ns}{i}", b"value", 60)
    assert cache.get(f"{ns}0") == b"value"
    assert cache.get(f"{ns}1") == b"value"
    assert cache.get(f"{ns}nope") is None
    after = cache.stats()
    assert after.connected is True
    assert after.keyspace_hits - before.keyspace_hits >= 2
    assert after.keyspace_misses - before.keyspace_misses >= 1
    assert after.keys >= 3
    assert after.connected_clients >= 1
    assert isinstance(after.used_memory, str) and after.used_memory[-1] in "BKMG"


def test_healthy(cache: Cache) -> None:
    assert cache.healthy() is True


@pytest.mark.distributed
def test_redis_incr_window_counts_within_a_window(ns: str) -> None:
    cache = _redis()
    try:
        assert [cache.incr_window(f"{ns}rl", 1) for _ in range(3)] == [1, 2, 3]
        assert cache.incr_window(f"{ns}other", 60) == 1
        time.sleep(1.1)  # the window expired with its first hit; later hits did not extend it
        assert cache.incr_window(f"{ns}rl", 1) == 1
        assert cache.incr_window(f"{ns}other", 60) == 2
    finally:
        cache.close()


@pytest.mark.distributed
def test_redis_clear_stays_inside_its_namespace(ns: str) -> None:
    """``clear(None)`` empties this cache only: not another namespace, nor the rate-limit windows."""
    mine, theirs = _redis(f"{ns}[a*]:"), _redis(f"{ns}[a]:")  # glob characters are taken literally
    try:
        mine.set("k", b"mine", 60)
        theirs.set("k", b"theirs", 60)
        mine.incr_window("client", 60)
        assert mine.clear(None) == 1
        assert mine.get("k") is None and theirs.get("k") == b"theirs"
        assert mine.incr_window("client", 60) == 2
    finally:
        theirs.clear(None)
        mine.close()
        theirs.close()


# -- outages -------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _assert_degraded(cache: RedisCache) -> None:
    cache.set("k", b"v", 60)
    assert cache.get("k") is None
    assert cache.clear(None) == 0
    assert cache.clear("metrics:*") == 0
    assert cache.incr_window("rl", 60) == 0
    assert cache.healthy() is False
    assert cache.stats() == CacheStats(connected=False, used_memory="0B", connected_clients=0,
                                       keyspace_hits=0, keyspace_misses=0, keys=0)


def test_redis_down_degrades_without_exceptions() -> None:
    cache = RedisCache(f"redis://127.0.0.1:{_free_port()}/0")
    try:
        started = time.monotonic()
        for _ in range(20):
            _assert_degraded(cache)
        assert time.monotonic() - started < 2.0  # refused connections and the breaker keep it fast
    finally:
        cache.close()


class RedisServer:
    """A private, non-persistent redis-server on a fixed port that a test can stop and restart."""

    def __init__(self, port: int, workdir: Path) -> None:
        self.port = port
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server not installed (scripts/stack.sh installs it)")
        log = (self.workdir / "redis.log").open("ab")
        with log:
            self.proc = subprocess.Popen(
                [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--daemonize", "no", "--dir", str(self.workdir)],
                stdout=log, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        self.stop()
        pytest.fail(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(_free_port(), tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.distributed
def test_redis_recovers_after_restart(redis_server: RedisServer) -> None:
    cache = RedisCache(f"redis://127.0.0.1:{redis_server.port}/0")
    try:
        cache.set("k", b"before", 60)
        assert cache.get("k") == b"before"
        assert cache.healthy() is True

        redis_server.stop()
        _assert_degraded(cache)

        redis_server.start()
        deadline = time.monotonic() + 5
        while not cache.healthy():
            assert time.monotonic() < deadline, "cache did not reconnect within 5 s"
            time.sleep(0.1)
        assert cache.stats().connected is True
        assert cache.get("k") is None  # a fresh, non-persistent server
        cache.set("k", b"after", 60)
        assert cache.get("k") == b"after"
    finally:
        cache.close()


def test_hung_redis_is_bounded_by_timeouts_and_breaker() -> None:
    """A server that accepts connections but never answers: one call waits ~0.5 s, then the
    breaker answers instantly until its retry period has passed."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)  # never accept()ed: connects succeed, reads time out
        cache = RedisCache(f"redis://127.0.0.1:{listener.getsockname()[1]}/0", retry_after_s=1.0)
        try:
            started = time.monotonic()
            assert cache.get("k") is None
            first = time.monotonic() - started
            assert 0.3 < first < 1.5
            started = time.monotonic()
            for _ in range(100):
                _assert_degraded(cache)
            assert time.monotonic() - started < 0.5  # short-circuited, no socket waits
            time.sleep(1.0)
            started = time.monotonic()
            assert cache.healthy() is False  # one probe after the retry period, bounded again
            assert time.monotonic() - started < 1.5
        finally:
            cache.close()
