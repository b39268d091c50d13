"""UTC time helpers: every timestamp the service stores is timezone-aware UTC."""

from __future__ import annotations

import datetime as dt


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def today() -> dt.date:
    return utcnow().date()


def iso(value: dt.datetime | dt.date | None) -> str | None:
    """Render for JSON; naive datetimes (SQLite) are UTC by construction."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.isoformat().replace("+00:00", "Z")
    return value.isoformat()


def aware(value: dt.datetime | None) -> dt.datetime:
    """A stored timestamp as aware UTC: SQLite hands back naive datetimes (all are UTC)."""
    assert value is not None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
