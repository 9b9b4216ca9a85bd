"""Embedded log store: one SQLite file per UTC day with an FTS5 index and per-minute rollups."""

from logflow.backends.store.embedded.store import EmbeddedStore

__all__ = ["EmbeddedStore"]
