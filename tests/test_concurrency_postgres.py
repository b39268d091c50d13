"""Several service processes on one PostgreSQL database: UID/GID allocation stays unique,
revisions commit in order and the audit chain stays linear.

Everything here runs real OS processes (gunicorn service processes, spawned clients and
allocators) against a real PostgreSQL server, on a database of each test's own that is
dropped afterwards. Counts are fixed, every wait has a deadline, and no assertion
depends on how long anything took.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import flask_migrate
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session
from support import SECRET_KEY, make_app

import vo_service.models  # noqa: F401  (every mapper configured, also in spawned children)
from vo_service.apikeys.services import ApiKeyService
from vo_service.audit.chain import AuditLog, verify
from vo_service.audit.models import AuditEvent
from vo_service.authz import Actor
from vo_service.config import DEFAULTS
from vo_service.context import ServiceContext
from vo_service.db import db
from vo_service.numbering import NumberAllocator, NumberRange
from vo_service.sync.models import AccountChange, Counter
from vo_service.users.models import User
from vo_service.users.services import UserService
from vo_service.vos.models import VO, Group
from vo_service.vos.services import VOService

pytestmark = pytest.mark.postgresql_only

REPO = Path(__file__).resolve().parent.parent
UIDS = NumberRange(DEFAULTS["UID_MIN"], DEFAULTS["UID_MAX"])  # 200000-399999
GIDS = NumberRange(DEFAULTS["GID_MIN"], DEFAULTS["GID_MAX"])  # 400000-499999
SPAWN = multiprocessing.get_context("spawn")
DEADLINE = 240  # seconds: the most any single wait below may take before the test fails


# -- a database of the test's own ----------------------------------------------------
@pytest.fixture
def pg_url(postgres_server) -> Iterator[str]:
    """A fresh PostgreSQL database built by the migrations; dropped (with FORCE, so any
    connection left behind goes too) when the test ends."""
    url = postgres_server.create("xos_concurrency")
    try:
        app = make_app(url)
        with app.app_context():
            flask_migrate.upgrade()
            db.engine.dispose()
        yield url
    finally:
        postgres_server.drop(url)


def seed(url: str, *, vo: str = "atlas") -> str:
    """A service admin with an API key and one VO; returns the key's secret.

    Audit events: user.create, apikey.issue, vo.create. Revision 1 (the VO's root group)."""
    app = make_app(url)
    with app.app_context():
        ctx = ServiceContext.build(db.session, app.config)
        system = Actor.system("pytest")
        admin = UserService(ctx).create(system, "sysop", "Sysop", is_service_admin=True)
        _, secret = ApiKeyService(ctx).issue(system, user=admin)
        VOService(ctx).create(system, vo)
        db.session.commit()
        db.session.remove()
        db.engine.dispose()
    return secret


# -- service processes ----------------------------------------------------------------
class Service:
    """One gunicorn master with its workers, on a listening socket handed over by fd (no
    port race: the socket listens before gunicorn starts, and is never closed between)."""

    def __init__(self, url: str, instance: Path, workers: int, log: Path) -> None:
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(256)
        self.port = self.listener.getsockname()[1]
        self.log = log
        env = {k: v for k, v in os.environ.items() if not k.startswith("XOS_")}
        env.update(XOS_SQLALCHEMY_DATABASE_URI=url, XOS_INSTANCE_PATH=str(instance),
                   XOS_SECRET_KEY=SECRET_KEY)
        fd = self.listener.fileno()
        try:
            with open(log, "wb") as out:
                self.process = subprocess.Popen(
                    [sys.executable, "-m", "gunicorn", "--bind", f"fd://{fd}",
                     "--workers", str(workers), "--worker-class", "sync", "--timeout", "120",
                     "--graceful-timeout", "10", "--log-level", "warning",
                     "vo_service:create_app()"],
                    cwd=REPO, env=env, pass_fds=(fd,), stdout=out, stderr=subprocess.STDOUT,
                    start_new_session=True)
        except BaseException:
            self.listener.close()
            raise

    def wait_ready(self) -> None:
        deadline = time.monotonic() + DEADLINE
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"gunicorn exited with {self.process.returncode}:\n"
                                     + self.log_tail())
            try:
                status, body = request(self.port, "GET", "/healthz", None, None, timeout=5)
                if status == 200 and body == {"status": "ok"}:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("gunicorn did not answer /healthz:\n" + self.log_tail())
            time.sleep(0.1)

    def worker_pids(self) -> set[int]:
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return {int(p) for p in children.read_text().split()} if children.exists() else set()

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        """Stop the master and its workers (one process group, started by us)."""
        try:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(self.process.pid, signal.SIGKILL)
                    self.process.wait(timeout=30)
            # workers left over by a master that died would still be in its group
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        finally:
            self.listener.close()


