"""Ports (typed Protocols) and their adapters: the embedded defaults beside the real engines."""
