"""How attribute values compare in field filters, identically on every store."""

from __future__ import annotations

import orjson


def canonical_text(value: object) -> str | None:
    """Scalars as field filters see them: strings as is, JSON spelling for numbers, booleans and null.

    ``{"status": 200}`` matches ``field=status:200`` and ``{"ok": true}`` matches ``field=ok:true``.
    Objects and arrays are not matched by field filters (None).
    """
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float) or value is None:
        return orjson.dumps(value).decode()
    return None
