"""Benchmark of the node agent (issue 5): snapshot and delta apply times, the time from a
membership removal to its denial on 100 long-polling agents, and the agent's memory.

    .venv/bin/python bench/bench_node.py            # about 3-4 minutes on a quiet machine
    .venv/bin/python bench/bench_node.py --quick    # smaller sizes: 70 s on a quiet machine
    .venv/bin/python bench/bench_node.py --rev worktree   # the files as they are, not HEAD

The code measured is ``xos_node``, ``nss_plugin`` and ``vo_service`` of commit ``--rev``
(default HEAD), exported with ``git archive`` into a temporary folder (bench/frozen.py),
so that edits to the working tree during a run change nothing.

1. Apply. Documents in the shapes of the service's ``snapshot`` and ``changes`` answers
   (vo_service.sync.services): N users (1,000 and 100,000) in three VOs with ten
   subgroups each, every user in one VO group and one subgroup, 1 % locked (in no
   group). The whole snapshot: ``client.parse_json`` of the answer's bytes (the client's
   strict parse), ``Snapshot.from_json(document, node, limits)``, ``SnapshotStore.save``
   (and the part of it that only serialises: ``canonical(snapshot.to_json())`` +
   SHA-256) and the NSS view the agent serves, ``AccountView.from_snapshot(snapshot,
   LocalAccounts.from_files())``. A ten-change delta (four suspensions, three new
   members, three subgroup adds: 7 users, 6 members added, 8 removed, as the service
   words them) as the agent handles it now: ``parse_json`` of the answer,
   ``Snapshot.apply_changes(answer, limits)`` in memory, ``SnapshotStore.append``
   (one journal line, fsync) and ``AccountView.updated(successor)`` (the in-process
   NSS feed of ``xos-node run``), each alone and the last three as one step. The
   append loops run on a store that has just saved the snapshot whole (``append``
   needs that base, else it saves whole); afterwards the journal must have grown by
   exactly one line per call and the snapshot file must be untouched, or the run
   stops. A restarted agent's ``load()`` of snapshot + journal is checked to give the
   successor. The baseline in the same run writes the same users and groups the way
   nsscache's files backend commits its maps: /etc/passwd- and /etc/group-style lines
   into a temporary file, fsync, rename, for both files, then fsync the directory (no
   index files). Files go to a temporary folder on the machine's disk (ext4, fsync is
   real).
2. Removal to denial. A live VO service (gunicorn, ``gthread`` workers so that a worker
   holds many long-polls at once) on a fresh SQLite database in a temporary folder; a VO
   with ``--agent-users`` members, 100 nodes registered for it, each with its API key,
   and a service admin's API key, all made through the domain services. In this process
   100 ``SyncLoop`` threads, each with its own ``NodeClient`` and ``SnapshotStore``
   folder, take their snapshot and then long-poll (``wait`` = 25 s, the agent's
   default). Each round suspends (even rounds) or removes (odd rounds) one member
   through the API; ``on_change`` notes, per agent, ``time.monotonic()`` when its new
   snapshot shows that user locked or absent (after the agent's save: what PAM and NSS
   would see). p50/p99/max over all agent x round samples, from the moment the API
   request was sent. Also measured: the cost of 100 idle long-polls (nothing changes
   for ``--idle`` seconds): the service's CPU, this process's and the machine's. Peers,
   reported, not measured: SSSD's default ``entry_cache_timeout`` (5400 s) and the
   15-minute cron of nsscache's Debian package.
3. Memory. Fresh processes (``python -c``) read the 100,000-user store file of part 1:
   ``SnapshotStore(dir).load()`` (the agent's snapshot), ``AccountView.from_files(
   nss_plugin.daemon.load_snapshot(path), /etc/passwd, /etc/group)`` (the standalone
   NSS provider's view, as its daemon builds it), both in one process, the agent as
   ``xos-node run`` holds it (``load()`` + ``AccountView.from_snapshot(snapshot,
   LocalAccounts.from_files())``), and, as the peer, ``json.loads`` of the same file.
   Each reports VmRSS and VmHWM from /proc/self/status minus its own VmRSS after the
   imports.

Every timed loop is bounded by a count and a time budget and waits (at most 180 s) for a
quiet machine first (measure.wait_quiet); the machine's busy % while measuring is
recorded. Everything started is stopped and the temporary folders removed at the end,
also on Ctrl-C and SIGTERM. Figures go to stdout and to
``bench/results/node-<time>.{json,md}``.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import hashlib
import json
import logging
import math
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import frozen
from measure import (
    RESULTS,
    Budget,
    HttpClient,
    Stats,
    busy_since,
    cpu_counters,
    gunicorn_process,
    machine_basics,
    save_results,
    timed_loop,
    wait_quiet,
)

ROOT = Path(__file__).resolve().parent.parent
#: the agent and the NSS provider are measured too: export them with the service
frozen.PACKAGES = (*frozen.PACKAGES, "xos_node", "nss_plugin")  # type: ignore[assignment]
API = "/api/v1"
NODE = "wn0001.bench.example"
VOS = ("atlas", "cms", "lhcb")
SUBGROUPS = 10
UID0, GID0 = 200_000, 400_000
SSSD_ENTRY_CACHE_TIMEOUT = 5400  # sssd.conf(5), default of entry_cache_timeout (reported)
NSSCACHE_CRON_MINUTES = 15  # nsscache's Debian cron.d: "update the cache 15 minutely"
GOAL_P99_S = 2.0
PASSWORD = "x"
os.environ.setdefault("XOS_SECRET_KEY", "benchmark secret key, not for production use")
os.environ.setdefault("XOS_CA_PASSPHRASE", "benchmark CA passphrase")


# -- 1. documents in the service's shapes ---------------------------------------------
def _name(i: int) -> str:
    return f"u{i:07d}"


def _vo_of(i: int) -> int:
    return (0, 0, 0, 0, 0, 1, 1, 1, 2, 2)[i % 10]  # half atlas, 30 % cms, 20 % lhcb


def _sub_of(i: int) -> int:
    return (i // 10) % SUBGROUPS


def _locked(i: int) -> bool:
    return i % 100 == 99


def _user(i: int, name: str | None = None, locked: bool = False) -> dict[str, Any]:
    name = name or _name(i)
    return {"id": str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{name}.bench")), "name": name,
            "uid": UID0 + i, "gid": UID0 + i, "display_name": f"Bench User {i}",
            "locked": locked}


def _groups_meta() -> list[tuple[str, int, str, str]]:
    """(unix name, gid, path, vo) of the node's groups, by path."""
    out = []
    for v, vo in enumerate(VOS):
        out.append((vo, GID0 + v * 100, f"/{vo}", vo))
        out += [(f"{vo}_g{s}", GID0 + v * 100 + 1 + s, f"/{vo}/g{s}", vo)
                for s in range(SUBGROUPS)]
    return sorted(out, key=lambda g: g[2])


