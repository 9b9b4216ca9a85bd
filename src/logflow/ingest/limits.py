"""Ingest limits, all configurable, enforced once in the pipeline for every protocol."""

from __future__ import annotations

from dataclasses import dataclass

from logflow.settings import Settings


@dataclass(frozen=True, slots=True)
class IngestLimits:
    """Bounds on what one request or one event may contain (defaults documented in docs/ingest.md)."""

    max_body_bytes: int = 10 * 1024 * 1024
    max_event_bytes: int = 256 * 1024
    max_fields: int = 200
    max_depth: int = 8
    max_future_skew_s: int = 24 * 3600
    retention_s: int = 7 * 86400
    max_batch_events: int = 50_000

    @classmethod
    def from_settings(cls, settings: Settings) -> IngestLimits:
        return cls(
            max_body_bytes=settings.max_body_bytes,
            max_event_bytes=settings.max_event_bytes,
            max_fields=settings.max_fields,
            max_depth=settings.max_depth,
            max_future_skew_s=settings.max_future_skew_s,
            retention_s=settings.retention_days * 86400,
            max_batch_events=settings.max_batch_events,
        )
