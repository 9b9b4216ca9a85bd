"""Caches for computed API answers: in-process TTL cache or Redis."""
