"""Failed-login throttling per account and per client address, shared by every service
replica through the database.

Past ``limit`` failures inside ``window``, further attempts are refused until
``blocked_until``: one minute, doubling with each further failure, at most fifteen. A
success clears the account's record. Nothing is locked for good: an attacker can slow
an account's owner down for minutes, never lock them out.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy.orm import Session

from ..errors import TooManyAttempts
from ..timeutil import aware, utcnow
from .models import LoginThrottle

WINDOW = dt.timedelta(minutes=15)
FIRST_BLOCK = dt.timedelta(minutes=1)
LONGEST_BLOCK = dt.timedelta(minutes=15)



@dataclass(frozen=True)
class Limit:
    key: str
    limit: int


class Throttle:
    def __init__(self, session: Session, limits: list[Limit]) -> None:
        self.session = session
        self.limits = limits

    def check(self, now: dt.datetime | None = None) -> None:
        """TooManyAttempts when any of the keys is blocked now."""
        now = now or utcnow()
        for limit in self.limits:
            row = self.session.get(LoginThrottle, limit.key)
            if row is not None and row.blocked_until is not None and \
                    aware(row.blocked_until) > now:
                wait = int((aware(row.blocked_until) - now).total_seconds()) + 1
                raise TooManyAttempts(f"too many failed logins; try again in {wait} s",
                                      retry_after=wait)

    def failure(self, now: dt.datetime | None = None) -> None:
        now = now or utcnow()
        for limit in self.limits:
            row = self.session.get(LoginThrottle, limit.key, with_for_update=True)
            if row is None:
                row = LoginThrottle(key=limit.key, failures=0, window_start=now)
                self.session.add(row)
            elif now - aware(row.window_start) > WINDOW:
                row.failures, row.window_start, row.blocked_until = 0, now, None
            row.failures += 1
            over = row.failures - limit.limit
            if over >= 0:
                row.blocked_until = now + min(LONGEST_BLOCK, FIRST_BLOCK * 2 ** min(over, 8))
        self.session.flush()

    def success(self, key: str) -> None:
        row = self.session.get(LoginThrottle, key)
        if row is not None:
            self.session.delete(row)
            self.session.flush()