def snapshot_document(n: int, revision: int = 1000) -> dict[str, Any]:
    """A snapshot answer for ``n`` users, as ``SyncService.snapshot`` builds it."""
    members: dict[str, list[str]] = collections.defaultdict(list)
    users = []
    for i in range(n):
        locked = _locked(i)
        users.append(_user(i, locked=locked))
        if not locked:
            vo = VOS[_vo_of(i)]
            members[vo].append(_name(i))
            members[f"{vo}_g{_sub_of(i)}"].append(_name(i))
    return {"node": NODE, "revision": revision, "vos": sorted(VOS), "users": users,
            "groups": [{"name": name, "gid": gid, "path": path, "vo": vo,
                        "members": sorted(members.get(name, []))}
                       for name, gid, path, vo in _groups_meta()]}


def changes_document(n: int, since: int = 1000) -> dict[str, Any]:
    """Ten changes since ``since``: four suspensions, three new members, three subgroup
    additions; the lists as ``SyncService.changes`` words them."""
    users, added, removed = [], [], []
    for i in (0, 1, 2, 3):  # active users: suspended, so locked and out of their groups
        users.append(_user(i, locked=True))
        vo = VOS[_vo_of(i)]
        removed += [{"user": _name(i), "group": vo},
                    {"user": _name(i), "group": f"{vo}_g{_sub_of(i)}"}]
    for k in range(3):  # new users, new members of atlas
        name = f"new{k:04d}"
        users.append(_user(n + k, name=name))
        added.append({"user": name, "group": "atlas"})
    for i in (10, 11, 12):  # existing active users into one more subgroup of their VO
        vo = VOS[_vo_of(i)]
        added.append({"user": _name(i), "group": f"{vo}_g{(_sub_of(i) + 5) % SUBGROUPS}"})
    return {"node": NODE, "since": since, "revision": since + 10, "resync_required": False,
            "users": sorted(users, key=lambda u: u["name"]), "groups": [],
            "removed_groups": [],
            "members_added": sorted(added, key=lambda p: (p["user"], p["group"])),
            "members_removed": sorted(removed, key=lambda p: (p["user"], p["group"]))}


def nsscache_commit(directory: Path, document: dict[str, Any]) -> None:
    """The baseline: passwd and group maps written as nsscache's files backend commits
    them (temporary file, write, fsync, rename), then the directory fsynced."""
    passwd = "".join(f"{u['name']}:x:{u['uid']}:{u['gid']}:{u['display_name']}:"
                     f"/home/{u['name']}:/bin/bash\n" for u in document["users"])
    group = "".join(f"{g['name']}:x:{g['gid']}:{','.join(g['members'])}\n"
                    for g in document["groups"])
    for name, text in (("passwd.cache", passwd), ("group.cache", group)):
        temporary = directory / f".{name}.tmp"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, directory / name)
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _row(key: str, name: str, stats: Stats) -> dict[str, Any]:
    return {"key": key, "name": name, **stats.summary()}


def _journal_state(store: Any) -> tuple[int, int, int, int]:
    """(inode, size, mtime_ns) of the snapshot file and the journal's size."""
    info = store.path.stat()
    journal = store.journal.stat().st_size if store.journal.exists() else 0
    return info.st_ino, info.st_size, info.st_mtime_ns, journal


def journalled(store: Any, snapshot: Any, line: int, label: str,
               call: Any, budget: Budget, warmup: int) -> tuple[Stats, dict[str, Any]]:
    """``timed_loop(call)`` on a store that has just saved ``snapshot`` whole (so
    ``append`` has a base and an empty journal), then a check that every call journalled
    one line of ``line`` bytes and none rewrote the snapshot file."""
    store.save(snapshot)
    calls = [0]

    def counted(i: int) -> None:
        calls[0] += 1
        call(i)

    before = _journal_state(store)
    stats = timed_loop(counted, budget, warmup=warmup)
    after = _journal_state(store)
    grew = after[3] - before[3]
    check = {"what": label, "calls": calls[0], "line_bytes": line, "journal_grew": grew,
             "snapshot_file_untouched": after[:3] == before[:3],
             "ok": grew == calls[0] * line and after[:3] == before[:3]}
    if not check["ok"]:
        raise RuntimeError(f"{label}: not journalled as expected: {check}")
    return stats, check


