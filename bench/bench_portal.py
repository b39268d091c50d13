"""Benchmark of the portal's members list and audit log pages (issue 6).

    .venv/bin/python bench/bench_portal.py                          # SQLite, 100,000 users
    .venv/bin/python bench/bench_portal.py --backend postgresql
    .venv/bin/python bench/bench_portal.py --users 5000 --audit-events 50000   # a minute

The code measured is ``vo_service`` and ``web`` of commit ``--rev`` (default HEAD),
exported into a temporary folder (``--rev worktree``: the files as they are).

Steps: a fresh database (as bench_core: a SQLite file, or a PostgreSQL database dropped
at the end), the schema from the real migrations, the standard population of
``load.py`` (100,000 users, 1,000 VOs, 10,000 groups) and ``--audit-events`` more audit
events (VO admins' everyday changes; by default 1,000,000, which gives the largest VO
about 100,000 events). The most active admin actor of the largest VO becomes its VO
admin and gets a password, through the services. gunicorn (one sync worker, as
``scripts/demo.sh``) serves the app on 127.0.0.1; a client in this process signs in
over HTTP (the CSRF token from /signin, then the session cookie) and times full page
renders, one request at a time: GET, the whole answer read, status 200 checked.

Baselines, measured in the same run for the same pages:

* service call: what the page handler asks the domain services, in this process
  without HTTP, Flask or templates (``VOService.get`` + ``MembershipService.page`` or
  ``AuditService.page`` on a fresh session each time);
* bare SQL: every SELECT that service call ran (captured), replayed through
  SQLAlchemy's driver-level ``exec_driver_sql``, fetching all rows.

page / service call is the portal's own cost (session, sign-in check, CSRF token,
templating, headers, gunicorn and the socket). Figures go to stdout and to
``bench/results/`` (JSON and Markdown).
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import os
import re
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any
from urllib.parse import quote, urlencode

import load
import sqlalchemy as sa
from frozen import code_under_test, is_frozen_run, run_frozen
from load import database, migrate
from measure import (
    RESULTS,
    Budget,
    Captured,
    Stats,
    busy_since,
    capture_call,
    cpu_counters,
    gunicorn_process,
    instance_workdir,
    machine_with_database,
    replay_latency,
    save_results,
    scalars,
    timed_loop,
)

import vo_service
import web
from vo_service import create_app
from vo_service.audit.services import AuditService
from vo_service.auth.passwords import PasswordService
from vo_service.authz import Actor
from vo_service.context import ServiceContext
from vo_service.db import db
from vo_service.memberships.services import MembershipService
from vo_service.users.services import UserService
from vo_service.vos.services import VOService

os.environ.setdefault("XOS_SECRET_KEY", "benchmark secret key, not for production use")
PASSWORD = "benchmark portal password"
USER_AGENT = "xos-bench-portal"  # the session is bound to it (session_protection strong)
DEEP_PAGES = 20  # pages followed through ``after`` for the deep members and older audit
WARMUP = 10
SLOW_P99_MS = 50.0  # a page slower than this at p99 gets its slowest statement explained


@dataclass
class Page:
    """One page to time, and the service call that fetches its data."""

    name: str
    path: str
    fetch: Callable[[ServiceContext, Actor], Any]  # the handler's service call


# -- signing in and reading pages over HTTP ----------------------------------------------
class Browser:
    """One keep-alive connection with a session cookie, like a browser tab."""

    def __init__(self, port: int) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, body: str | None = None
                ) -> tuple[int, bytes, http.client.HTTPResponse]:
        headers = {"User-Agent": USER_AGENT, "Accept": "text/html"}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        self.connection.request(method, path, body=body, headers=headers)
        response = self.connection.getresponse()
        data = response.read()
        for header in response.headers.get_all("Set-Cookie") or []:
            name, _, rest = header.partition("=")
            self.cookies[name.strip()] = rest.split(";", 1)[0]
        return response.status, data, response

    def get(self, path: str) -> bytes:
        status, data, _ = self.request("GET", path)
        if status != 200:
            raise RuntimeError(f"GET {path}: {status} {data[:300]!r}")
        return data

    def sign_in(self, username: str, password: str) -> None:
        page = self.get("/signin")
        found = re.search(rb'name="csrf_token" type="hidden" value="([^"]+)"', page)
        if not found:
            raise RuntimeError("/signin has no CSRF token")
        form = urlencode({"csrf_token": found.group(1).decode(), "username": username,
                          "password": password})
        status, data, response = self.request("POST", "/signin", form)
        if status != 302 or not response.headers.get("Location", "").endswith("/home"):
            raise RuntimeError(f"sign-in as {username}: {status} {data[:300]!r}")

    def close(self) -> None:
        self.connection.close()


# -- the data --------------------------------------------------------------------------
@dataclass
class Admin:
    vo: str
    username: str


def make_admin(url: str, summary: load.Summary) -> Admin:
    """The largest VO's most active admin actor (from the loaded events) becomes its VO
    admin with a password, through the services."""
    vo_name = next(iter(summary.vo_sizes))
    actor = scalars(url, """SELECT e.actor FROM audit_events e JOIN vos v ON v.id = e.vo_id
                            WHERE v.name = :vo AND e.actor LIKE 'user:%'
                            GROUP BY e.actor ORDER BY count(*) DESC, e.actor LIMIT 1""",
                    vo=vo_name)
    app = create_app({"SQLALCHEMY_DATABASE_URI": url})
    with app.app_context():
        ctx = ServiceContext.build(db.session, app.config)
        system = Actor.system("bench")
        vo = VOService(ctx).get(vo_name)
        if actor:
            user = UserService(ctx).get(actor[0].removeprefix("user:"))
        else:  # no everyday events: any active member
            rows, _ = MembershipService(ctx).page(system, vo, "active", None, None, 1)
            user = UserService(ctx).get(rows[0]["user"])
        VOService(ctx).set_admin(system, vo, user, True)
        PasswordService(ctx).set(system, user, PASSWORD)
        admin = Admin(vo_name, user.username)
        db.session.commit()
        db.engine.dispose()
    return admin


def pages(url: str, admin: Admin) -> list[Page]:
    """The pages timed, with cursors found by paging through the service."""
    app = create_app({"SQLALCHEMY_DATABASE_URI": url})
    vo = quote(admin.vo)
    members, audit = f"/vos/{vo}/members", f"/vos/{vo}/audit"

    def member_page(status: str | None = None, q: str | None = None, after: str | None = None
                    ) -> Callable[[ServiceContext, Actor], Any]:
        return lambda ctx, actor: MembershipService(ctx).page(
            actor, VOService(ctx).get(admin.vo), status, q, after)

    def audit_page(after: int | None = None, action: str | None = None,
                   by: str | None = None) -> Callable[[ServiceContext, Actor], Any]:
        return lambda ctx, actor: AuditService(ctx).page(
            actor, VOService(ctx).get(admin.vo), after, None, action, by)

    with app.app_context():
        ctx, actor = ServiceContext.build(db.session, app.config), actor_of(app, admin)
        member_after: str | None = None
        for _ in range(DEEP_PAGES):
            member_after = member_page(after=member_after)(ctx, actor)[1]
        audit_after: int | None = None
        for _ in range(DEEP_PAGES):
            audit_after = audit_page(after=audit_after)(ctx, actor)[1]
        prefix = admin.username[:3]
        db.session.remove()
        db.engine.dispose()
    me = f"user:{admin.username}"
    listed = [
        Page("members: first page", members, member_page()),
        Page(f"members: search by name prefix {prefix!r}", f"{members}?q={quote(prefix)}",
             member_page(q=prefix)),
        Page("members: status filter (pending)", f"{members}?status=pending",
             member_page(status="pending")),
        Page(f"members: page {DEEP_PAGES + 1} (after= {DEEP_PAGES} pages)",
             f"{members}?after={quote(str(member_after))}", member_page(after=member_after)),
        Page("audit: first page", audit, audit_page()),
        Page("audit: action prefix 'membership.'", f"{audit}?action=membership.",
             audit_page(action="membership.")),
        Page("audit: action prefix 'group.' (rare, old)", f"{audit}?action=group.",
             audit_page(action="group.")),
        Page(f"audit: actor {me}", f"{audit}?actor={quote(me)}", audit_page(by=me)),
        Page("audit: an actor with no events in the VO", f"{audit}?actor=user%3Anobody",
             audit_page(by="user:nobody")),
        Page(f"audit: page {DEEP_PAGES + 1} (after= {DEEP_PAGES} pages)",
             f"{audit}?after={audit_after}", audit_page(after=audit_after)),
    ]
    return listed


def actor_of(app: Any, admin: Admin) -> Actor:
    """The admin as the portal sees them (PortalUser.actor)."""
    with app.app_context():
        user = UserService(ServiceContext.build(db.session, app.config)).get(admin.username)
        return Actor(label=f"user:{user.username}", user_id=user.id,
                     is_service_admin=user.is_service_admin)


# -- timing ----------------------------------------------------------------------------
def time_pages(port: int, admin: Admin, targets: list[Page], budget: Budget,
               quiet_wait: float) -> list[dict[str, Any]]:
    browser = Browser(port)
    results = []
    try:
        browser.sign_in(admin.username, PASSWORD)
        for page in targets:
            body = browser.get(page.path)
            if b"Sign in" in body and b"signout" not in body:
                raise RuntimeError(f"{page.path} answered the sign-in page")
            stats = timed_loop(lambda _i, path=page.path: browser.get(path),  # type: ignore[misc]
                               budget, WARMUP, quiet_wait)
            results.append({"page": page.name, "path": page.path, "html_bytes": len(body),
                            "http": stats.summary()})
            print(f"  {page.name}: {len(body):,} B; p50 {stats.percentile(50):.2f} ms, "
                  f"p99 {stats.percentile(99):.2f} ms", flush=True)
    finally:
        browser.close()
    return results


def time_baselines(url: str, admin: Admin, targets: list[Page],
                   results: list[dict[str, Any]], budget: Budget, quiet_wait: float
                   ) -> None:
    app = create_app({"SQLALCHEMY_DATABASE_URI": url})
    actor = actor_of(app, admin)
    with app.app_context():
        engine = db.engine

        def service(page: Page) -> Any:
            try:
                return page.fetch(ServiceContext.build(db.session, app.config), actor)
            finally:
                db.session.remove()  # a fresh session per call, as per request

        for page, result in zip(targets, results, strict=True):
            found, captured = capture_call(engine, partial(service, page))
            result["rows"] = len(found[0])
            result["statements"] = captured.statements
            stats: Stats = timed_loop(lambda _i, p=page: service(p),  # type: ignore[misc]
                                      budget, WARMUP, quiet_wait)
            result["service"] = stats.summary()
            result["bare_sql"] = replay_latency(url, [captured], budget, WARMUP,
                                                quiet_wait).summary()
            result["slowest_sql"] = slowest(url, captured)
            result["page_per_service"] = result["http"]["p50"] / result["service"]["p50"]
            result["page_per_sql"] = result["http"]["p50"] / result["bare_sql"]["p50"]
            print(f"  {page.name}: {result['rows']} rows, service p50 "
                  f"{result['service']['p50']:.2f} ms, bare SQL p50 "
                  f"{result['bare_sql']['p50']:.2f} ms", flush=True)
        engine.dispose()


def slowest(url: str, captured: Captured) -> dict[str, Any]:
    """The slowest read of a call (best of three) and its query plan."""
    engine = sa.create_engine(url)
    best: dict[str, Any] = {"ms": 0.0, "rows": 0, "sql": "", "plan": []}
    try:
        with engine.connect() as conn:
            for statement, parameters in captured.reads:
                times = []
                for _ in range(3):
                    started = time.perf_counter()
                    rows = conn.exec_driver_sql(statement, parameters).fetchall()
                    times.append(time.perf_counter() - started)
                if min(times) * 1000 >= best["ms"]:
                    explain = ("EXPLAIN QUERY PLAN " if engine.dialect.name == "sqlite"
                               else "EXPLAIN (ANALYZE, BUFFERS) ")
                    plan = conn.exec_driver_sql(explain + statement, parameters).fetchall()
                    best = {"ms": min(times) * 1000, "rows": len(rows),
                            "sql": " ".join(statement.split()),
                            "plan": [" ".join(str(c) for c in row[-1:]) for row in plan]}
            conn.rollback()
    finally:
        engine.dispose()
    return best


# -- reporting ---------------------------------------------------------------------------
def markdown(result: dict[str, Any]) -> str:
    m, pop = result["machine"], result["population"]
    lines = [
        f"#### Portal pages on {result['backend']} ({pop['users']:,} users, {pop['vos']:,} VOs,"
        f" {result['audit']['total']:,} audit events)", "",
        f"Run {result['started']} on vo_service + web {result['code']['commit'][:7]} "
        f"({result['code']['source']}), `{result['command']}`; {m['cpu']}, {m['nproc']} "
        f"cores, {m['memory_gib']} GiB; Python {m['python']}, Linux {m['kernel']}, SQLite "
        f"{m['sqlite']}" + (f", PostgreSQL {m['postgresql']}" if "postgresql" in m else "")
        + f". VO {result['admin']['vo']}: {result['vo_members']:,} members, "
        f"{result['audit']['largest_vo']:,} audit events; signed in as "
        f"{result['admin']['username']} (its VO admin). gunicorn: 1 sync worker.", "",
        "| page | rows | HTML KiB | n | page p50 ms | page p99 ms | page max ms "
        "| service call p50 ms | service p99 ms | bare SQL p50 ms | SQL stmts "
        "| page / service | page / SQL | busy % |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["pages"]:
        h, s, q = r["http"], r["service"], r["bare_sql"]
        lines.append(
            f"| {r['page']} | {r['rows']} | {r['html_bytes'] / 1024:.1f} | {h['n']} "
            f"| {h['p50']:.2f} | {h['p99']:.2f} | {h['max']:.2f} | {s['p50']:.2f} "
            f"| {s['p99']:.2f} | {q['p50']:.2f} | {r['statements']} "
            f"| {r['page_per_service']:.1f} | {r['page_per_sql']:.1f} | {h['busy_pct']:.0f} |")
    slow = [r for r in result["pages"] if r["http"]["p99"] > SLOW_P99_MS
            or r["slowest_sql"]["ms"] >= 5]
    if slow:
        lines += ["", f"Pages with p99 above {SLOW_P99_MS:.0f} ms or a statement of 5 ms or "
                  "more: the slowest statement (best of 3) and its plan:", ""]
        for r in slow:
            sq = r["slowest_sql"]
            lines.append(f"- {r['page']}: {sq['ms']:.1f} ms, {sq['rows']} rows: "
                         f"`{sq['sql'][:240]}`; plan: "
                         + "; ".join(f"`{p}`" for p in sq["plan"][:8]))
    layers = [r[k] for r in result["pages"] for k in ("http", "service", "bare_sql")]
    load_s, rows = result["load"]["seconds"], result["load"]["rows"]
    lines += [
        "", "busy %: the whole machine's CPU use while the page loop ran (one request at a "
        "time keeps about one of the 2 cores busy, 50 %; more means other work ran too). "
        f"Highest over all layers: {max(x['busy_pct'] for x in layers):.0f} %; waited for a "
        f"quiet machine: {sum(x['waited_s'] for x in layers):.0f} s in all.",
        "", f"Loading: {sum(load_s.values()):.1f} s for {sum(rows.values()):,} rows ("
        + ", ".join(f"{k} {v:.1f} s" for k, v in load_s.items()) + "). Rows: "
        + ", ".join(f"{k} {v:,}" for k, v in rows.items()) + ".", ""]
    return "\n".join(lines)


# -- running -------------------------------------------------------------------------------
def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    load.add_database_options(parser)
    parser.add_argument("--audit-events", type=int, default=1_000_000,
                        help="audit events beyond the population's own (VO admins' "
                             "everyday changes)")
    parser.add_argument("--requests", type=int, default=200,
                        help="timed requests per page and layer (after warm-up)")
    parser.add_argument("--seconds", type=float, default=60,
                        help="time budget per page and layer")
    parser.add_argument("--quiet-wait", type=float, default=20,
                        help="most seconds to wait for a quiet machine before each loop")
    parser.add_argument("--rev", default="HEAD",
                        help="commit whose vo_service and web to measure, or 'worktree' "
                             "(default: HEAD)")
    return parser.parse_args()


def benchmark(args: argparse.Namespace, code: str, log: str) -> dict[str, Any]:
    population = load.population(args)
    budget = Budget(args.requests, args.seconds)
    with instance_workdir("xos-bench-portal-") as workdir, \
            database(args.backend, args.pg_url, workdir) as url:
        print(f"{args.backend}: migrating and loading {population}", flush=True)
        migrate(url)
        mark = cpu_counters()
        summary = load.load(url, population)
        load_busy = busy_since(mark)
        print(f"  loaded in {sum(summary.seconds.values()):.1f} s: {summary.rows}",
              flush=True)
        admin = make_admin(url, summary)
        largest = scalars(url, """SELECT count(*) FROM audit_events e JOIN vos v
                                  ON v.id = e.vo_id WHERE v.name = :vo""", vo=admin.vo)[0]
        targets = pages(url, admin)
        print(f"pages of {admin.vo} as {admin.username} (HTTP, 1 gunicorn worker):",
              flush=True)
        with gunicorn_process(url, workdir, 1, log, code) as (port, _pid):
            results = time_pages(port, admin, targets, budget, args.quiet_wait)
        print("baselines (service call, bare SQL):", flush=True)
        time_baselines(url, admin, targets, results, budget, args.quiet_wait)
        return {
            "backend": args.backend, "machine": machine_with_database(url),
            "population": asdict(population), "budget": asdict(budget),
            "admin": asdict(admin), "vo_members": summary.vo_sizes[admin.vo],
            "audit": {"total": summary.rows.get("audit_events", 0),
                      "largest_vo": largest},
            "load": {"seconds": summary.seconds, "rows": summary.rows,
                     "busy_pct": 100 * load_busy},
            "pages": results,
        }


def main() -> None:
    args = parse_args()
    # SIGTERM unwinds like Ctrl-C, so gunicorn, the database and the temp folders go too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.rev != "worktree" and not is_frozen_run():
        sys.exit(run_frozen(args.rev, __file__))
    code, code_info = code_under_test(vo_service, web)
    started = dt.datetime.now(dt.UTC)
    name = f"portal-{args.backend}-{started.strftime('%Y%m%dT%H%M%SZ')}"
    RESULTS.mkdir(parents=True, exist_ok=True)
    log = RESULTS / f"{name}-gunicorn.log"
    result = {"started": started.isoformat(timespec="seconds"), "code": code_info,
              "command": " ".join([".venv/bin/python", "bench/bench_portal.py",
                                   *sys.argv[1:]]),
              **benchmark(args, code, str(log))}
    if log.exists() and not log.stat().st_size:
        log.unlink()
    save_results(name, result, markdown(result))


if __name__ == "__main__":
    main()
