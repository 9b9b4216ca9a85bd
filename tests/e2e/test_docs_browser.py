"""/docs and /redoc rendered by a real browser (headless Chromium), not just parsed.

The pages must render with no internet access and under their Content-Security-Policy: a blocked
script or an unreachable CDN leaves an empty page, which these tests see.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from logflow.app import create_app
from logflow.runtime import Runtime
from logflow.settings import Settings
from tests.conftest import IN_CI
from tests.serving import serve_app

HTTP_METHODS = {"get", "post", "put", "patch", "delete", "head", "options"}


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        message = "chromium not installed: run scripts/stack.sh tools"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture
def served(make_settings: Callable[..., Settings]) -> Iterator[str]:
    runtime = Runtime.build(make_settings())
    try:
        with serve_app(create_app(runtime)) as url:
            yield url
    finally:
        runtime.close()


def render(url: str) -> str:
    """The DOM after the page's scripts ran (virtual time lets them finish without sleeping)."""
    out = subprocess.run(
        [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
         "--virtual-time-budget=20000", "--dump-dom", url],
        capture_output=True, text=True, timeout=180, check=True,
    )
    return out.stdout


def operation_ids(spec: dict[str, Any]) -> set[str]:
    return {op["operationId"] for item in spec["paths"].values() for m, op in item.items() if m in HTTP_METHODS}


def test_swagger_ui_renders_every_operation(served: str) -> None:
    spec = httpx.get(f"{served}/openapi.json").json()
    dom = render(f"{served}/docs")
    # Swagger UI draws an "opblock" with id operations-<tag>-<operationId> per operation and tag; the
    # HTML as served has none of them.
    rendered = {m.split("-", 2)[2] for m in re.findall(r'id="(operations-[^"]+)"', dom)
                if m.count("-") >= 2 and not m.startswith("operations-tag-")}
    ids = operation_ids(spec)
    assert ids and {i for i in ids if any(r.endswith(i) for r in rendered)} == ids
    assert 'data-path="/api/v1/logs/search"' in dom
    assert "swagger-ui" in dom and "cdn." not in dom


def test_redoc_renders_operations(served: str) -> None:
    spec = httpx.get(f"{served}/openapi.json").json()
    dom = render(f"{served}/redoc")
    summaries = [op.get("summary") for item in spec["paths"].values() for m, op in item.items() if m in HTTP_METHODS]
    assert summaries and all(s for s in summaries)
    # Redoc writes every operation's summary into the page once it has fetched and parsed the spec.
    missing = [s for s in summaries if s not in dom]
    assert not missing, f"redoc did not render {missing[:5]}"
    assert "fonts.googleapis.com" not in dom