def measure_apply(n: int, work: Path, quick: bool) -> dict[str, Any]:
    """Part 1 for ``n`` users; leaves the store file in ``work/store-<n>``."""
    from nss_plugin.accounts import AccountView, LocalAccounts
    from xos_node.client import parse_json
    from xos_node.journal import entry_bytes
    from xos_node.model import DEFAULT_LIMITS, Snapshot
    from xos_node.store import COMPACT_AT, SnapshotStore, canonical

    big = n >= 50_000
    runs = (3 if quick else 15) if big else (30 if quick else 100)
    delta_runs = runs * (10 if big else 3)
    seconds = 60.0 if big else 20.0
    document = snapshot_document(n)
    wire = json.dumps(document).encode()
    delta = changes_document(n)
    delta_wire = json.dumps(delta).encode()
    store = SnapshotStore(work / f"store-{n}")
    baseline_dir = work / f"nsscache-{n}"
    baseline_dir.mkdir()
    snapshot = Snapshot.from_json(document, NODE, DEFAULT_LIMITS)
    successor = snapshot.apply_changes(delta, DEFAULT_LIMITS)
    assert successor.users["u0000000"].locked and "new0000" in successor.users
    assert successor.revision == snapshot.revision + 10
    assert successor.touched is not None and successor.touched.since == snapshot.revision
    local = LocalAccounts.from_files()
    view = AccountView.from_snapshot(snapshot, local)
    followed = view.updated(successor)
    whole = AccountView.from_snapshot(successor, local)
    assert followed.revision == successor.revision and followed.user("u0000000").locked
    assert followed.groups_of("new0000") == whole.groups_of("new0000") == ("atlas",)
    assert len(followed) == len(whole) and followed.conflicts == whole.conflicts
    # the journal as the agent writes it, read back as a restarted agent reads it
    store.save(snapshot)
    store.append(successor, delta)
    assert store.journal.exists() and SnapshotStore(store.directory).load() == successor
    line = len(entry_bytes(hashlib.sha256(b"").hexdigest(), delta))

    def agent_step(i: int) -> None:
        """What the sync loop and the in-process NSS feed do for one changes answer."""
        moved = snapshot.apply_changes(delta, DEFAULT_LIMITS)
        store.append(moved, delta)
        view.updated(moved)

    append_stats, append_check = journalled(
        store, snapshot, line, "SnapshotStore.append", lambda i: store.append(successor, delta),
        Budget(delta_runs, seconds), warmup=3)
    step_stats, step_check = journalled(
        store, snapshot, line, "the agent's whole step", agent_step,
        Budget(delta_runs, seconds), warmup=3)
    rows = [
        _row("parse", "wire parse: client.parse_json (strict JSON)", timed_loop(
            lambda i: parse_json(wire), Budget(runs, seconds), warmup=1)),
        _row("from_json", "Snapshot.from_json", timed_loop(
            lambda i: Snapshot.from_json(document, NODE, DEFAULT_LIMITS),
            Budget(runs, seconds), warmup=1)),
        _row("save", "SnapshotStore.save (whole file: serialise, write, fsync, rename;"
             " also each compaction)",
             timed_loop(lambda i: store.save(snapshot), Budget(runs, seconds), warmup=1)),
        _row("serialise", "of which serialise: canonical(to_json()) + SHA-256", timed_loop(
            lambda i: hashlib.sha256(canonical(snapshot.to_json())).digest(),
            Budget(runs, seconds), warmup=1)),
        _row("view", "NSS view: AccountView.from_snapshot(snapshot,"
             " LocalAccounts.from_files())", timed_loop(
                 lambda i: AccountView.from_snapshot(snapshot, LocalAccounts.from_files()),
                 Budget(runs, seconds), warmup=1)),
        _row("baseline", "baseline: nsscache-style passwd + group commit", timed_loop(
            lambda i: nsscache_commit(baseline_dir, document), Budget(runs, seconds),
            warmup=1)),
        _row("delta_parse", "delta of 10 changes: client.parse_json of the answer", timed_loop(
            lambda i: parse_json(delta_wire), Budget(delta_runs, seconds), warmup=3)),
        _row("delta_memory", "delta of 10 changes: apply_changes in memory", timed_loop(
            lambda i: snapshot.apply_changes(delta, DEFAULT_LIMITS),
            Budget(delta_runs, seconds), warmup=3)),
        _row("delta_append", "delta of 10 changes: SnapshotStore.append (journal line,"
             " fsync)", append_stats),
        _row("delta_view", "delta of 10 changes: AccountView.updated(successor)", timed_loop(
            lambda i: view.updated(successor), Budget(delta_runs, seconds), warmup=3)),
        _row("delta_step", "delta of 10 changes, one agent step: apply_changes + append +"
             " updated", step_stats),
    ]
    store.save(snapshot)  # the file part 3 loads: the snapshot itself, no journal
    store_bytes = store.path.stat().st_size
    return {"users": n, "groups": len(document["groups"]),
            "members": sum(len(g["members"]) for g in document["groups"]),
            "wire_bytes": len(wire), "store_bytes": store_bytes,
            "passwd_bytes": (baseline_dir / "passwd.cache").stat().st_size,
            "group_bytes": (baseline_dir / "group.cache").stat().st_size,
            "delta": {k: len(delta[k]) for k in ("users", "members_added",
                                                  "members_removed")},
            "delta_wire_bytes": len(delta_wire), "journal_line_bytes": line,
            "compact_at_bytes": max(COMPACT_AT, store_bytes // 4),
            "journal_checks": [append_check, step_check], "rows": rows}


# -- 2. removal to denial over long-polls -----------------------------------------------
def seed_service(url: str, instance: Path, agents: int, members: int) -> dict[str, Any]:
    """A VO of ``members`` users (every tenth also in /atlas/analysis), ``agents`` nodes
    serving it, a key for each and a service admin's key, through the domain services."""
    from flask_migrate import upgrade

    from ca.directory import CADirectory
    from vo_service import create_app
    from vo_service.apikeys.services import ApiKeyService
    from vo_service.authz import Actor
    from vo_service.context import ServiceContext
    from vo_service.db import db
    from vo_service.memberships.services import MembershipService
    from vo_service.nodes.services import NodeService
    from vo_service.users.services import UserService
    from vo_service.vos.services import VOService

    CADirectory.init(instance / "ca", "Bench", os.environ["XOS_CA_PASSPHRASE"].encode())
    app = create_app({"SQLALCHEMY_DATABASE_URI": url})
    with app.app_context():
        upgrade()
        ctx = ServiceContext.build(db.session, app.config)
        system = Actor.system("bench")
        users, vos, ms = UserService(ctx), VOService(ctx), MembershipService(ctx)
        atlas = vos.create(system, "atlas")
        analysis = vos.create_group(system, atlas, "/atlas/analysis")
        for i in range(members):
            person = users.create(system, f"m{i:05d}", f"Member {i}")
            ms.add(system, atlas, person)
            if i % 10 == 0:
                ms.add_to_group(system, atlas, analysis, person)
        keys = ApiKeyService(ctx)
        admin = users.create(system, "benchadmin", "Benchmark admin", is_service_admin=True)
        admin_key = keys.issue(system, user=admin, description="benchmark")[1]
        nodes = {}
        for k in range(agents):
            name = f"wn{k:04d}.bench.example"
            nodes[name] = keys.issue(system, node=NodeService(ctx).register(
                system, name, vos=["atlas"]))[1]
        db.session.commit()
        db.engine.dispose()
    return {"admin": admin_key, "nodes": nodes}


def process_cpu(pid: int) -> float:
    """utime + stime of ``pid`` in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found




class _Collect(logging.Handler):
    """The agents' warnings and errors, counted (and the first few kept)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0
        self.first: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        if len(self.first) < 5:
            self.first.append(record.getMessage()[:300])


def measure_spread(args: argparse.Namespace, work: Path, code: str, log: str
                   ) -> dict[str, Any]:
    """Part 2: ``args.agents`` SyncLoops long-polling a live service; ``args.rounds``
    removals; the time until each agent's snapshot shows the user locked or gone."""
    from xos_node import NodeClient, Snapshot, SnapshotStore, SyncLoop

    instance = work / "instance"
    instance.mkdir()
    url = f"sqlite:///{instance}/xos.sqlite3"
    print(f"removal to denial: seeding {args.agent_users} members, {args.agents} nodes",
          flush=True)
    seeded_at = time.perf_counter()
    keys = seed_service(url, instance, args.agents, args.agent_users)
    seed_seconds = time.perf_counter() - seeded_at
    handler = _Collect()
    agent_log = logging.getLogger("xos_node")
    agent_log.addHandler(handler)
    agent_log.propagate = False
    lock = threading.Lock()
    target: dict[str, Any] = {"user": None, "t0": 0.0, "seen": {}, "arrived": {}}
    outcomes: collections.Counter[str] = collections.Counter()
    in_poll = [0]

    class Probe:
        """The real client; counts the agents now inside a changes request."""

        def __init__(self, client: Any, index: int) -> None:
            self.client, self.node, self.index = client, client.node, index

        def snapshot(self) -> dict[str, Any]:
            return self.client.snapshot()  # type: ignore[no-any-return]

        def changes(self, since: int, wait: int = 0) -> dict[str, Any]:
            with lock:
                in_poll[0] += 1
            try:
                answer: dict[str, Any] = self.client.changes(since, wait)
            finally:
                with lock:
                    in_poll[0] -= 1
            now = time.monotonic()
            names = {u.get("name") for u in answer.get("users", [])}
            with lock:
                if target["user"] in names:
                    target["arrived"].setdefault(self.index, now - target["t0"])
            return answer

    class Counting(SyncLoop):
        def step(self) -> Any:
            result = super().step()
            with lock:
                outcomes[result.outcome] += 1
            return result

    def watcher(index: int) -> Any:
        def on_change(snapshot: Snapshot) -> None:
            now = time.monotonic()
            user = target["user"]
            if user is None:
                return
            entry = snapshot.users.get(user)
            if entry is None or entry.locked:
                with lock:
                    if target["user"] == user:
                        target["seen"].setdefault(index, now - target["t0"])
        return on_change

    result: dict[str, Any] = {"agents": args.agents, "members": args.agent_users,
                              "rounds": args.rounds, "workers": args.workers,
                              "threads": args.threads, "wait_s": args.wait,
                              "seed_s": seed_seconds}
    stop = threading.Event()
    runners: list[threading.Thread] = []
    waited = wait_quiet()
    with gunicorn_process(url, str(instance), args.workers, log, code, threads=args.threads,
                          public_url=True) as (port, pid):
        base = f"http://127.0.0.1:{port}"
        loops = []
        started = time.perf_counter()
        for k, (name, key) in enumerate(keys["nodes"].items()):
            loop = Counting(Probe(NodeClient(base, name, key), k),
                            SnapshotStore(work / "agents" / name), watcher(k),
                            wait=args.wait)
            first = loop.step()
            if first.outcome != "snapshot":
                raise RuntimeError(f"{name}: first sync {first.outcome}: {first.error}")
            loops.append(loop)
        result["first_snapshots_s"] = time.perf_counter() - started
        assert loops[0].snapshot is not None
        result["snapshot_users"] = len(loops[0].snapshot.users)
        for k, loop in enumerate(loops):
            runner = threading.Thread(target=loop.run, args=(stop,), name=f"agent-{k}",
                                      daemon=True)
            runner.start()
            runners.append(runner)
        try:
            result.update(rounds_and_idle(args, port, pid, keys["admin"], loops, target,
                                          lock, in_poll))
            with lock:  # what the agents did while measured (stopping fails them all)
                result["outcomes"] = dict(outcomes)
                result["agent_warnings"] = {"count": handler.count, "first": list(handler.first)}
        finally:
            stop.set()
            with lock:
                target["user"] = None
        # leaving the block stops gunicorn: held long-polls fail, and every loop sees stop
    for runner in runners:
        runner.join(60)
    result["threads_left"] = sum(r.is_alive() for r in runners)
    result["quiet_wait_s"] = waited
    result["outcomes_with_stop"] = dict(outcomes)
    agent_log.removeHandler(handler)
    return result


def rounds_and_idle(args: argparse.Namespace, port: int, pid: int, admin_key: str,
                    loops: list[Any], target: dict[str, Any], lock: threading.Lock,
                    in_poll: list[int]) -> dict[str, Any]:
    def settle(limit: float = 15.0) -> int:
        """Wait until every agent is inside a long-poll; return how many are."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline and in_poll[0] < len(loops):
            time.sleep(0.05)
        time.sleep(0.3)  # the requests reach the service and start waiting
        return in_poll[0]

    workers = children(pid)
    # the cost of holding the long-polls while nothing changes
    settled = settle()
    mark, service0, own0 = cpu_counters(), sum(map(process_cpu, workers)), time.process_time()
    idle_started = time.monotonic()
    time.sleep(args.idle)
    idle_elapsed = time.monotonic() - idle_started
    idle = {"seconds": idle_elapsed, "agents_waiting": settled,
            "service_core_pct": 100 * (sum(map(process_cpu, workers)) - service0)
            / idle_elapsed,
            "agents_core_pct": 100 * (time.process_time() - own0) / idle_elapsed,
            "machine_busy_pct": 100 * busy_since(mark)}
    print(f"  idle: {settled} agents waiting; service {idle['service_core_pct']:.0f} % of a"
          f" core, machine {idle['machine_busy_pct']:.0f} %", flush=True)

    samples, arrived, api = Stats(), Stats(), Stats()
    per_round = []
    rng = random.Random(5)
    victims = rng.sample([f"m{i:05d}" for i in range(args.agent_users)], args.rounds)
    mark = cpu_counters()
    service0 = sum(map(process_cpu, workers))
    began = time.monotonic()
    for r, user in enumerate(victims):
        waiting = settle()
        action = "suspend" if r % 2 == 0 else "remove"
        with lock:
            target.update(user=user, seen={}, arrived={}, t0=time.monotonic())
        client = HttpClient(port, admin_key)  # a new connection: the last one idled out
        try:
            sent = time.perf_counter()
            status, body = client.call("POST", f"{API}/vos/atlas/members/{user}/{action}",
                                       {})
            api.add(time.perf_counter() - sent)
        finally:
            client.close()
        if status != 200:
            raise RuntimeError(f"{action} {user}: HTTP {status} {body[:300]!r}")
        deadline = time.monotonic() + args.round_timeout
        while time.monotonic() < deadline:
            with lock:
                if len(target["seen"]) == len(loops):
                    break
            time.sleep(0.01)
        with lock:
            seen = dict(target["seen"])
            answered = dict(target["arrived"])
            target["user"] = None
        for value in seen.values():
            samples.add(value)
        for value in answered.values():
            arrived.add(value)
        ordered = sorted(seen.values())
        per_round.append({"user": user, "action": action, "waiting_before": waiting,
                          "seen": len(seen), "api_ms": api.samples[-1],
                          "first_ms": 1000 * ordered[0] if ordered else math.nan,
                          "last_ms": 1000 * ordered[-1] if ordered else math.nan})
        print(f"  round {r + 1}/{args.rounds} ({action} {user}): {len(seen)}/"
              f"{len(loops)} agents, last after {per_round[-1]['last_ms']:.0f} ms",
              flush=True)
        time.sleep(args.gap + rng.uniform(0, 0.5))
    elapsed = time.monotonic() - began
    samples.busy = arrived.busy = busy_since(mark)
    expected = len(loops) * args.rounds
    latency = samples.summary()
    return {"idle": idle, "latency": latency, "arrived": arrived.summary(),
            "api": api.summary(), "per_round": per_round,
            "samples_expected": expected, "samples_missing": expected - latency["n"],
            "rounds_service_core_pct": 100 * (sum(map(process_cpu, workers)) - service0)
            / elapsed, "service_workers": len(workers)}


# -- 3. memory ----------------------------------------------------------------------------
MEMORY = r"""
import gc, json, os, sys, time
from pathlib import Path
mode, path = sys.argv[1], Path(sys.argv[2])
from xos_node.store import SnapshotStore
from nss_plugin.accounts import AccountView, LocalAccounts
from nss_plugin.daemon import load_snapshot
def status():
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) * 1024
    return out
