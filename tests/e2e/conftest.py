"""End-to-end tests run LogFlow as real processes. Fault tests stop and restart the shared real
engines, so they run last in the session (after every test that merely uses the engines)."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.get_closest_marker("faults") is not None)
