"""``logflow bench``: measured ingest, search, metrics, disk and memory figures."""
