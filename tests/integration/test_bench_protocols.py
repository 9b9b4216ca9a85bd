"""``logflow bench --protocols``: each encoder speaks its protocol well enough that every event arrives.

The benchmark's figures mean something only if the same events went through every protocol and all
of them were stored with the same content: this runs each protocol on a small dataset and compares
what the search API returns.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator

import pytest

from logflow.app import create_app
from logflow.bench.protocols import PROTOCOLS, run_protocol
from logflow.domain.levels import parse_level
from logflow.generator import GeneratorConfig, LogGenerator
from logflow.ingest.listeners import ListenerConfig, Listeners
from logflow.settings import Settings
from tests.conftest import LogFlow, start_logflow, stop_logflow
from tests.serving import free_port, serve_app


@pytest.fixture
def open_flow(make_settings: Callable[..., Settings]) -> Iterator[LogFlow]:
    flow = start_logflow(make_settings(ingest_open=True, public_read=True))  # as the bench deploys it
    try:
        yield flow
    finally:
        stop_logflow(flow)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_every_protocol_delivers_the_same_events(open_flow: LogFlow, protocol: str) -> None:
    gen = LogGenerator(GeneratorConfig(seed=11))
    batches = [gen.batch(150) for _ in range(4)]
    syslog_port = free_port()
    listeners = Listeners(open_flow.runtime.pipeline, ListenerConfig(syslog_port=syslog_port))
    progressed: list[int] = []
    with serve_app(create_app(open_flow.runtime, listeners=listeners)) as url:
        result = run_protocol(protocol, url, ("127.0.0.1", syslog_port), batches, 2, progressed.append)
    assert result.events == 600 and sum(progressed) == 600 and result.wire_bytes > 0
    open_flow.settle()
    sent = [e for batch in batches for e in batch]
    stored = open_flow.client.get("/api/v1/logs/search", params={"limit": 1000}).json()["logs"]
    assert len(stored) == 600
    def canonical_level(raw: str) -> str:
        level = parse_level(raw)  # the generator writes aliases ("Error", "warning")
        assert level is not None
        if protocol == "syslog-tcp" and level.name == "TRACE":
            return "DEBUG"  # syslog's lowest severity is debug
        return level.name

    assert Counter((e["service"], e["host"], e["level"], e["message"]) for e in stored) == Counter(
        (e["service"], e["host"], canonical_level(e["level"]), e["message"]) for e in sent
    )