def request(port: int, method: str, path: str, key: str | None, body: Any,
            timeout: float = 120) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        conn.request(method, path, body=None if body is None else json.dumps(body),
                     headers=headers)
        response = conn.getresponse()
        data = response.read()
        try:
            parsed = json.loads(data) if data else None
        except ValueError:
            parsed = data[:500].decode(errors="replace")
        return response.status, parsed
    finally:
        conn.close()


def _client(key: str, jobs: list[tuple[str, int, str, dict[str, Any]]], threads: int
            ) -> list[tuple[str, str, int, Any]]:
    """One client process: ``threads`` threads sending ``jobs`` (kind, port, path, body)."""

    def send(job: tuple[str, int, str, dict[str, Any]]) -> tuple[str, str, int, Any]:
        kind, port, path, body = job
        name = body.get("username") or body["path"]
        try:
            status, answer = request(port, "POST", path, key, body)
        except Exception as exc:  # recorded, and failed on by the test
            return kind, name, -1, repr(exc)
        return kind, name, status, answer

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(send, jobs))


SERVICES = 2  # gunicorn masters (replicas, one port each) ...
WORKERS = 2  # ... with this many service processes each: 4 service processes in all
CLIENTS = 4  # client processes ...
THREADS = 4  # ... of this many threads each: 16 requests in flight
N_USERS = 2000  # POST /api/v1/users
N_GROUPS = 200  # POST /api/v1/vos/atlas/groups


def test_many_service_processes_allocate_unique_numbers(pg_url, tmp_path):
    key = seed(pg_url)
    jobs: list[tuple[str, int, str, dict[str, Any]]] = []
    services: list[Service] = []
    try:
        for i in range(SERVICES):
            services.append(Service(pg_url, tmp_path / f"instance{i}", WORKERS,
                                    tmp_path / f"gunicorn{i}.log"))
        for service in services:
            service.wait_ready()
        ports = [s.port for s in services]

        # users and groups interleaved, alternating between the replicas
        every = N_USERS // N_GROUPS
        for i in range(N_USERS):
            jobs.append(("user", ports[i % SERVICES], "/api/v1/users",
                         {"username": f"u{i:05d}", "display_name": f"User {i}"}))
            if i % every == every - 1:
                g = i // every
                jobs.append(("group", ports[(i + 1) % SERVICES], "/api/v1/vos/atlas/groups",
                             {"path": f"/atlas/g{g:04d}"}))
        batches = [jobs[c::CLIENTS] for c in range(CLIENTS)]
        pool = SPAWN.Pool(CLIENTS)
        try:
            pending = pool.starmap_async(_client, [(key, b, THREADS) for b in batches])
            results = [r for batch in pending.get(timeout=DEADLINE) for r in batch]
            pool.close()
        finally:
            pool.terminate()
            pool.join()

        # every service process served requests, on a database session of its own
        workers = set().union(*(s.worker_pids() for s in services))
        assert len(workers) == SERVICES * WORKERS
        engine = sa.create_engine(pg_url)
        try:
            with engine.connect() as conn:
                sessions = conn.execute(sa.text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
                )).scalar_one()
            assert sessions >= SERVICES * WORKERS
        finally:
            engine.dispose()
    finally:
        for service in services:
            service.stop()
    logs = "\n".join(s.log_tail() for s in services)

    # every request succeeded
    assert len(results) == len(jobs) == N_USERS + N_GROUPS
    failed = [r for r in results if r[2] != 201]
    assert not failed, f"{len(failed)} failed, e.g. {failed[:5]}\n{logs}"
    users = {name: body for kind, name, _, body in results if kind == "user"}
    groups = {name: body for kind, name, _, body in results if kind == "group"}
    assert len(users) == N_USERS and len(groups) == N_GROUPS
    answered_uids = [u["uid"] for u in users.values()]
    answered_gids = [g["gid"] for g in groups.values()]
    assert len(set(answered_uids)) == N_USERS, "a uid was answered twice"
    assert len(set(answered_gids)) == N_GROUPS, "a gid was answered twice"
    assert all(u["gid"] == u["uid"] for u in users.values())

    engine = sa.create_engine(pg_url)
    try:
        with Session(engine) as session:
            stored_users = dict(session.execute(sa.select(User.username, User.uid)).all())
            stored_groups = dict(session.execute(sa.select(Group.path, Group.gid)).all())
            counters = dict(session.execute(sa.select(Counter.name, Counter.value)).all())
            changes = session.execute(sa.select(
                AccountChange.revision, AccountChange.kind, AccountChange.group_id,
                Group.gid).join(Group, Group.id == AccountChange.group_id)
                .order_by(AccountChange.revision)).all()
            change_rows = session.scalar(sa.select(sa.func.count()).select_from(AccountChange))
            user_events = [e.after["uid"] for e in session.scalars(
                sa.select(AuditEvent).where(AuditEvent.action == "user.create")
                .order_by(AuditEvent.seq))]
            verdict = verify(session)
    finally:
        engine.dispose()

    # the database holds exactly what the clients were told, nothing more
    assert len(stored_users) == N_USERS + 1  # and sysop
    assert {n: stored_users[n] for n in users} == {n: b["uid"] for n, b in users.items()}
    assert len(stored_groups) == N_GROUPS + 1  # and the VO's root group /atlas
    assert {p: stored_groups[p] for p in groups} == {p: b["gid"] for p, b in groups.items()}
    uids, gids = sorted(stored_users.values()), sorted(stored_groups.values())
    assert all(n in UIDS for n in uids) and all(n in GIDS for n in gids)
    # unique and, as nothing rolled back, not one number lost
    assert uids == list(range(UIDS.low, UIDS.low + N_USERS + 1))
    assert gids == list(range(GIDS.low, GIDS.low + N_GROUPS + 1))
    assert counters["uid"] == uids[-1] and counters["gid"] == gids[-1]
    # uids were handed out in the order the audit chain records their creation:
    # allocation really was serialised across the processes
    assert user_events == uids

    # one revision per group creation (the VO's creation was revision 1); user creation
    # touches no node's accounts, so it publishes none
    revisions = [c.revision for c in changes]
    assert counters["revision"] == 1 + N_GROUPS
    assert change_rows == len(changes)
    assert revisions == list(range(1, 2 + N_GROUPS)), "revisions have gaps or repeats"
    assert {c.kind for c in changes} == {"group"}
    # revision order is gid order: both come from one serialised transaction
    assert [c.gid for c in changes] == gids

    assert verdict.ok, verdict
    assert verdict.events == 3 + N_USERS + N_GROUPS


