"""Pure domain types: events, levels, queries. No I/O here."""
