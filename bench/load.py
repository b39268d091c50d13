"""Fill a fresh, migrated XOS database with a large population, fast.

Rows are written with SQLAlchemy Core ``insert()`` in batches, not through the services
(which audit and publish every row one at a time). The result is what the services would
have built, step by step, for the same history:

* users with unique usernames, e-mails and uids from 200000 up, each with a
  ``unix_names`` row; about 1.5 % suspended and 0.5 % deleted;
* VOs, each with a root group (``/vo``, no parent, unix name = VO name) and subgroups
  one or two levels below it (unix name = path components joined by ``_``), gids from
  400000 up, two roles per VO;
* memberships (each user in 1-3 VOs, VO sizes Zipf-like so a few VOs are large):
  mostly active, some suspended, pending or removed; active and suspended members sit
  in subgroups together with every group above them; a few hold roles or expire;
* nodes serving 1-4 VOs each, registered after the VOs and before the members joined;
* ``account_changes`` under one revision per operation, exactly as the services
  publish them, and a valid hash-chained ``audit_events`` trail (``xos-vo audit verify``
  passes), with ``audit_head`` and the ``uid``/``gid``/``revision`` counters set to the
  last numbers used, so that the services carry on correctly afterwards.

Run on its own: ``.venv/bin/python bench/load.py URL --users 1000`` (URL of a migrated,
empty database).
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import os
import random
import subprocess
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import flask_migrate
import sqlalchemy as sa
from sqlalchemy.engine import Connection, make_url

from vo_service import create_app, models
from vo_service.audit.chain import GENESIS, link_hash
from vo_service.db import db
from vo_service.errors import InvalidInput
from vo_service.names import validate_username
from vo_service.timeutil import iso

ROOT = Path(__file__).resolve().parent.parent
ACTOR = "cli:bench-load"
UID_MIN = 200_000
GID_MIN = 400_000
BATCH_USERS = 5_000
BATCH_ACTIVITY = 10_000  # pairs of everyday events per insert
ADMINS_PER_VO = 3  # actors of a VO's everyday events (and "cli:bench-load")
# The big node serves these VOs (by size rank, 0 = largest); the typical node the three
# VOs around the median size.
BIG_NODE_RANKS = (0, 9, 99)
BIG_NODE = "wn-big.grid.example"
TYPICAL_NODE = "wn-typical.grid.example"

GIVEN = (
    "anna", "amir", "ben", "bianca", "carla", "chen", "david", "dmitri", "elena", "eva",
    "felix", "fatima", "greta", "georg", "hugo", "hana", "ines", "ivan", "jonas", "julia",
    "karin", "kofi", "luca", "lena", "maria", "mateo", "nils", "nina", "olga", "omar",
    "paul", "priya", "rosa", "raj", "sven", "sara", "tina", "tomas", "umar", "vera", "wei",
    "yuki", "zoe", "zeynep",
)
SYLLABLES = (
    "ba", "be", "bi", "bo", "da", "de", "di", "do", "ka", "ke", "ki", "ko", "la", "le",
    "li", "lo", "ma", "me", "mi", "mo", "na", "ne", "ni", "no", "ra", "re", "ri", "ro",
    "sa", "se", "si", "so", "ta", "te", "ti", "to", "va", "ve", "vi", "vo",
)
ENDINGS = ("", "", "n", "s", "r", "z", "k")
DOMAINS = tuple(f"{d}.example" for d in (
    "cern", "desy", "infn", "in2p3", "kit", "nikhef", "pic", "ral", "fnal", "bnl", "triumf",
    "kek", "uni-heidelberg", "ed-ac", "cnaf", "ciemat", "ijs", "cesnet", "ncbj", "ifca"))
GROUP_WORDS = (
    "analysis", "production", "software", "calib", "sim", "reco", "ops", "users", "higgs",
    "top", "exotics", "tracking", "trigger", "detector", "computing", "outreach",
    "students", "alpha", "beta", "gamma", "delta", "data", "jobs", "storage",
)
ROLE_NAMES = ("production", "lcgadmin")
OPERATIONS = {"suspended": "suspend", "removed": "remove"}


@dataclass(frozen=True)
class Population:
    users: int = 100_000
    vos: int = 1_000
    groups: int = 10_000  # subgroups below the VOs' root groups
    nodes: int = 100
    seed: int = 2
    audit_events: int = 0  # further events: VO admins' everyday changes, after the rest


@dataclass
class Group:
    id: int
    vo_id: int
    parent_id: int | None
    path: str
    unix_name: str
    gid: int


@dataclass
class VO:
    id: int
    name: str
    root: Group
    subgroups: list[Group] = field(default_factory=list)
    roles: list[tuple[int, str]] = field(default_factory=list)  # (id, FQAN)


@dataclass
class Summary:
    """What the benchmark needs to know about the loaded data."""

    rows: dict[str, int]
    seconds: dict[str, float]
    vo_sizes: dict[str, int]  # VO name -> memberships (any status)
    node_vos: dict[str, list[str]]  # bench node name -> VO names
    revision: int


class History:
    """Replays what the services record per operation: audit events and revisions."""

    def __init__(self, start: dt.datetime, step: dt.timedelta) -> None:
        self.now, self.step = start, step
        self.seq, self.hash, self.revision = 0, GENESIS, 0
        self.events: list[dict[str, Any]] = []
        self.changes: list[dict[str, Any]] = []

    def tick(self) -> dt.datetime:
        self.now += self.step
        return self.now

    def audit(self, action: str, target_type: str, target_id: str, *,
              vo_id: int | None = None, before: Any = None, after: Any = None,
              actor: str = ACTOR) -> None:
        self.seq += 1
        body = {"seq": self.seq, "at": self.tick().strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "actor": actor, "action": action, "target_type": target_type,
                "target_id": target_id, "vo_id": vo_id, "before": before, "after": after}
        prev, self.hash = self.hash, link_hash(self.hash, body)
        self.events.append({**body, "prev_hash": prev, "hash": self.hash})

    def bump(self) -> int:
        self.revision += 1
        return self.revision

    def publish(self, changes: Iterable[tuple[int, str, uuid.UUID | None, int | None]]) -> None:
        revision = self.bump()
        self.changes += [{"revision": revision, "vo_id": v, "kind": k, "user_id": u,
                          "group_id": g} for v, k, u, g in dict.fromkeys(changes)]

    def drain(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        events, changes = self.events, self.changes
        self.events, self.changes = [], []
        return events, changes


def _spread(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


class Loader:
    def __init__(self, conn: Connection, population: Population) -> None:
        self.conn, self.pop = conn, population
        self.rng = random.Random(population.seed)
        # The history spans the last year (about 8 events per user, 3 per group).
        events = (8 * population.users + 3 * (population.vos + population.groups) + 10
                  + population.audit_events)
        start = dt.datetime.now(dt.UTC) - dt.timedelta(days=365)
        self.history = History(start, dt.timedelta(days=365) / events)
        self.taken: set[str] = set()  # every Unix name handed out
        self.emails: set[str] = set()
        self.counts: dict[str, int] = {}
        self.vos: list[VO] = []
        self.vo_weights: list[float] = []  # cumulative
        self.vo_sizes: dict[int, int] = {}
        self.node_vos: dict[str, list[str]] = {}
        self.membership_id = 0
        self.last_gid: int | None = None
        # Active memberships of active users, as they stand: what load_activity changes.
        self.active: list[_Held] = []
        self.vo_admins: dict[int, list[str]] = {}  # VO id -> actor labels of its admins

    # -- helpers --------------------------------------------------------------------
    def insert(self, table: sa.Table, rows: list[dict[str, Any]]) -> None:
        if rows:
            self.conn.execute(sa.insert(table), rows)
            self.counts[table.name] = self.counts.get(table.name, 0) + len(rows)

    def flush_history(self) -> None:
        events, changes = self.history.drain()
        self.insert(models.AuditEvent.__table__, events)
        self.insert(models.AccountChange.__table__, changes)

    def uuid4(self) -> uuid.UUID:
        return uuid.UUID(int=self.rng.getrandbits(128), version=4)

    # -- VOs, groups, roles, nodes ------------------------------------------------------
    def _tree(self, vo_id: int, name: str, size: int, next_id: int, next_gid: int
              ) -> list[Group]:
        """The root group and ``size`` subgroups: half one level down, half two."""
        level1 = min((size + 1) // 2, len(GROUP_WORDS))
        if size - level1 > level1 * len(GROUP_WORDS):
            raise ValueError(f"{size} groups per VO is more than this generator names")
        made = [Group(next_id, vo_id, None, f"/{name}", name, next_gid)]

        def add(parent: Group, word: str) -> None:
            path = f"{parent.path}/{word}"
            made.append(Group(next_id + len(made), vo_id, parent.id, path,
                              path[1:].replace("/", "_"), next_gid + len(made)))

        for word in self.rng.sample(GROUP_WORDS, level1):
            add(made[0], word)
        children: dict[int, set[str]] = {}
        for _ in range(size - level1):
            parent = self.rng.choice([g for g in made[1:level1 + 1]
                                      if len(children.get(g.id, ())) < len(GROUP_WORDS)])
            used = children.setdefault(parent.id, set())
            word = self.rng.choice([w for w in GROUP_WORDS if w not in used])
            used.add(word)
            add(parent, word)
        return made

    def load_vos(self) -> None:
        vos: list[dict[str, Any]] = []
        groups: list[dict[str, Any]] = []
        names: list[dict[str, Any]] = []
        roles: list[dict[str, Any]] = []
        next_id, next_gid = 1, GID_MIN
        for index, size in enumerate(_spread(self.pop.groups, self.pop.vos)):
            vo_id, name, at = index + 1, f"vo{index + 1:04d}", self.history.tick()
            made = self._tree(vo_id, name, size, next_id, next_gid)
            next_id, next_gid = next_id + len(made), next_gid + len(made)
            vo = VO(vo_id, name, made[0], made[1:])
            self.vos.append(vo)
            vos.append({"id": vo_id, "name": name, "description": f"VO {name}",
                        "created_at": at})
            for g in made:
                assert g.unix_name not in self.taken and len(g.unix_name) <= 32
                self.taken.add(g.unix_name)
                groups.append({"id": g.id, "vo_id": vo_id, "parent_id": g.parent_id,
                               "name": g.path.rsplit("/", 1)[1], "path": g.path,
                               "unix_name": g.unix_name, "gid": g.gid, "description": "",
                               "deleted_at": None, "created_at": at})
                names.append({"name": g.unix_name, "kind": "group", "user_id": None,
                              "group_id": g.id})
            self.history.audit("vo.create", "vo", name, vo_id=vo_id, after={
                "id": vo_id, "name": name, "description": f"VO {name}", "created_at": iso(at),
                "group": _group_record(vo.root)})
            self.history.publish([(vo_id, "group", None, vo.root.id)])
            for g in vo.subgroups:
                self.history.audit("group.create", "group", g.path, vo_id=vo_id,
                                   after=_group_record(g))
                self.history.publish([(vo_id, "group", None, g.id)])
            for role in ROLE_NAMES:
                vo.roles.append((len(roles) + 1, f"/{name}/Role={role}"))
                roles.append({"id": len(roles) + 1, "vo_id": vo_id, "name": role,
                              "description": ""})
                self.history.audit("role.create", "role", f"/{name}/Role={role}", vo_id=vo_id,
                                   after={"name": role, "fqan": f"/{name}/Role={role}",
                                          "description": ""})
        self.last_gid = next_gid - 1
        self.insert(models.VO.__table__, vos)
        self.insert(models.Group.__table__, groups)
        self.insert(models.UnixName.__table__, names)
        self.insert(models.Role.__table__, roles)
        # Zipf-like VO sizes: the VO of rank k draws members with weight 1/(k+2).
        self.vo_weights = list(itertools.accumulate(1 / (k + 2) for k in range(self.pop.vos)))

    def load_nodes(self) -> None:
        count = len(self.vos)
        median = count // 2
        chosen = {
            BIG_NODE: sorted({min(r, count - 1) for r in BIG_NODE_RANKS}),
            TYPICAL_NODE: sorted({max(0, median - 1), median, min(count - 1, median + 1)}),
        }
        for i in range(self.pop.nodes):
            chosen[f"wn{i + 1:04d}.grid.example"] = sorted(
                self.rng.sample(range(count), min(count, self.rng.randint(1, 4))))
        nodes, links = [], []
        for node_id, (name, ranks) in enumerate(chosen.items(), start=1):
            at = self.history.tick()
            vo_names = [self.vos[r].name for r in ranks]
            nodes.append({"id": node_id, "name": name, "description": "worker node",
                          "created_at": at, "last_contact": None,
                          "vos_changed_revision": self.history.bump()})
            links += [{"node_id": node_id, "vo_id": self.vos[r].id} for r in ranks]
            self.history.audit("node.register", "node", name, after={
                "name": name, "description": "worker node", "vos": sorted(vo_names),
                "created_at": iso(at), "last_contact": None})
            if name in (BIG_NODE, TYPICAL_NODE):
                self.node_vos[name] = vo_names
        self.insert(models.Node.__table__, nodes)
        self.insert(models.NodeVO.__table__, links)
        self.flush_history()

    # -- users and memberships ----------------------------------------------------------
    def _username(self, given: str, family: str) -> str:
        base = (given[0] + family)[:24]
        name, n = base, 1
        while True:
            if name not in self.taken:
                try:
                    validate_username(name)
                    return name
                except InvalidInput:
                    pass
            n += 1
            name = f"{base}{n}"

    def _email(self, given: str, family: str) -> str:
        domain = self.rng.choice(DOMAINS)
        email, n = f"{given}.{family}@{domain}", 1
        while email in self.emails:
            n += 1
            email = f"{given}.{family}{n}@{domain}"
        self.emails.add(email)
        return email

    def _pick_vos(self) -> list[VO]:
        wanted = self.rng.choices((1, 2, 3), weights=(5, 3, 2))[0]
        picked: dict[int, VO] = {}
        while len(picked) < min(wanted, len(self.vos)):
            vo = self.rng.choices(self.vos, cum_weights=self.vo_weights)[0]
            picked[vo.id] = vo
        return list(picked.values())

    def _chain(self, vo: VO) -> list[Group]:
        """A random subgroup of ``vo`` and every group above it (top first, no root)."""
        by_id = {g.id: g for g in vo.subgroups}
        chain = [self.rng.choice(vo.subgroups)]
        while chain[0].parent_id != vo.root.id:
            chain.insert(0, by_id[chain[0].parent_id])  # type: ignore[index]
        return chain

    def load_users(self) -> None:
        for start in range(0, self.pop.users, BATCH_USERS):
            batch = _Batch()
            for index in range(start, min(self.pop.users, start + BATCH_USERS)):
                self._user(index, batch)
            self.insert(models.User.__table__, batch.users)
            self.insert(models.UnixName.__table__, batch.names)
            self.insert(models.Membership.__table__, batch.memberships)
            self.insert(models.GroupMembership.__table__, [
                {"membership_id": m, "group_id": g}
                for m, groups in batch.groups.items() for g in groups])
            self.insert(models.RoleAssignment.__table__, [
                {"membership_id": m, "role_id": r}
                for m, held in batch.roles.items() for r, _ in held])
            self.flush_history()

    def _user(self, index: int, batch: _Batch) -> None:
        rng, history = self.rng, self.history
        given = rng.choice(GIVEN)
        family = "".join(rng.choices(SYLLABLES, k=rng.choice((2, 3)))) + rng.choice(ENDINGS)
        username = self._username(given, family)
        self.taken.add(username)
        user_id, at = self.uuid4(), history.tick()
        record = {"id": str(user_id), "username": username, "uid": UID_MIN + index,
                  "gid": UID_MIN + index,
                  "display_name": f"{given.capitalize()} {family.capitalize()}",
                  "email": self._email(given, family), "status": "active",
                  "is_service_admin": False, "created_at": iso(at)}
        history.audit("user.create", "user", str(user_id), after=record)
        draw = rng.random()
        status = "deleted" if draw < 0.005 else "suspended" if draw < 0.02 else "active"
        batch.users.append({"id": user_id, "username": username, "uid": record["uid"],
                            "display_name": record["display_name"], "email": record["email"],
                            "status": status, "is_service_admin": False, "created_at": at,
                            "updated_at": at})
        batch.names.append({"name": username, "kind": "user", "user_id": user_id,
                            "group_id": None})
        held = [self._membership(user_id, username, vo, batch) for vo in self._pick_vos()]
        if status == "active":
            for vo, m in held:
                if m["status"] == "active":
                    self.active.append(_Held(vo, user_id, username, batch.snapshot(vo, m),
                                             list(batch.groups.get(m["id"], []))))
                    admins = self.vo_admins.setdefault(vo.id, [])
                    if len(admins) < ADMINS_PER_VO:
                        admins.append(f"user:{username}")
            return
        if status == "deleted":
            for vo, m in held:
                if m["status"] != "removed":
                    self._set_status(user_id, username, vo, m, "remove", batch)
        history.audit(f"user.{'delete' if status == 'deleted' else 'suspend'}", "user",
                      str(user_id), before=record, after={**record, "status": status})
        history.publish(c for vo, m in held
                        for c in _status_changes(vo, user_id, batch.groups.get(m["id"], [])))

    def _membership(self, user_id: uuid.UUID, username: str, vo: VO, batch: _Batch
                    ) -> tuple[VO, dict[str, Any]]:
        rng, history = self.rng, self.history
        self.membership_id += 1
        self.vo_sizes[vo.id] = self.vo_sizes.get(vo.id, 0) + 1
        draw = rng.random()
        final = ("active" if draw < 0.90 else "suspended" if draw < 0.95
                 else "pending" if draw < 0.99 else "removed")
        at = history.now
        m: dict[str, Any] = {"id": self.membership_id, "user_id": user_id, "vo_id": vo.id,
             "username": username,
             "status": "pending" if final == "pending" else "active", "expires_on": None,
             "approved_by": None, "reason": "", "requested_at": at, "updated_at": at}
        if final == "pending":
            m["reason"] = "I would like to run jobs"
        elif rng.random() < 0.1:
            m["expires_on"] = (at + dt.timedelta(days=rng.randint(400, 1100))).date()
        batch.memberships.append(m)
        target = f"{vo.name}:{username}"
        history.audit("membership.request" if final == "pending" else "membership.add",
                      "membership", target, vo_id=vo.id,
                      actor=f"user:{username}" if final == "pending" else ACTOR,
                      after=batch.snapshot(vo, m))
        history.publish(_status_changes(vo, user_id, []))
        if final == "pending":
            return vo, m
        if vo.subgroups and rng.random() < 0.6:
            for _ in range(1 if rng.random() < 0.85 else 2):
                have = batch.groups.setdefault(m["id"], [])
                chain = [g for g in self._chain(vo) if g.id not in have]
                if not chain:
                    continue
                have += [g.id for g in chain]
                batch.paths.setdefault(m["id"], []).extend(g.path for g in chain)
                history.audit("group.member.add", "group", chain[-1].path, vo_id=vo.id,
                              after={"user": username, "added": [g.path for g in chain]})
                history.publish((vo.id, "member", user_id, g.id) for g in chain)
        if rng.random() < 0.02:
            role = rng.choice(vo.roles)
            batch.roles[m["id"]] = [role]
            history.audit("role.assign", "membership", target, vo_id=vo.id,
                          after={"role": role[1]})
        if final != "active":
            self._set_status(user_id, username, vo, m, OPERATIONS[final], batch)
        return vo, m

    def _set_status(self, user_id: uuid.UUID, username: str, vo: VO, m: dict[str, Any],
                    operation: str, batch: _Batch) -> None:
        groups = list(batch.groups.get(m["id"], []))
        before = batch.snapshot(vo, m)
        m["status"] = {"remove": "removed", "suspend": "suspended"}[operation]
        if operation == "remove":
            for held in (batch.groups, batch.paths, batch.roles):
                held.pop(m["id"], None)
        self.history.audit(f"membership.{operation}", "membership", f"{vo.name}:{username}",
                           vo_id=vo.id, before=before, after=batch.snapshot(vo, m))
        self.history.publish(_status_changes(vo, user_id, groups))

    # -- everyday changes ---------------------------------------------------------------
    def load_activity(self) -> None:
        """``audit_events`` more events (in pairs that leave every row as it was): VO
        admins suspending and reinstating a member (published like the services do),
        granting and revoking a role, setting and clearing an expiry date. Members are
        drawn evenly, so a VO's share of the events follows its size."""
        if not self.active:
            return
        rng, history = self.rng, self.history
        for start in range(0, self.pop.audit_events, 2 * BATCH_ACTIVITY):
            for _ in range(min(BATCH_ACTIVITY, (self.pop.audit_events - start) // 2)):
                held = rng.choice(self.active)
                vo, snap = held.vo, held.snapshot
                admins = self.vo_admins[vo.id]
                actor = rng.choice(admins) if rng.random() < 0.9 else ACTOR
                target = f"{vo.name}:{held.username}"
                draw = rng.random()
                if draw < 0.4:
                    paths = [g for g in snap["groups"] if g != f"/{vo.name}"]
                    suspended = {**snap, "status": "suspended", "groups": paths}
                    for operation, before, after in (("suspend", snap, suspended),
                                                     ("reinstate", suspended, snap)):
                        history.audit(f"membership.{operation}", "membership", target,
                                      vo_id=vo.id, before=before, after=after, actor=actor)
                        history.publish(_status_changes(vo, held.user_id, held.groups))
                elif draw < 0.7 and len(snap["roles"]) < len(vo.roles):
                    fqan = next(f for _, f in vo.roles if f not in snap["roles"])
                    for action in ("role.assign", "role.revoke"):
                        history.audit(action, "membership", target, vo_id=vo.id,
                                      after={"role": fqan}, actor=actor)
                else:
                    day = (history.now + dt.timedelta(days=rng.randint(30, 700))).date()
                    dated = {**snap, "expires_on": iso(day)}
                    for before, after in ((snap, dated), (dated, snap)):
                        history.audit("membership.expiry", "membership", target,
                                      vo_id=vo.id, before=before, after=after, actor=actor)
            self.flush_history()

    # -- the end ----------------------------------------------------------------------
    def finish(self) -> None:
        counters = models.Counter.__table__
        last = {"uid": UID_MIN + self.pop.users - 1 if self.pop.users else None,
                "gid": self.last_gid, "revision": self.history.revision or None}
        for name, value in last.items():
            self.conn.execute(sa.update(counters).where(counters.c.name == name)
                              .values(value=value))
        head = models.AuditHead.__table__
        self.conn.execute(sa.update(head).where(head.c.id == 1)
                          .values(seq=self.history.seq, hash=self.history.hash))
        if self.conn.dialect.name == "postgresql":
            # Explicit ids do not advance PostgreSQL's sequences: move them on.
            for table in ("vos", "groups", "roles", "nodes", "memberships"):
                self.conn.exec_driver_sql(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                    f" (SELECT max(id) FROM {table}))")


@dataclass
class _Held:
    """An active membership of an active user, as it stands after loading."""

    vo: VO
    user_id: uuid.UUID
    username: str
    snapshot: dict[str, Any]  # MembershipService._snapshot
    groups: list[int]


@dataclass
class _Batch:
    """Rows of one batch of users, and each membership's groups and roles so far."""

    users: list[dict[str, Any]] = field(default_factory=list)
    names: list[dict[str, Any]] = field(default_factory=list)
    memberships: list[dict[str, Any]] = field(default_factory=list)
    groups: dict[int, list[int]] = field(default_factory=dict)  # membership id -> group ids
    paths: dict[int, list[str]] = field(default_factory=dict)  # membership id -> paths
    roles: dict[int, list[tuple[int, str]]] = field(default_factory=dict)

    def snapshot(self, vo: VO, m: dict[str, Any]) -> dict[str, Any]:
        """MembershipService._snapshot of ``m`` as it stands."""
        paths = sorted(self.paths.get(m["id"], []))
        return {"status": m["status"], "expires_on": iso(m["expires_on"]),
                "groups": [f"/{vo.name}", *paths] if m["status"] == "active" else paths,
                "roles": sorted(f for _, f in self.roles.get(m["id"], [])),
                "reason": m["reason"]}


def _group_record(g: Group) -> dict[str, Any]:
    return {"path": g.path, "unix_name": g.unix_name, "gid": g.gid, "description": "",
            "deleted": False}


def _status_changes(vo: VO, user_id: uuid.UUID, groups: Iterable[int]
                    ) -> list[tuple[int, str, uuid.UUID | None, int | None]]:
    """What MembershipService.status_changes publishes: the user, and every group."""
    return [(vo.id, "user", user_id, None)] + [
        (vo.id, "member", user_id, g) for g in sorted({vo.root.id, *groups})]


def load(url: str, population: Population, analyze: bool = False) -> Summary:
    """Fill the (migrated, empty) database at ``url``; return what was loaded.

    On PostgreSQL ``VACUUM ANALYZE`` follows, as autovacuum would do within minutes of a
    bulk load; SQLite is analysed only when asked (the service never runs ANALYZE)."""
    engine = sa.create_engine(url)
    seconds: dict[str, float] = {}
    try:
        with engine.connect() as conn:
            loader = Loader(conn, population)
            for phase, step in (("vos_groups", loader.load_vos), ("nodes", loader.load_nodes),
                                ("users_memberships", loader.load_users),
                                ("activity", loader.load_activity),
                                ("counters", loader.finish), ("commit", conn.commit)):
                started = time.perf_counter()
                step()
                seconds[phase] = time.perf_counter() - started
            started = time.perf_counter()
            if engine.dialect.name == "postgresql":
                conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
                    "VACUUM ANALYZE")
                seconds["vacuum_analyze"] = time.perf_counter() - started
            elif analyze:
                conn.exec_driver_sql("ANALYZE")
                conn.commit()
                seconds["analyze"] = time.perf_counter() - started
    finally:
        engine.dispose()
    by_id = {vo.id: vo.name for vo in loader.vos}
    return Summary(rows=loader.counts, seconds=seconds,
                   vo_sizes={by_id[i]: n for i, n in sorted(loader.vo_sizes.items(),
                                                            key=lambda p: -p[1])},
                   node_vos=loader.node_vos, revision=loader.history.revision)


# -- a fresh database, and the options that describe it ---------------------------------
@contextmanager
def database(backend: str, pg_url: str | None, workdir: str) -> Iterator[str]:
    """A fresh, empty database of ``backend``; dropped (PostgreSQL) at the end."""
    if backend == "sqlite":
        yield f"sqlite:///{workdir}/xos.sqlite3"
        return
    maintenance = make_url(pg_url or _postgres_url())
    name = f"xos_bench_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    engine = sa.create_engine(maintenance, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        try:
            yield maintenance.set(database=name).render_as_string(hide_password=False)
        finally:
            with engine.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        engine.dispose()


def _postgres_url() -> str:
    out = subprocess.run(["bash", str(ROOT / "scripts" / "postgres.sh")], check=True,
                         capture_output=True, text=True).stdout
    return out.strip().splitlines()[-1]


def migrate(url: str) -> None:
    """The schema from the real migrations."""
    app = create_app({"SQLALCHEMY_DATABASE_URI": url})
    with app.app_context():
        flask_migrate.upgrade()
        db.engine.dispose()


def add_database_options(parser: argparse.ArgumentParser) -> None:
    """The options every bench on a loaded database shares: backend and population."""
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--users", type=int, default=Population.users)
    parser.add_argument("--vos", type=int, default=Population.vos)
    parser.add_argument("--groups", type=int, default=Population.groups)
    parser.add_argument("--nodes", type=int, default=Population.nodes)
    parser.add_argument("--seed", type=int, default=Population.seed)
    parser.add_argument("--pg-url", help="maintenance URL (default: scripts/postgres.sh)")


def population(args: argparse.Namespace) -> Population:
    return Population(args.users, args.vos, args.groups, args.nodes, args.seed,
                      getattr(args, "audit_events", 0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="SQLAlchemy URL of a migrated, empty database")
    parser.add_argument("--users", type=int, default=Population.users)
    parser.add_argument("--vos", type=int, default=Population.vos)
    parser.add_argument("--groups", type=int, default=Population.groups)
    parser.add_argument("--nodes", type=int, default=Population.nodes)
    parser.add_argument("--seed", type=int, default=Population.seed)
    parser.add_argument("--audit-events", type=int, default=0,
                        help="further audit events: VO admins' everyday changes")
    parser.add_argument("--analyze", action="store_true", help="run ANALYZE on SQLite too")
    args = parser.parse_args()
    summary = load(args.url, population(args), args.analyze)
    print(summary.rows)
    print({k: round(v, 2) for k, v in summary.seconds.items()})


if __name__ == "__main__":
    main()
