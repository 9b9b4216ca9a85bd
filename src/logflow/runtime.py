"""Builds the backends chosen by settings: the one place that maps URL schemes to adapters."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlalchemy import Engine

from logflow.backends.cache.base import Cache
from logflow.backends.queue.base import EventQueue
from logflow.backends.store.base import DocumentEncodingStore, LogStore
from logflow.db.engine import make_engine
from logflow.db.migrate import upgrade
from logflow.domain.events import encode_record
from logflow.ingest.limits import IngestLimits
from logflow.ingest.pipeline import IngestPipeline
from logflow.settings import Settings


def _scheme(url: str) -> str:
    return urlsplit(url).scheme if "://" in url else url


def build_queue(settings: Settings, *, writer: bool) -> EventQueue:
    """The queue named by ``LOGFLOW_QUEUE_URL``; ``writer`` is False for processes that only consume."""
    if _scheme(settings.queue_url) == "kafka":
        from logflow.backends.queue.kafka import KafkaQueue

        return KafkaQueue.from_settings(settings)
    from logflow.backends.queue.embedded import EmbeddedQueue

    return EmbeddedQueue(
        settings.queue_dir,
        max_backlog_bytes=settings.queue_max_backlog_bytes,
        min_free_disk_bytes=settings.min_free_disk_bytes,
        writer=writer,
    )


def build_store(settings: Settings) -> LogStore:
    """The log store named by ``LOGFLOW_STORE_URL``."""
    if _scheme(settings.store_url) == "embedded":
        from logflow.backends.store.embedded import EmbeddedStore

        return EmbeddedStore(settings.store_dir)
    from logflow.backends.store.opensearch import OpenSearchStore

    return OpenSearchStore.from_settings(settings)


def build_cache(settings: Settings) -> Cache:
    """The cache named by ``LOGFLOW_CACHE_URL``."""
    if _scheme(settings.cache_url) in ("redis", "rediss"):
        from logflow.backends.cache.redis import RedisCache

        return RedisCache(settings.cache_url)
    from logflow.backends.cache.memory import MemoryCache

    return MemoryCache()


@dataclass
class Runtime:
    """Everything a LogFlow process talks to, built once at start-up and closed at exit."""

    settings: Settings
    queue: EventQueue
    store: LogStore
    cache: Cache
    database: Engine
    pipeline: IngestPipeline

    @classmethod
    def build(cls, settings: Settings, *, queue_writer: bool = True, migrate: bool = True) -> Runtime:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        queue = build_queue(settings, writer=queue_writer)
        store = build_store(settings)
        cache = build_cache(settings)
        database = make_engine(settings.effective_database_url)
        if migrate:
            # Safe when several processes start at once (the migration takes a lock).
            upgrade(database)
        # The store may want events on the queue in its own document form (OpenSearch does):
        # chosen here, once, for every protocol's ingest.
        encoder = store.record_encoder() if isinstance(store, DocumentEncodingStore) else encode_record
        return cls(
            settings=settings, queue=queue, store=store, cache=cache, database=database,
            pipeline=IngestPipeline(queue, IngestLimits.from_settings(settings), encoder=encoder),
        )

    def close(self) -> None:
        for closer in (self.queue.close, self.store.close, self.cache.close, self.database.dispose):
            closer()
