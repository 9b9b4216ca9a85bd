"""The ``logflow`` command line."""
