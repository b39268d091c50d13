"""Benchmark of single sign-on (issue 4): refresh-token grants and password logins per
second over HTTP, on one gunicorn worker (one core) and on two, next to their floors
measured in the same run.

    .venv/bin/python bench/bench_sso.py                          # SQLite, two minutes
    .venv/bin/python bench/bench_sso.py --backend postgresql     # PostgreSQL
    .venv/bin/python bench/bench_sso.py --quick                  # thirty seconds

Set-up: a temporary instance folder with a CA (``CADirectory.init``, which also gives the
passphrase that encrypts the token signing keys), a migrated database (a SQLite file, or
a PostgreSQL database made through ``scripts/postgres.sh`` and dropped after), a VO with
five groups and ``--users`` members, each with a VO password (argon2id, the production
cost). The service runs under gunicorn (sync workers) on 127.0.0.1.

* Refresh grants: each client logs in once with the password grant, then refreshes in a
  loop, keeping the rotated refresh token each time (as ``xos-login token`` does): every
  request checks the client, redeems and rotates the refresh token in the database,
  reads the user's VO groups and signs an ES256 access token.
* Password logins: the password grant in a loop (throttling never triggers: every login
  succeeds). Its floor, measured in this process: one argon2id verification at the same
  cost (``vo_service.auth.passwords.HASHER``).
* The peer: Keycloak's sizing guide plans 120 refresh-token grants and 15 password logins
  per second per vCPU (a reported planning figure, not measured here: Keycloak does not
  run on this machine).

Results: stdout and ``bench/results/sso-<time>.{json,md}``. The code measured is the
working tree (``git describe`` in the report says which commit and whether it was dirty).
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench_core import database
from measure import (
    RESULTS,
    Stats,
    busy_since,
    cpu_counters,
    gunicorn,
    machine_basics,
    save_results,
    wait_quiet,
)

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "benchmark password 0123"
KEYCLOAK_REFRESH_PER_VCPU = 120  # Keycloak sizing guide (reported)
KEYCLOAK_LOGINS_PER_VCPU = 15  # Keycloak sizing guide (reported)
os.environ.setdefault("XOS_SECRET_KEY", "benchmark secret key, not for production use")
os.environ.setdefault("XOS_CA_PASSPHRASE", "benchmark CA passphrase")


def seed(url: str, instance: str, users: int) -> None:
    from ca.directory import CADirectory
    from vo_service import create_app
    from vo_service.auth.passwords import PasswordService
    from vo_service.authz import Actor
    from vo_service.context import ServiceContext
    from vo_service.db import db
    from vo_service.memberships.services import MembershipService
    from vo_service.users.services import UserService
    from vo_service.vos.services import VOService

    CADirectory.init(Path(instance) / "ca", "Bench", os.environ["XOS_CA_PASSPHRASE"].encode())
    app = create_app({"SQLALCHEMY_DATABASE_URI": url})
    with app.app_context():
        import flask_migrate

        flask_migrate.upgrade()
        ctx = ServiceContext.build(db.session, app.config)
        system = Actor.system("bench")
        vos, ms = VOService(ctx), MembershipService(ctx)
        vo = vos.create(system, "bench")
        groups = [vos.create_group(system, vo, f"/bench/g{i}") for i in range(5)]
        for n in range(users):
            user = UserService(ctx).create(system, f"user{n:04d}", f"User {n}")
            ms.add(system, vo, user)
            ms.add_to_group(system, vo, groups[n % 5], user)
            PasswordService(ctx).set(system, user, PASSWORD)
        db.session.commit()
        db.engine.dispose()


class TokenClient:
    def __init__(self, port: int) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def grant(self, **form: str) -> dict[str, Any]:
        body = urllib.parse.urlencode({"client_id": "xos-login", **form})
        self.connection.request("POST", "/oauth/token", body=body, headers={
            "Content-Type": "application/x-www-form-urlencoded"})
        response = self.connection.getresponse()
        data = json.loads(response.read())
        if response.status != 200:
            raise RuntimeError(f"token endpoint: {response.status} {data}")
        return data  # type: ignore[no-any-return]

    def close(self) -> None:
        self.connection.close()


def run_clients(port: int, clients: int, requests: int, seconds: float,
                work: str) -> dict[str, Any]:
    """``clients`` threads, each its own user and connection, doing ``work`` until the
    count or the time is spent."""
    lock = threading.Lock()
    stats, errors = Stats(waited=wait_quiet()), [0]
    counter = iter(range(requests))

    def worker(index: int) -> None:
        client = TokenClient(port)
        username = f"user{index:04d}"
        try:
            refresh = client.grant(grant_type="password", username=username,
                                   password=PASSWORD)["refresh_token"]
            while time.perf_counter() < deadline:
                with lock:
                    if next(counter, None) is None:
                        return
                begun = time.perf_counter()
                try:
                    if work == "refresh":
                        refresh = client.grant(grant_type="refresh_token",
                                               refresh_token=refresh)["refresh_token"]
                    else:
                        client.grant(grant_type="password", username=username,
                                     password=PASSWORD)
                except RuntimeError:
                    with lock:
                        errors[0] += 1
                    continue
                with lock:
                    stats.add(time.perf_counter() - begun)
        finally:
            client.close()

    mark = cpu_counters()
    started = time.perf_counter()
    deadline = started + seconds
    with ThreadPoolExecutor(clients) as pool:
        for future in [pool.submit(worker, i) for i in range(clients)]:
            future.result()
    elapsed = time.perf_counter() - started
    stats.busy = busy_since(mark)
    return {"clients": clients, "done": len(stats.samples), "errors": errors[0],
            "seconds": elapsed, "per_second": len(stats.samples) / elapsed,
            "latency": stats.summary()}


def argon2_floor(requests: int) -> dict[str, Any]:
    from vo_service.auth.passwords import HASHER

    digest = HASHER.hash(PASSWORD)
    stats = Stats(waited=wait_quiet())
    mark = cpu_counters()
    for _ in range(requests):
        begun = time.perf_counter()
        HASHER.verify(digest, PASSWORD)
        stats.add(time.perf_counter() - begun)
    stats.busy = busy_since(mark)
    return {"per_second": 1000 / stats.summary()["mean"], "latency": stats.summary()}


def describe() -> str:
    return subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
                          capture_output=True, text=True, check=False).stdout.strip()


def markdown(result: dict[str, Any]) -> str:
    lines = [f"### Single sign-on on {result['backend']} ({result['users']} users)", "",
             f"Run {result['started']} on {result['code']}, `{result['command']}`; "
             f"{result['machine']}.", "",
             "| measure | workers | clients | per second | p50 ms | p99 ms | busy % "
             "| Keycloak plans (reported) | ours ÷ plan |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in result["rows"]:
        lat, plan = row["latency"], row.get("plan")
        ratio = f"{row['per_second'] / plan:.1f}" if plan else "-"
        lines.append(f"| {row['name']} | {row.get('workers', '-')} | {row.get('clients', '-')} "
                     f"| {row['per_second']:.0f} | {lat['p50']:.2f} | {lat['p99']:.2f} "
                     f"| {lat['busy_pct']:.0f} | {plan or '-'} | {ratio} |")
    lines += ["", "Keycloak's plan is per vCPU; one gunicorn worker uses one core (the client"
              " runs on the other), two workers share both cores with the clients.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    args = parser.parse_args()
    if args.quick:
        args.requests, args.seconds = 300, 5
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = dt.datetime.now(dt.UTC)
    work = tempfile.mkdtemp(prefix="xos-bench-sso-")
    os.environ["XOS_INSTANCE_PATH"] = work
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = f"sso-{args.backend}-{started.strftime('%Y%m%dT%H%M%SZ')}"
    log = str(RESULTS / f"{name}-gunicorn.log")
    try:
        with database(args.backend, None, work) as url:
            rows = measure(args, url, work, log)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if os.path.exists(log) and not os.path.getsize(log):
            os.unlink(log)
    report(args, started, name, rows)


def measure(args: argparse.Namespace, url: str, work: str, log: str) -> list[dict[str, Any]]:
    """Seed, then time both grants on one and on two gunicorn workers."""
    rows: list[dict[str, Any]] = []
    print(f"{args.backend}: seeding {args.users} users", flush=True)
    seed(url, work, args.users)
    for workers, clients in ((1, 1), (2, 4)):
        with gunicorn(url, work, workers, log, str(ROOT)) as port:
            refresh = run_clients(port, clients, args.requests, args.seconds, "refresh")
            rows.append({"name": "refresh-token grant", "workers": workers,
                         "plan": KEYCLOAK_REFRESH_PER_VCPU * workers, **refresh})
            print(f"  refresh, {workers} worker(s): {refresh['per_second']:.0f}/s", flush=True)
            logins = run_clients(port, clients, max(30, args.requests // 20), args.seconds,
                                 "password")
            rows.append({"name": "password login (argon2id 19 MiB, t=2)",
                         "workers": workers, "plan": KEYCLOAK_LOGINS_PER_VCPU * workers,
                         **logins})
            print(f"  logins, {workers} worker(s): {logins['per_second']:.0f}/s", flush=True)
    rows.append({"name": "floor: one argon2id verification, in-process",
                 **argon2_floor(max(20, args.requests // 50))})
    return rows


def report(args: argparse.Namespace, started: dt.datetime, name: str,
           rows: list[dict[str, Any]]) -> None:
    cpu = machine_basics()["cpu"]
    result = {"started": started.isoformat(timespec="seconds"), "code": describe(),
              "command": " ".join([".venv/bin/python", "bench/bench_sso.py", *sys.argv[1:]]),
              "machine": f"{cpu}, {os.cpu_count()} cores", "users": args.users,
              "backend": args.backend, "rows": rows}
    save_results(name, result, markdown(result))


if __name__ == "__main__":
    main()
