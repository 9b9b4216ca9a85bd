"""LogFlow: log aggregation with durable ingest, full-text search, metrics and alerting."""

__version__ = "0.1.0"
