"""Time rules shared by every issuer: aware UTC instants, lifetime caps, clock skew."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ..errors import PolicyError

#: Validity starts this much before "now", so a relying party whose clock is a little
#: behind does not see a certificate from the future.
CLOCK_SKEW = timedelta(minutes=5)


def utc(moment: datetime | None, what: str = "now") -> datetime:
    """Return ``moment`` (default: the current time) as an aware UTC datetime.

    Naive datetimes are refused: guessing their zone would shift validity by hours.
    """
    if moment is None:
        return datetime.now(UTC)
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise PolicyError(f"{what} must be a timezone-aware datetime, got a naive one")
    return moment.astimezone(UTC)


def check_lifetime(lifetime: timedelta, max_lifetime: timedelta) -> None:
    """Refuse a lifetime that is not positive or is above the cap."""
    if lifetime <= timedelta(0):
        raise PolicyError(f"lifetime must be positive, got {lifetime}")
    if lifetime > max_lifetime:
        raise PolicyError(f"lifetime {lifetime} is above the cap of {max_lifetime}")
