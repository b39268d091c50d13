from __future__ import annotations

import uuid

from sqlalchemy import BigInteger, Index, Integer, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from ..db import db


class Counter(db.Model):  # type: ignore[name-defined,misc]
    """Named counters: ``uid`` and ``gid`` (last number handed out) and ``revision``.

    Each is advanced by one ``UPDATE ... RETURNING``; the row lock it takes is held to
    commit, which serialises allocators across service replicas on PostgreSQL and makes
    revisions commit in order (a node never sees revision N+1 before N)."""

    __tablename__ = "counters"

    name: Mapped[str] = mapped_column(String(16), primary_key=True)
    value: Mapped[int | None] = mapped_column(BigInteger)


class AccountChange(db.Model):  # type: ignore[name-defined,misc]
    """A subject of the node account view touched at a revision, per VO.

    kind ``user``: the user's record (name, status, lock) changed;
    kind ``group``: the group was created, renamed or deleted;
    kind ``member``: the user's membership in the group changed."""

    __tablename__ = "account_changes"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    revision: Mapped[int] = mapped_column(BigInteger)
    vo_id: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(8))
    user_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    group_id: Mapped[int | None] = mapped_column(Integer)


Index("ix_account_changes_vo_revision", AccountChange.vo_id, AccountChange.revision)