gc.collect()
base = status()
started = time.perf_counter()
keep = []
if mode in ("agent", "agent+nss"):
    keep.append(SnapshotStore(path.parent).load())
if mode in ("nss", "agent+nss"):
    keep.append(AccountView.from_files(load_snapshot(path), "/etc/passwd", "/etc/group"))
if mode == "agent+view":
    snapshot = SnapshotStore(path.parent).load()
    keep += [snapshot, AccountView.from_snapshot(snapshot, LocalAccounts.from_files())]
if mode == "json":
    with open(path, "rb") as f:
        keep.append(json.loads(f.read()))
seconds = time.perf_counter() - started
gc.collect()
after = status()
print(json.dumps({"mode": mode, "seconds": seconds, "base_rss": base["VmRSS"],
                  "rss": after["VmRSS"] - base["VmRSS"],
                  "peak": after["VmHWM"] - base["VmRSS"], "loaded": repr(keep)[:200]}))
"""


def measure_memory(path: Path) -> dict[str, Any]:
    rows = []
    for mode in ("json", "agent", "nss", "agent+nss", "agent+view"):
        waited = wait_quiet()
        mark = cpu_counters()
        out = subprocess.run([sys.executable, "-c", MEMORY, mode, str(path)], check=True,
                             capture_output=True, text=True, timeout=600)
        row = json.loads(out.stdout.strip().splitlines()[-1])
        row.update(busy_pct=100 * busy_since(mark), waited_s=waited)
        rows.append(row)
        print(f"  memory {mode}: {row['rss'] / 2**20:.0f} MiB retained,"
              f" {row['peak'] / 2**20:.0f} MiB peak", flush=True)
    return {"file": str(path.name), "file_bytes": path.stat().st_size, "rows": rows}


# -- the report -------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    import gunicorn

    return {**machine_basics(), "sqlite": sqlite3.sqlite_version,
            "gunicorn": gunicorn.__version__,
            "filesystem": subprocess.run(["findmnt", "-n", "-o", "FSTYPE", "-T",
                                          tempfile.gettempdir()],
                                         capture_output=True, text=True).stdout.strip()}


def _ms(value: float) -> str:
    if math.isnan(value):
        return "-"
    return f"{value:,.1f}" if value >= 10 else f"{value:.2f}"


def _ratio(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 else f"{value:.1f}"


def _mib(value: float) -> str:
    return f"{value / 2**20:,.1f}"


def markdown(result: dict[str, Any]) -> str:
    m, code = result["machine"], result["code"]
    small, big = result["apply"]
    lines = [f"### Node: apply, removal to denial, memory ({big['users']:,} users)", "",
             f"Run {result['started']} ({result['minutes']:.1f} min) on xos_node + nss_plugin"
             f" + vo_service {code['commit'][:7]} ({code['source']}), `{result['command']}`;"
             f" {m['cpu']}, {m['nproc']} cores, {m['memory_gib']} GiB; Python {m['python']},"
             f" SQLite {m['sqlite']}, gunicorn {m['gunicorn']}; files on {m['filesystem']}.",
             "", f"**1. Apply** (three VOs, 33 groups; {small['users']:,} users:"
             f" {small['members']:,} group members, store file {small['store_bytes']:,} B;"
             f" {big['users']:,} users: {big['members']:,} group members, store file"
             f" {big['store_bytes']:,} B)", "",
             f"| measure | {small['users']:,} users p50 / p99 ms | {big['users']:,} users"
             f" p50 / p99 ms | ×{big['users'] // small['users']:,} users → time × | n |"
             " busy % |",
             "|---|---:|---:|---:|---:|---:|"]
    for a, b in zip(small["rows"], big["rows"], strict=True):
        lines.append(f"| {a['name']} | {_ms(a['p50'])} / {_ms(a['p99'])} | {_ms(b['p50'])}"
                     f" / {_ms(b['p99'])} | {_ratio(b['p50'] / a['p50'])} | {a['n']} / {b['n']}"
                     f" | {a['busy_pct']:.0f} / {b['busy_pct']:.0f} |")
    for size in (small, big):
        r = {row["key"]: row["p50"] for row in size["rows"]}
        full = r["from_json"] + r["save"]
        base = r["baseline"]
        delta = r["delta_memory"] + r["delta_append"] + r["delta_view"]
        # deltas of this size between two compactions, and a compaction's share of each
        between = size["compact_at_bytes"] // size["journal_line_bytes"]
        size["derived"] = {"snapshot_apply_ms": full, "baseline_ms": base,
                           "snapshot_over_baseline": full / base,
                           "snapshot_with_view_ms": full + r["view"],
                           "snapshot_with_view_over_baseline": (full + r["view"]) / base,
                           "delta_memory_ms": r["delta_memory"],
                           "delta_append_ms": r["delta_append"],
                           "delta_view_ms": r["delta_view"], "delta_total_ms": delta,
                           "delta_step_ms": r["delta_step"],
                           "delta_over_baseline": r["delta_step"] / base,
                           "deltas_per_compaction": between,
                           "compaction_share_ms": r["save"] / between,
                           "delta_amortized_ms": r["delta_step"] + r["save"] / between}
    lines += ["", "| derived (p50s) | " + " | ".join(f"{s['users']:,} users"
                                                    for s in (small, big))
              + f" | ×{big['users'] // small['users']:,} users → time × |",
              "|---|---:|---:|---:|"]
    for key, label in (("snapshot_apply_ms", "snapshot apply: from_json + save, ms"),
                       ("snapshot_with_view_ms", "snapshot apply with the NSS view:"
                        " from_json + save + from_snapshot, ms"),
                       ("baseline_ms", "baseline: nsscache-style commit, ms"),
                       ("snapshot_over_baseline", "snapshot apply (from_json + save) ÷"
                        " baseline"),
                       ("snapshot_with_view_over_baseline", "snapshot apply with the view ÷"
                        " baseline"),
                       ("delta_total_ms", "10-change delta: apply_changes + append +"
                        " updated, p50s added, ms"),
                       ("delta_step_ms", "10-change delta: the three as one step, measured,"
                        " ms"),
                       ("delta_over_baseline", "10-change delta step ÷ baseline (nsscache"
                        " rewrites its files for any change)"),
                       ("deltas_per_compaction", "deltas of this size journalled before a"
                        " compaction (a whole save)"),
                       ("delta_amortized_ms", "10-change delta step + its share of a"
                        " compaction, ms")):
        values = [s["derived"][key] for s in (small, big)]
        if "over" in key:
            shown = [f"{v:,.2f}" for v in values]
        elif key == "deltas_per_compaction":
            shown = [f"{v:,}" for v in values]
        else:
            shown = [_ms(v) for v in values]
        growth = _ratio(values[1] / values[0]) if key.endswith("_ms") else ""
        lines.append(f"| {label} | " + " | ".join(shown) + f" | {growth} |")
    checks = []
    for size in (small, big):
        for check in size["journal_checks"]:
            state = "untouched" if check["snapshot_file_untouched"] else "REWRITTEN"
            checks.append(f"{size['users']:,} users, {check['what']}: {check['calls']:,}"
                          f" calls, journal +{check['journal_grew']:,} B ="
                          f" {check['calls']:,} × {check['line_bytes']:,} B lines,"
                          f" snapshot.json {state}")
    ok = all(c["ok"] for size in (small, big) for c in size["journal_checks"])
    verdict = "every measured delta was journalled, none saved whole" if ok else "FAILED"
    lines += ["", f"Journal check ({verdict}): " + "; ".join(checks) + ". The delta's wire"
              f" answer: {small['delta_wire_bytes']:,} B; a journal compacts past"
              f" {small['compact_at_bytes']:,} B at {small['users']:,} users and"
              f" {big['compact_at_bytes']:,} B at {big['users']:,}."]

    s = result["spread"]
    lat, idle = s["latency"], s["idle"]
    p99_s = lat["p99"] / 1000
    lines += ["", f"**2. Removal to denial**: {s['agents']} agents (threads of this process,"
              f" each its own NodeClient, SyncLoop and store folder; `wait` {s['wait_s']} s)"
              f" long-polling one VO service (gunicorn, {s['workers']} gthread worker(s) ×"
              f" {s['threads']} threads, SQLite); a VO of {s['members']:,} members"
              f" ({s['snapshot_users']:,} users in each node's snapshot); {s['rounds']} rounds"
              " alternating suspend and remove through the API.", "",
              "| measure | n | p50 | p99 | max | goal |", "|---|---:|---:|---:|---:|---|",
              f"| removal sent → agent's snapshot shows the user locked (saved) | {lat['n']:,}"
              f" of {s['samples_expected']:,} | {_ms(lat['p50'])} ms | {_ms(lat['p99'])} ms |"
              f" {_ms(lat['max'])} ms | p99 < {GOAL_P99_S:.0f} s:"
              f" **{'met' if p99_s < GOAL_P99_S and not s['samples_missing'] else 'missed'}** |",
              f"| of which: removal sent → the changes answer naming the user reached the"
              f" agent | {s['arrived']['n']:,} | {_ms(s['arrived']['p50'])} ms |"
              f" {_ms(s['arrived']['p99'])} ms | {_ms(s['arrived']['max'])} ms | |",
              f"| the API call itself (POST .../suspend or /remove) | {s['api']['n']} |"
              f" {_ms(s['api']['p50'])} ms | {_ms(s['api']['p99'])} ms |"
              f" {_ms(s['api']['max'])} ms | |",
              f"| SSSD default `entry_cache_timeout` (reported, not measured) | | | | "
              f"{SSSD_ENTRY_CACHE_TIMEOUT:,} s | ours p99 × {SSSD_ENTRY_CACHE_TIMEOUT / p99_s:,.0f}"
              " shorter |",
              f"| nsscache Debian cron interval (reported, not measured) | | | |"
              f" {NSSCACHE_CRON_MINUTES * 60:,} s | ours p99 ×"
              f" {NSSCACHE_CRON_MINUTES * 60 / p99_s:,.0f} shorter |",
              "", f"While the rounds ran the machine was {lat['busy_pct']:.0f} % busy and the"
              f" service's workers used {s['rounds_service_core_pct']:.0f} % of a core."
              f" Idle cost of {idle['agents_waiting']} held long-polls (nothing changing,"
              f" {idle['seconds']:.0f} s): service {idle['service_core_pct']:.0f} % of a core,"
              f" agents {idle['agents_core_pct']:.0f} %, machine {idle['machine_busy_pct']:.0f}"
              f" %. Agent steps: {s['outcomes']}; agent warnings:"
              f" {s['agent_warnings']['count']}; seeding {s['seed_s']:.0f} s, first snapshots"
              f" of all agents {s['first_snapshots_s']:.1f} s."]

    mem = result["memory"]
    rows = {r["mode"]: r for r in mem["rows"]}
    peer = rows["json"]["rss"]
    lines += ["", f"**3. Memory** with {big['users']:,} users (store file"
              f" {_mib(mem['file_bytes'])} MiB), each a fresh process; MiB above its own RSS"
              f" after imports ({_mib(rows['json']['base_rss'])} MiB):", "",
              "| process | load s | RSS MiB | peak (VmHWM) MiB | RSS ÷ file | RSS ÷ json.loads |",
              "|---|---:|---:|---:|---:|---:|"]
    for mode, label in (("json", "peer: `json.loads` of the file"),
                        ("agent", "agent: `SnapshotStore.load()`"),
                        ("nss", "NSS view: `AccountView.from_files(load_snapshot(...))`"),
                        ("agent+nss", "both in one process (the agent and the"
                         " standalone provider's code)"),
                        ("agent+view", "the agent as `xos-node run` holds it:"
                         " `SnapshotStore.load()` + `AccountView.from_snapshot(snapshot,"
                         " LocalAccounts.from_files())`")):
        r = rows[mode]
        lines.append(f"| {label} | {r['seconds']:.2f} | {_mib(r['rss'])} | {_mib(r['peak'])}"
                     f" | {r['rss'] / mem['file_bytes']:.1f} | {r['rss'] / peer:.2f} |")
    waited = (sum(r["waited_s"] for size in result["apply"] for r in size["rows"])
              + s["quiet_wait_s"] + sum(r["waited_s"] for r in mem["rows"]))
    busiest = max([r["busy_pct"] for size in result["apply"] for r in size["rows"]]
                  + [r["busy_pct"] for r in mem["rows"]])
    lines += ["", "busy %: the whole machine's CPU use while each figure of parts 1 and 3"
              " was measured (2 cores: one busy core is 50 %; more means other work ran"
              f" too); highest {busiest:.0f} %. Waited for a quiet machine: {waited:.0f} s in"
              " all (at most 180 s per measurement).", ""]
    return "\n".join(lines)


# -- main ---------------------------------------------------------------------------------------
def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=(1000, 100_000),
                        metavar=("SMALL", "BIG"), help="users in the apply documents")
    parser.add_argument("--agents", type=int, default=100)
    parser.add_argument("--agent-users", type=int, default=1000,
                        help="members of the VO the agents serve")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--wait", type=int, default=25, help="the agents' long-poll wait")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn gthread workers")
    parser.add_argument("--threads", type=int, default=128, help="threads per worker")
    parser.add_argument("--idle", type=float, default=10.0,
                        help="seconds of idle long-polling measured")
    parser.add_argument("--gap", type=float, default=2.5, help="seconds between rounds")
    parser.add_argument("--round-timeout", type=float, default=30.0)
    parser.add_argument("--quick", action="store_true",
                        help="1,000/20,000 users, 50 agents of 200 members, 5 rounds")
    parser.add_argument("--parts", default="apply,spread,memory",
                        help="which parts to run (comma-separated; the report needs all)")
    parser.add_argument("--rev", default="HEAD",
                        help="commit to measure (git archive); 'worktree' for the files")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.agents, args.agent_users, args.rounds = (1000, 20_000), 50, 200, 5
        args.idle = 5.0
    return args


def main() -> None:
    args = parse_args()
    # SIGTERM unwinds like Ctrl-C, so gunicorn and the temporary folders go too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.rev != "worktree" and not frozen.is_frozen_run():
        sys.exit(frozen.run_frozen(args.rev, __file__))
    import nss_plugin
    import vo_service
    import xos_node

    code, code_info = frozen.code_under_test(vo_service, xos_node, nss_plugin)
    started = dt.datetime.now(dt.UTC)
    clock = time.monotonic()
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = f"node-{started.strftime('%Y%m%dT%H%M%SZ')}"
    log = RESULTS / f"{name}-gunicorn.log"
    # on the machine's disk (not a tmpfs), like /var/lib of a node: fsync is real
    work = Path(tempfile.mkdtemp(prefix="xos-bench-node-"))
    previous = os.environ.get("XOS_INSTANCE_PATH")
    os.environ["XOS_INSTANCE_PATH"] = str(work / "instance")
    try:
        parts = set(args.parts.split(","))
        applied, spread, memory = [], {}, {}
        for n in args.sizes if "apply" in parts else ():
            print(f"apply: {n:,} users", flush=True)
            applied.append(measure_apply(n, work, args.quick))
        if "spread" in parts:
            spread = measure_spread(args, work, code, str(log))
        if "memory" in parts:
            print("memory", flush=True)
            store = work / f"store-{args.sizes[1]}"
            if not store.exists():
                from xos_node.model import Snapshot
                from xos_node.store import SnapshotStore

                SnapshotStore(store).save(Snapshot.from_json(snapshot_document(args.sizes[1])))
            memory = measure_memory(store / "snapshot.json")
    finally:
        if previous is None:
            os.environ.pop("XOS_INSTANCE_PATH", None)
        else:
            os.environ["XOS_INSTANCE_PATH"] = previous
        shutil.rmtree(work, ignore_errors=True)
    if log.exists() and not log.stat().st_size:
        log.unlink()  # gunicorn had nothing to say
    result = {"started": started.isoformat(timespec="seconds"), "code": code_info,
              "command": " ".join([".venv/bin/python", "bench/bench_node.py", *sys.argv[1:]]),
              "machine": machine(), "minutes": (time.monotonic() - clock) / 60,
              "apply": applied, "spread": spread, "memory": memory}
    if parts == {"apply", "spread", "memory"}:
        text = markdown(result)  # adds the derived figures to ``result``
    else:  # a partial run: the figures as JSON
        text = json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=1,
                          default=str) + "\n"
    save_results(name, result, text)


if __name__ == "__main__":
    main()
