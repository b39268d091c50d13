"""What every domain service receives: the session and its collaborators."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session, scoped_session

from .audit.chain import AuditLog
from .authz import Authorizer
from .numbering import NumberAllocator, NumberRange
from .sync.revisions import RevisionLog


@dataclass
class ServiceContext:
    session: Session
    numbers: NumberAllocator
    revisions: RevisionLog
    audit: AuditLog
    authz: Authorizer
    reserved_names: frozenset[str]
    page_size_default: int = 50
    page_size_max: int = 500

    @classmethod
    def build(cls, session: Session | scoped_session[Any], config: Mapping[str, Any]
              ) -> ServiceContext:
        session = session if isinstance(session, Session) else session()
        audit = AuditLog(session)
        return cls(
            session=session,
            numbers=NumberAllocator(
                session,
                audit,
                NumberRange(config["UID_MIN"], config["UID_MAX"]),
                NumberRange(config["GID_MIN"], config["GID_MAX"]),
            ),
            revisions=RevisionLog(session, audit),
            audit=audit,
            authz=Authorizer(session),
            reserved_names=frozenset(config.get("RESERVED_NAMES", ())),
            page_size_default=config.get("API_PAGE_SIZE_DEFAULT", 50),
            page_size_max=config.get("API_PAGE_SIZE_MAX", 500),
        )

    def page_size(self, limit: int | None) -> int:
        from .errors import InvalidInput

        if limit is None:
            return self.page_size_default
        if not 1 <= limit <= self.page_size_max:
            raise InvalidInput(f"limit must be between 1 and {self.page_size_max}")
        return limit
