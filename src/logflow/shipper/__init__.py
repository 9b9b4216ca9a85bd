"""``logflow ship``: tail files and send them to LogFlow's native ingest API (see docs/shipper.md).

Modules: ``tailer`` (discovery, rotation, reading), ``multiline`` (joining lines into events),
``parse`` (events to LogFlow items), ``checkpoint`` (the registry of offsets), ``sender`` (HTTP),
``runner`` (the loop tying them together).
"""

from logflow.shipper.runner import ShipConfig, Shipper, ShipStats

__all__ = ["ShipConfig", "ShipStats", "Shipper"]
