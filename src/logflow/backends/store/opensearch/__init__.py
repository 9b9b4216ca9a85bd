"""OpenSearch / Elasticsearch 8 log store: daily indices over the shared REST API (plain httpx)."""

from logflow.backends.store.opensearch.store import OpenSearchStore

__all__ = ["OpenSearchStore"]
