"""Central UID and GID allocation: unique, inside the configured range, never reused.

Each pool is a row in ``counters`` holding the last number handed out. One
``UPDATE ... RETURNING`` advances it; on PostgreSQL the row lock it takes serialises
concurrent allocators in every replica until their transactions end, and the unique
constraints on ``users.uid`` and ``groups.gid`` are the last line of defence. The audit
head is locked first (see ``AuditLog``), so lock order is the same in every writer.
A transaction that rolls back undoes its counter step too, so its number is handed out
again later: it was never visible to anyone. Numbers of deleted users and groups stay in
their rows: never reused.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import case, exists, or_, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session

from .audit.chain import AuditLog
from .errors import AlreadyExists, ConfigurationError, InvalidInput, NumbersExhausted
from .sync.models import Counter
from .users.models import User
from .vos.models import Group


@dataclass(frozen=True)
class NumberRange:
    low: int
    high: int

    def __contains__(self, number: object) -> bool:
        return isinstance(number, int) and self.low <= number <= self.high


def advance_counter(session: Session, name: str, low: int) -> int:
    """Advance counter ``name`` by one (to ``low`` if it is unset or below) and return it."""
    stmt = (
        update(Counter)
        .where(Counter.name == name)
        .values(
            value=case(
                (or_(Counter.value.is_(None), Counter.value < low), low),
                else_=Counter.value + 1,
            )
        )
        .returning(Counter.value)
        .execution_options(synchronize_session=False)
    )
    value = session.execute(stmt).scalar_one_or_none()
    if value is None:
        raise ConfigurationError(f"counter {name!r} is missing: run 'xos-vo db upgrade'")
    return int(value)


class NumberAllocator:
    def __init__(self, session: Session, audit: AuditLog, uids: NumberRange,
                 gids: NumberRange) -> None:
        self.session = session
        self.audit = audit
        self.uids = uids
        self.gids = gids

    def allocate_uid(self) -> int:
        return self._allocate("uid", self.uids, User.uid)

    def allocate_gid(self) -> int:
        return self._allocate("gid", self.gids, Group.gid)

    def claim_uid(self, number: object) -> int:
        """Accept an operator-chosen uid (migrating an existing account)."""
        return self._claim(number, "uid", self.uids, User.uid)

    def _allocate(self, pool: str, numbers: NumberRange,
                  column: InstrumentedAttribute[int]) -> int:
        self.audit.lock_head()
        while True:
            number = advance_counter(self.session, pool, numbers.low)
            if number > numbers.high:
                raise NumbersExhausted(
                    f"no {pool} left in {numbers.low}-{numbers.high}; widen the range"
                )
            # Skip numbers an operator claimed explicitly ahead of the counter.
            if not self.session.scalar(select(exists().where(column == number))):
                return number

    def _claim(self, number: object, pool: str, numbers: NumberRange,
               column: InstrumentedAttribute[int]) -> int:
        if not isinstance(number, int) or isinstance(number, bool) or number not in numbers:
            shown = repr(number)
            shown = shown if len(shown) <= 24 else shown[:24] + "..."
            raise InvalidInput(
                f"{pool} {shown} is outside the configured range {numbers.low}-{numbers.high}"
            )
        if self.session.scalar(select(exists().where(column == number))):
            raise AlreadyExists(f"{pool} {number} is already taken (numbers are never reused)")
        return number
