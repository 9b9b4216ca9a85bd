"""Schemathesis over the whole API: generated requests, anonymous and authenticated, find no 5xx.

Bounded: a fixed number of examples per operation (about a minute in all). Rate limits are off so
the fuzzer reaches the handlers; state is real (SQLite file, embedded queue and store).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from logflow.settings import Settings
from tests.conftest import LogFlow, start_logflow, stop_logflow

EXAMPLES = 80


@pytest.fixture
def fuzz_flow(make_settings: Callable[..., Settings]) -> Iterator[LogFlow]:
    flow = start_logflow(
        make_settings(
            rate_api_per_minute=0,
            rate_login_per_account=0,
            rate_login_per_address=0,
            rate_ingest_bytes_per_minute=0,
        )
    )
    try:
        flow.ingest([{"message": f"fuzz seed {i}", "service": "fuzz", "level": "ERROR"} for i in range(20)])
        flow.settle()
        yield flow
    finally:
        stop_logflow(flow)


def test_no_server_errors(fuzz_flow: LogFlow) -> None:
    app = fuzz_flow.client.app
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    # Credentials drawn per request: none, a user, the admin, machine keys, garbage.
    user = "fuzzuser"
    assert (
        fuzz_flow.admin.post(
            "/api/v1/admin/users",
            json={"username": user, "email": "fuzz@example.com", "password": "fuzz-pass-123"},
        ).status_code
        == 201
    )
    header_sets = [
        {},
        {"Authorization": f"Bearer {fuzz_flow.token_for(user)}"},
        {"Authorization": f"Bearer {fuzz_flow.token_for('admin')}"},
        {"X-API-Key": fuzz_flow.api_key(user, ["read"])},
        {"X-API-Key": fuzz_flow.ingest_key},
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": "Basic YWRtaW46YWRtaW4xMjM="},
    ]
    failures: list[str] = []
    statuses: list[int] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        if operation.method.upper() == "POST" and operation.path == "/api/v1/auth/logout":
            continue  # would end the shared fuzz sessions; covered by the flow tests

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(), headers=st.sampled_from(header_sets))
        def run(case: Any, headers: dict[str, str]) -> None:
            response = case.call(headers={**(case.headers or {}), **headers})
            statuses.append(response.status_code)
            if response.status_code >= 500:
                failures.append(
                    f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:200]}"
                )

        run()
    assert operations >= 25
    assert sum(200 <= code < 300 for code in statuses) > 100, "the fuzzer never got past validation/auth"
    assert not failures, "\n".join(failures[:20])