# -- allocators in separate processes, straight on the database ------------------------
ALLOCATORS = 4
ROUNDS = 500  # per allocator: 2,000 allocations in all
ROLLBACK_EVERY = 6  # every sixth transaction allocates, writes its row, and rolls back


def _allocator(url: str, worker: int, rounds: int, vo_id: int, barrier: Any, results: Any
               ) -> None:
    """Allocate ``rounds`` numbers (uids and gids in turn), each in its own transaction
    that stores a row using the number, then commits or rolls back.

    Records (pool, number, ticket, committed); the ticket comes from a sequence read
    while the allocation still holds its locks, so tickets order all allocations."""
    engine = sa.create_engine(url)
    out: list[tuple[str, int, int, bool]] = []
    error = None
    try:
        barrier.wait(timeout=DEADLINE)
        for i in range(rounds):
            pool = "uid" if (i + worker) % 2 == 0 else "gid"
            commit = i % ROLLBACK_EVERY != ROLLBACK_EVERY - 1
            name = f"{'c' if commit else 'r'}{worker}x{i}"
            with Session(engine) as session:
                numbers = NumberAllocator(session, AuditLog(session), UIDS, GIDS)
                if pool == "uid":
                    number = numbers.allocate_uid()
                    session.add(User(username=name, uid=number, display_name=name))
                else:
                    number = numbers.allocate_gid()
                    session.add(Group(vo_id=vo_id, name=name, path=f"/{name}", unix_name=name,
                                      gid=number))
                session.flush()
                ticket = session.execute(sa.text("SELECT nextval('xos_test_ticket')")
                                         ).scalar_one()
                if commit:
                    session.commit()
                else:
                    session.rollback()
            out.append((pool, number, ticket, commit))
    except Exception as exc:
        error = repr(exc)
    finally:
        engine.dispose()
        results.put((worker, out, error))


