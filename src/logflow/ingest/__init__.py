"""The single ingest path: decode → validate/normalize → durable queue → processor → store."""
