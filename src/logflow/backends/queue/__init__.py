"""Durable queue between ingest and the processors."""
