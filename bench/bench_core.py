"""Benchmark of the VO manager core (issue 2): read latency and user creation rate.

    .venv/bin/python bench/bench_core.py --backend sqlite --users 100000 --vos 1000 \\
        --groups 10000
    .venv/bin/python bench/bench_core.py --backend sqlite --sqlite-analyze  # same sizes
    .venv/bin/python bench/bench_core.py --backend postgresql   # same sizes by default
    .venv/bin/python bench/bench_core.py --backend sqlite --quick   # about two minutes

The code measured is ``vo_service`` of commit ``--rev`` (default HEAD), exported into a
temporary folder, so that edits to the working tree during a run change nothing;
``--rev worktree`` measures the files as they are.

Steps: a fresh database (a SQLite file in a temporary folder, or a PostgreSQL database
created through the URL printed by ``scripts/postgres.sh`` and dropped at the end), the
schema from the real migrations, the population from ``load.py``, then a service admin,
its API key and two node keys made through the services. A gunicorn server (sync
workers, as ``scripts/demo.sh`` runs it) on 127.0.0.1 serves the API; ten member
suspensions go through the API so that changes-since has a recent delta. Each endpoint
is then timed three ways, sequentially, one request at a time:

* HTTP: gunicorn with one worker, a client in this process (``http.client``);
* in-process: the same request through Flask's test client (no network, no gunicorn);
* bare SQL: every SELECT the request ran (captured), replayed through SQLAlchemy's
  driver-level ``exec_driver_sql`` in one transaction, fetching all rows.

Finally users are created through ``POST /api/v1/users`` with one and with two gunicorn
workers. Figures go to stdout and to ``bench/results/`` (JSON and Markdown).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import signal
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import quote

import load
import sqlalchemy as sa
from frozen import code_under_test, is_frozen_run, run_frozen
from load import database, migrate
from measure import (
    RESULTS,
    Budget,
    HttpClient,
    busy_since,
    capture,
    cpu_counters,
    create_users,
    gunicorn,
    http_latency,
    instance_workdir,
    machine_with_database,
    replay_latency,
    save_results,
    scalars,
    slowest_statement,
    test_client_latency,
)

import vo_service
from vo_service import create_app
from vo_service.apikeys.services import ApiKeyService
from vo_service.authz import Actor
from vo_service.context import ServiceContext
from vo_service.db import db
from vo_service.nodes.services import NodeService
from vo_service.users.services import UserService

# The service refuses to start without a form-signing secret; any will do here.
os.environ.setdefault("XOS_SECRET_KEY", "benchmark secret key, not for production use")
API = "/api/v1"
CHANGES = 10  # member suspensions made through the API before timing changes-since


@dataclass
class Endpoint:
    name: str
    paths: list[str]
    key: str  # "admin" or a node name


@dataclass
class Keys:
    admin: str
    nodes: dict[str, str]

    def of(self, endpoint: Endpoint) -> str:
        return self.admin if endpoint.key == "admin" else self.nodes[endpoint.key]


# -- the code under test --------------------------------------------------------------
def make_keys(url: str, nodes: list[str]) -> Keys:
    """A service admin with an API key, and a key per node, made by the services."""
    app = create_app({"SQLALCHEMY_DATABASE_URI": url})
    with app.app_context():
        ctx = ServiceContext.build(db.session, app.config)
        system = Actor.system("bench")
        admin = UserService(ctx).create(system, "benchadmin", "Benchmark admin",
                                        "benchadmin@bench.example", is_service_admin=True)
        keys = ApiKeyService(ctx)
        admin_key = keys.issue(system, user=admin, description="benchmark")[1]
        node_keys = {n: keys.issue(system, node=NodeService(ctx).get(n))[1] for n in nodes}
        db.session.commit()
        db.engine.dispose()
    return Keys(admin_key, node_keys)


# -- what to ask for ------------------------------------------------------------------------
def suspend_members(port: int, keys: Keys, url: str, vos: list[str]) -> int:
    """Suspend ``CHANGES`` active members of ``vos`` through the API; return the
    revision before the first."""
    revision = scalars(url, "SELECT value FROM counters WHERE name = 'revision'")[0]
    rows = scalars(url, sa.text("""
        SELECT v.name || '/' || u.username FROM memberships m
        JOIN users u ON u.id = m.user_id JOIN vos v ON v.id = m.vo_id
        WHERE v.name IN :vos AND m.status = 'active' AND u.status = 'active'
        ORDER BY u.username LIMIT :n""").bindparams(sa.bindparam("vos", expanding=True)),
                    vos=vos, n=CHANGES)
    client = HttpClient(port, keys.admin)
    try:
        for row in rows:
            vo, user = row.split("/")
            status, body = client.call("POST", f"{API}/vos/{vo}/members/{user}/suspend", {})
            if status != 200:
                raise RuntimeError(f"suspend {row}: {status} {body[:300]!r}")
    finally:
        client.close()
    return int(revision)


def endpoints(url: str, summary: load.Summary, since: int, rng: random.Random
              ) -> list[Endpoint]:
    names = scalars(url, "SELECT username FROM users WHERE username <> 'benchadmin'")
    emails = scalars(url, "SELECT email FROM users WHERE email IS NOT NULL")
    picks = rng.sample(names, min(50, len(names)))
    largest, *_ = summary.vo_sizes
    typical = summary.node_vos[load.TYPICAL_NODE]
    members = scalars(url, """SELECT u.username FROM memberships m JOIN users u
                               ON u.id = m.user_id JOIN vos v ON v.id = m.vo_id
                               WHERE v.name = :vo""", vo=largest)
    registered = {n: scalars(url, "SELECT vos_changed_revision FROM nodes WHERE name = :n",
                              n=n)[0] for n in (load.TYPICAL_NODE, load.BIG_NODE)}
    current = scalars(url, "SELECT value FROM counters WHERE name = 'revision'")[0]
    users, middle = f"{API}/users?limit=50", typical[len(typical) // 2]

    def q(prefixes: list[str]) -> list[str]:
        return [f"{users}&q={quote(p)}" for p in prefixes]

    vos = scalars(url, "SELECT name FROM vos")
    return [
        Endpoint("VOs: first page", [f"{API}/vos?limit=50"], "admin"),
        Endpoint("VOs: deep page (after=)",
                 [f"{API}/vos?limit=50&after={v}" for v in rng.sample(vos, min(50, len(vos)))],
                 "admin"),
        Endpoint(f"groups: all groups of the largest VO ({largest})",
                 [f"{API}/vos/{largest}/groups"], "admin"),
        Endpoint("users: first page", [users], "admin"),
        Endpoint("users: deep page (after=)",
                 [f"{users}&after={quote(n)}" for n in picks], "admin"),
        Endpoint("users: search, 2-letter prefix", q([n[:2] for n in picks[:20]]), "admin"),
        Endpoint("users: search, 5-letter username prefix", q([n[:5] for n in picks]),
                 "admin"),
        Endpoint("users: search, e-mail prefix (8 chars)",
                 q([e[:8] for e in rng.sample(emails, min(50, len(emails)))]), "admin"),
        Endpoint("users: search, no match", q(["qqq", "qaz", "xqa", "xyz", "qwe"]), "admin"),
        Endpoint(f"members: largest VO ({largest}), first page",
                 [f"{API}/vos/{largest}/members?limit=50"], "admin"),
        Endpoint(f"members: largest VO ({largest}), deep page",
                 [f"{API}/vos/{largest}/members?limit=50&after={quote(n)}"
                  for n in rng.sample(members, min(50, len(members)))], "admin"),
        Endpoint(f"members: median VO ({middle}), first page",
                 [f"{API}/vos/{middle}/members?limit=50"], "admin"),
        Endpoint("snapshot: typical node (3 median VOs)",
                 [f"{API}/nodes/{load.TYPICAL_NODE}/snapshot"], load.TYPICAL_NODE),
        Endpoint("snapshot: big node (VOs ranked 1, 10, 100)",
                 [f"{API}/nodes/{load.BIG_NODE}/snapshot"], load.BIG_NODE),
        Endpoint(f"changes: typical node, since {CHANGES} changes ago",
                 [f"{API}/nodes/{load.TYPICAL_NODE}/changes?since={since}"], load.TYPICAL_NODE),
        Endpoint("changes: typical node, since registration (whole history)",
                 [f"{API}/nodes/{load.TYPICAL_NODE}/changes?since="
                  f"{registered[load.TYPICAL_NODE]}"], load.TYPICAL_NODE),
        Endpoint("changes: big node, nothing new",
                 [f"{API}/nodes/{load.BIG_NODE}/changes?since={current}"], load.BIG_NODE),
    ]


def describe(body: bytes) -> str:
    """What one answer holds, for the report."""
    doc = json.loads(body)
    size = f"{len(body) / 1024:.0f} KiB" if len(body) >= 10240 else f"{len(body)} B"
    if "items" in doc:
        return f"{len(doc['items'])} items, {size}"
    if "members_added" in doc:
        members = len(doc["members_added"]) + len(doc["members_removed"])
        return f"{len(doc['users'])} users, {members} member changes, {size}"
    if "groups" in doc:
        members = sum(len(g["members"]) for g in doc["groups"])
        return (f"{len(doc['users'])} users, {len(doc['groups'])} groups, "
                f"{members} group members, {size}")
    return size


# -- running ----------------------------------------------------------------------------
def time_reads(url: str, keys: Keys, targets: list[Endpoint], port: int,
               budget: Budget) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    for target in targets:
        key = keys.of(target)
        first = HttpClient(port, key)
        answer = describe(first.get(target.paths[0]))
        first.close()
        stats = http_latency(port, key, target.paths, budget)
        results.append({"endpoint": target.name, "answer": answer, "http": stats.summary()})
        print(f"  {target.name}: {answer}; HTTP p50 {stats.percentile(50):.2f} ms", flush=True)
    app = create_app({"SQLALCHEMY_DATABASE_URI": url})
    with app.app_context():
        engine = db.engine
    for target, result in zip(targets, results, strict=True):
        headers = {"Authorization": f"Bearer {keys.of(target)}"}
        result["in_process"] = test_client_latency(app, target.paths, headers,
                                                   budget).summary()
        captured = [capture(app, engine, p, headers) for p in target.paths]
        result["statements"] = max(c.statements for c in captured)
        result["bare_sql"] = replay_latency(url, captured, budget).summary()
        result["slowest_sql"] = slowest_statement(url, captured[0])
        result["ratio"] = result["http"]["p50"] / result["bare_sql"]["p50"]
    engine.dispose()
    return results


def time_creates(url: str, instance: str, keys: Keys, budget: Budget, log: str, code: str
                 ) -> list[dict[str, Any]]:
    out = []
    for workers in (1, 2):
        with gunicorn(url, instance, workers, log, code) as port:
            run = create_users(port, keys.admin, f"bench{workers}w", budget, 2 * workers)
        out.append({"workers": workers, "clients": 2 * workers, **run.summary()})
        print(f"  {workers} worker(s): {out[-1]['per_second']:.0f} users/s", flush=True)
    return out


def check_numbers(url: str) -> dict[str, Any]:
    """The services carried on from the loaded counters: no gap, no clash."""
    counter = scalars(url, "SELECT value FROM counters WHERE name = 'uid'")[0]
    top, count = (scalars(url, "SELECT max(uid) FROM users")[0],
                  scalars(url, "SELECT count(*) FROM users")[0])
    return {"uid_counter": counter, "max_uid": top, "users": count,
            "contiguous": top == counter == load.UID_MIN + count - 1}


# -- reporting --------------------------------------------------------------------------
def markdown(result: dict[str, Any]) -> str:
    m, pop = result["machine"], result["population"]
    lines = [
        f"### {result['backend']} ({pop['users']:,} users, {pop['vos']:,} VOs, "
        f"{pop['groups']:,} groups)", "",
        f"Run {result['started']} on vo_service {result['code']['commit'][:7]} "
        f"({result['code']['source']}), `{result['command']}`; {m['cpu']}, {m['nproc']} cores, "
        f"{m['memory_gib']} GiB; Python {m['python']}, SQLite {m['sqlite']}"
        + (f", PostgreSQL {m['postgresql']}" if "postgresql" in m else "") + ".", "",
        "| endpoint | answer | n | busy % | HTTP p50 ms | HTTP p99 ms | HTTP mean ms "
        "| in-process p50 ms | bare SQL p50 ms | SQL stmts | HTTP/bare |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["reads"]:
        h = r["http"]
        lines.append(f"| {r['endpoint']} | {r['answer']} | {h['n']} | {h['busy_pct']:.0f} "
                     f"| {h['p50']:.2f} "
                     f"| {h['p99']:.2f} | {h['mean']:.2f} | {r['in_process']['p50']:.2f} "
                     f"| {r['bare_sql']['p50']:.2f} | {r['statements']} | {r['ratio']:.1f} |")
    slow = [r for r in result["reads"] if r["slowest_sql"]["ms"] >= 2]
    if slow:
        lines += ["", "Slowest single statement (best of 3) where it takes 2 ms or more:", ""]
        lines += [f"- {r['endpoint']}: {r['slowest_sql']['ms']:.1f} ms, "
                  f"{r['slowest_sql']['rows']} rows: `{r['slowest_sql']['sql'][:150]}...`"
                  for r in slow]
    lines += ["", "| POST /users | clients | users | busy % | seconds | users/s | p50 ms "
              "| p99 ms | errors |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for c in result["creates"]:
        lat = c["latency"]
        lines.append(f"| {c['workers']} gunicorn worker(s) | {c['clients']} | {c['created']} "
                     f"| {lat['busy_pct']:.0f} "
                     f"| {c['seconds']:.1f} | {c['per_second']:.0f} | {lat['p50']:.2f} "
                     f"| {lat['p99']:.2f} | {c['errors']} |")
    load_s = result["load"]["seconds"]
    rows = result["load"]["rows"]
    layers = [r[k] for r in result["reads"] for k in ("http", "in_process", "bare_sql")]
    lines += ["", "busy %: the whole machine's CPU use while the HTTP loop ran (one request at a"
              " time keeps about one of the cores busy, 50 %; more means other work ran too)."
              f" Highest over all layers: {max(x['busy_pct'] for x in layers):.0f} %; waited for"
              f" a quiet machine: {sum(x['waited_s'] for x in layers):.0f} s in all."]
    lines += ["", f"Loading: {sum(load_s.values()):.1f} s for {sum(rows.values()):,} rows ("
              + ", ".join(f"{k} {v:.1f} s" for k, v in load_s.items())
              + f"; machine busy {result['load']['busy_pct']:.0f} %); migrations "
              f"{result['migrate_seconds']:.1f} s. Rows: "
              + ", ".join(f"{k} {v:,}" for k, v in rows.items()) + ".",
              f"Numbers after the run: {result['numbers']}.", ""]
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    load.add_database_options(parser)
    parser.add_argument("--requests", type=int, default=300,
                        help="most requests per endpoint and layer")
    parser.add_argument("--seconds", type=float, default=20,
                        help="time budget per endpoint and layer")
    parser.add_argument("--create", type=int, default=2000,
                        help="users to create per gunicorn configuration")
    parser.add_argument("--sqlite-analyze", action="store_true",
                        help="run ANALYZE after loading SQLite (the service never does)")
    parser.add_argument("--quick", action="store_true",
                        help="10,000 users, 100 VOs, 1,000 groups, short loops")
    parser.add_argument("--rev", default="HEAD",
                        help="commit whose vo_service to measure, or 'worktree' for the files"
                             " as they are (default: HEAD)")
    args = parser.parse_args()
    if args.quick:
        args.users, args.vos, args.groups, args.nodes = 10_000, 100, 1_000, 20
        args.requests, args.seconds, args.create = 50, 5, 200
    args.sqlite_analyze = args.sqlite_analyze and args.backend == "sqlite"
    return args


def benchmark(args: argparse.Namespace, code: str, log: str) -> dict[str, Any]:
    """Load a fresh database, time the reads and the creations; return the figures."""
    population = load.population(args)
    budget = Budget(args.requests, args.seconds)
    with instance_workdir("xos-bench-") as workdir, \
            database(args.backend, args.pg_url, workdir) as url:
        print(f"{args.backend}: migrating and loading {population}", flush=True)
        started = time.perf_counter()
        migrate(url)
        migrate_seconds = time.perf_counter() - started
        mark = cpu_counters()
        summary = load.load(url, population, args.sqlite_analyze)
        load_busy = busy_since(mark)
        print(f"  loaded in {sum(summary.seconds.values()):.1f} s: {summary.rows}",
              flush=True)
        keys = make_keys(url, [load.TYPICAL_NODE, load.BIG_NODE])
        with gunicorn(url, workdir, 1, log, code) as port:
            since = suspend_members(port, keys, url, summary.node_vos[load.TYPICAL_NODE])
            targets = endpoints(url, summary, since, random.Random(args.seed))
            print("reads (HTTP, 1 gunicorn worker):", flush=True)
            reads = time_reads(url, keys, targets, port, budget)
        print("creating users through the API:", flush=True)
        creates = time_creates(url, workdir, keys, Budget(args.create, 300), log, code)
        return {
            "backend": args.backend + (" + ANALYZE" if args.sqlite_analyze else ""),
            "machine": machine_with_database(url), "population": asdict(population),
            "budget": asdict(budget), "migrate_seconds": migrate_seconds,
            "load": {"seconds": summary.seconds, "rows": summary.rows,
                     "busy_pct": 100 * load_busy,
                     "largest_vos": dict(list(summary.vo_sizes.items())[:3]),
                     "node_vos": summary.node_vos},
            "reads": reads, "creates": creates, "numbers": check_numbers(url),
        }


def main() -> None:
    args = parse_args()
    # SIGTERM unwinds like Ctrl-C, so gunicorn, the database and the temp folders go too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.rev != "worktree" and not is_frozen_run():
        sys.exit(run_frozen(args.rev, __file__))
    code, code_info = code_under_test(vo_service)
    started = dt.datetime.now(dt.UTC)
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = (f"core-{args.backend}{'-analyze' if args.sqlite_analyze else ''}-"
            f"{started.strftime('%Y%m%dT%H%M%SZ')}")
    log = RESULTS / f"{name}-gunicorn.log"
    result = {"started": started.isoformat(timespec="seconds"), "code": code_info,
              "command": " ".join([".venv/bin/python", "bench/bench_core.py", *sys.argv[1:]]),
              **benchmark(args, code, str(log))}
    if log.exists() and not log.stat().st_size:
        log.unlink()  # gunicorn had nothing to say
    save_results(name, result, markdown(result))


if __name__ == "__main__":
    main()
