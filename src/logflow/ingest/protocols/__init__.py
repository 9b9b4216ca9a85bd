"""Wire-format adapters: each turns one protocol's payloads into items for the ingest pipeline."""