def test_allocator_processes_never_hand_out_a_committed_number_twice(pg_url):
    engine = sa.create_engine(pg_url)
    try:
        with Session(engine) as session:
            session.execute(sa.text("CREATE SEQUENCE xos_test_ticket"))
            vo = VO(name="pool")
            session.add(vo)
            session.commit()
            vo_id = vo.id

        barrier = SPAWN.Barrier(ALLOCATORS)
        results = SPAWN.Queue()
        processes = [SPAWN.Process(target=_allocator,
                                   args=(pg_url, w, ROUNDS, vo_id, barrier, results))
                     for w in range(ALLOCATORS)]
        for p in processes:
            p.start()
        try:
            reports = [results.get(timeout=DEADLINE) for _ in processes]
        finally:
            for p in processes:
                p.join(timeout=30)
                if p.is_alive():
                    p.kill()
                    p.join()
            results.close()
            results.join_thread()
        assert [p.exitcode for p in processes] == [0] * ALLOCATORS
        errors = [(w, e) for w, _, e in reports if e]
        assert not errors, errors
        allocations = sorted((a for _, out, _ in reports for a in out), key=lambda a: a[2])
        assert len(allocations) == ALLOCATORS * ROUNDS

        with Session(engine) as session:
            stored_uids = dict(session.execute(sa.select(User.username, User.uid)).all())
            stored_gids = dict(session.execute(sa.select(Group.path, Group.gid)).all())
            counters = dict(session.execute(sa.select(Counter.name, Counter.value)).all())
            # one more allocation after everything: a fresh number
            numbers = NumberAllocator(session, AuditLog(session), UIDS, GIDS)
            next_uid, next_gid = numbers.allocate_uid(), numbers.allocate_gid()
            session.rollback()
    finally:
        engine.dispose()

    # A ticket is taken while its allocation still holds the locks it took (audit head,
    # counter row), so ticket order is the order in which allocations held them.
    assert len({a[2] for a in allocations}) == len(allocations)
    committed: dict[str, list[int]] = {"uid": [], "gid": []}
    rolled_back: dict[str, list[int]] = {"uid": [], "gid": []}
    for pool, number, _, commit in allocations:
        assert number in (UIDS if pool == "uid" else GIDS)
        # no allocation, committed or not, returned a number that an earlier transaction
        # had committed; and allocation is serialised: committed numbers only grow
        assert number not in committed[pool], (pool, number)
        if committed[pool]:
            assert number > committed[pool][-1], (pool, number, committed[pool][-1])
        (committed if commit else rolled_back)[pool].append(number)

    per_pool = ALLOCATORS * ROUNDS // 2  # each allocator alternates between the pools
    assert len(rolled_back["uid"]) + len(rolled_back["gid"]) == \
        ALLOCATORS * (ROUNDS // ROLLBACK_EVERY)
    for pool in ("uid", "gid"):
        assert len(committed[pool]) == len(set(committed[pool]))
        assert len(committed[pool]) + len(rolled_back[pool]) == per_pool
    # the rows stored are exactly the committed transactions' rows: no row of a
    # rolled-back transaction, no number without its row
    assert sorted(stored_uids.values()) == sorted(committed["uid"])
    assert all(name.startswith("c") for name in stored_uids)
    assert sorted(v for p, v in stored_gids.items()) == sorted(committed["gid"])
    assert all(path.startswith("/c") for path in stored_gids)
    # the counters stand at (at least) the highest committed number, so the next
    # allocation is fresh. (A rolled-back number may be handed out again, as the rollback
    # undoes the counter step too; the replay above shows it then went to one later
    # transaction only, never after a commit of it.)
    assert counters["uid"] >= max(committed["uid"])
    assert counters["gid"] >= max(committed["gid"])
    assert next_uid > max(committed["uid"]) and next_gid > max(committed["gid"])


# -- revisions commit in order --------------------------------------------------------
WRITERS = 3
WRITER_ROUNDS = 100  # per writer; every fifth rolls back after publishing its revision
WRITER_ROLLBACK_EVERY = 5


def _writer(url: str, worker: int, rounds: int, barrier: Any, results: Any) -> None:
    """Create groups through the service (each publishes one revision); now and then
    publish and roll back instead."""
    engine = sa.create_engine(url)
    created, error = 0, None
    try:
        barrier.wait(timeout=DEADLINE)
        system = Actor.system(f"writer{worker}")
        for i in range(rounds):
            with Session(engine) as session:
                ctx = ServiceContext.build(session, DEFAULTS)
                vos = VOService(ctx)
                vos.create_group(system, vos.get("atlas"), f"/atlas/w{worker}x{i}")
                if i % WRITER_ROLLBACK_EVERY == WRITER_ROLLBACK_EVERY - 1:
                    session.rollback()
                else:
                    session.commit()
                    created += 1
    except Exception as exc:
        error = repr(exc)
    finally:
        engine.dispose()
        results.put((worker, created, error))


class Follower:
    """Reads like a node syncing: "every change since revision N", each poll in a new
    transaction, then moves N to the highest revision it saw."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.since = 0
        self.seen: set[int] = set()
        self.steps = 0

    def poll(self) -> None:
        with self.engine.connect() as conn:
            new = conn.execute(sa.text(
                "SELECT DISTINCT revision FROM account_changes WHERE revision > :n"),
                {"n": self.since}).scalars().all()
        if new:
            self.seen.update(new)
            self.since = max(new)
            self.steps += 1


def check_counter(engine: sa.Engine) -> tuple[int, int]:
    """Read the revision counter, then (in a later transaction) how many revisions at or
    below it are visible."""
    with engine.connect() as conn:
        revision = conn.execute(sa.text(
            "SELECT coalesce(value, 0) FROM counters WHERE name = 'revision'")).scalar_one()
    with engine.connect() as conn:
        visible = conn.execute(sa.text(
            "SELECT count(DISTINCT revision) FROM account_changes WHERE revision <= :r"),
            {"r": revision}).scalar_one()
    return revision, visible


def test_revisions_become_visible_in_order(pg_url):
    seed(pg_url)  # revision 1: the VO atlas
    engine = sa.create_engine(pg_url)
    try:
        barrier = SPAWN.Barrier(WRITERS + 1)
        results = SPAWN.Queue()
        processes = [SPAWN.Process(target=_writer,
                                   args=(pg_url, w, WRITER_ROUNDS, barrier, results))
                     for w in range(WRITERS)]
        follower = Follower(engine)
        observed: list[tuple[int, int]] = []
        for p in processes:
            p.start()
        try:
            barrier.wait(timeout=DEADLINE)
            deadline = time.monotonic() + DEADLINE
            while any(p.is_alive() for p in processes) and time.monotonic() < deadline:
                follower.poll()
                observed.append(check_counter(engine))
            reports = [results.get(timeout=DEADLINE) for _ in processes]
        finally:
            for p in processes:
                p.join(timeout=30)
                if p.is_alive():
                    p.kill()
                    p.join()
            results.close()
            results.join_thread()
        assert [p.exitcode for p in processes] == [0] * WRITERS
        errors = [(w, e) for w, _, e in reports if e]
        assert not errors, errors
        follower.poll()  # after the writers: whatever is left
        with engine.connect() as conn:
            final = conn.execute(sa.text(
                "SELECT DISTINCT revision FROM account_changes ORDER BY 1")).scalars().all()
            counter = conn.execute(sa.text(
                "SELECT value FROM counters WHERE name = 'revision'")).scalar_one()
    finally:
        engine.dispose()

    created = sum(c for _, c, _ in reports)
    per_writer = WRITER_ROUNDS - WRITER_ROUNDS // WRITER_ROLLBACK_EVERY
    assert created == WRITERS * per_writer
    # one revision per committed change; the rolled-back ones left no trace (not even a
    # gap: the counter step rolled back with them)
    assert final == list(range(1, created + 2)) and counter == created + 1
    # the reader really ran while the writers wrote
    assert follower.steps > 2, follower.steps
    assert any(1 < r < counter for r, _ in observed)
    # a node following "changes since N" missed nothing: no revision ever committed
    # below one it had already seen
    assert follower.seen == set(final)
    # whenever the counter showed R committed, all revisions up to R were visible
    bad = [(r, v) for r, v in observed if v != sum(1 for f in final if f <= r)]
    assert not bad, bad[:10]


def test_the_follower_notices_a_revision_committed_out_of_order(pg_url):
    """The check above can fail: commit revision 2 before revision 1 by hand."""
    engine = sa.create_engine(pg_url)
    try:
        follower = Follower(engine)
        insert = sa.insert(AccountChange)
        with engine.connect() as first, engine.connect() as second:
            first.execute(insert, {"revision": 1, "vo_id": 1, "kind": "group"})
            second.execute(insert, {"revision": 2, "vo_id": 1, "kind": "group"})
            second.commit()
            follower.poll()
            first.commit()
        follower.poll()
        assert follower.seen == {2}  # revision 1 is lost to this node for good
    finally:
        engine.dispose()
