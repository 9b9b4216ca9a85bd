"""Alerting: rules over the log store, alert lifecycle, notifications that really arrive.

``run_engine`` is the entry point for ``logflow serve`` (a thread) and ``logflow alerting``
(its own process). See docs/alerting.md.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from logflow.runtime import Runtime


def run_engine(runtime: Runtime, stop: threading.Event) -> None:
    """Run the alert engine on ``runtime``'s store and database until ``stop`` is set.

    Safe to run in several processes against one database: only the lease holder evaluates.
    """
    from logflow.alerting.engine import AlertEngine

    AlertEngine(runtime.store, runtime.database, runtime.settings).run(stop)


__all__ = ["run_engine"]
