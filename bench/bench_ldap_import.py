"""Benchmark of the LDAP import (issue 6): a VO's members and one mapped group read from a
real slapd, previewed and imported, then synced again; beside the same users created by
direct domain-service calls in the same run (the floor the import builds on).

    .venv/bin/python bench/bench_ldap_import.py                  # 5,000 users, SQLite
    .venv/bin/python bench/bench_ldap_import.py --users 20000 --backend postgresql

The directory (tests/e2e/slapd.py, TLS) holds N inetOrgPerson entries ``userNNNNNN``, a
groupOfNames ``cn=members`` listing all of them (the VO's members) and ``cn=half``
listing every other one (mapped to ``/bench/half``); the import reads them over StartTLS
as slapd's root DN (no size limit). Rows:

- preview: directory listing and the plan (nothing written);
- import: applying that plan (N users created, linked, made members, N/2 put in the
  group), in batches of 200, each user in its own savepoint;
- sync, no change: the preview that follows (a repeated import finds nothing to do);
- sync, 1 % churn: 1 % of the members leave the directory group and 1 % new people join,
  previewed and applied with ``remove_missing``;
- direct: on a second fresh database, the same N users created through the domain
  services themselves (UserService.create, link_ldap, MembershipService.add,
  add_to_group), committed every 200: what the import costs beyond the services.

Results: bench/results/ldap_import-<backend>.json and .md.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent / "tests"), str(HERE.parent), str(HERE)]
os.environ.setdefault("XOS_SECRET_KEY", "bench secret key for CSRF tokens, 32 characters+")

from e2e.slapd import Slapd, escape_rdn_value, ldif_record  # noqa: E402
from load import database, migrate  # noqa: E402
from measure import machine_with_database, save_results  # noqa: E402

from vo_service.app import create_app  # noqa: E402
from vo_service.auth.passwords import PasswordService  # noqa: E402
from vo_service.authz import Actor  # noqa: E402
from vo_service.context import ServiceContext  # noqa: E402
from vo_service.db import db  # noqa: E402
from vo_service.ldapimport import apply_plan, build_spec, preview  # noqa: E402
from vo_service.memberships.services import MembershipService  # noqa: E402
from vo_service.users.services import UserService  # noqa: E402
from vo_service.vos.services import VOService  # noqa: E402

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", r"(tagMap|typeMap) is deprecated", DeprecationWarning)
    import ldap3

VO_NAME, BATCH, ADD_CHUNK = "bench", 200, 500


def uid(i: int) -> str:
    return f"user{i:06d}"


def _add_people(server: Slapd, numbers: range) -> None:
    for start in range(numbers.start, numbers.stop, ADD_CHUNK):
        server.add_ldif("".join(ldif_record(server.user_dn(uid(i)), {
            "objectClass": "inetOrgPerson", "uid": uid(i), "cn": f"User {i}", "sn": "User",
            "mail": f"{uid(i)}@example.org"}) for i in range(start, min(numbers.stop,
                                                                     start + ADD_CHUNK))))


def group_dn(server: Slapd, cn: str) -> str:
    return f"cn={escape_rdn_value(cn)},{server.groups_dn}"


def load_directory(server: Slapd, users: int) -> None:
    _add_people(server, range(users))
    members = [server.user_dn(uid(i)) for i in range(users)]
    server.add_ldif(ldif_record(group_dn(server, "members"), {
        "objectClass": "groupOfNames", "cn": "members", "member": members}))
    server.add_ldif(ldif_record(group_dn(server, "half"), {
        "objectClass": "groupOfNames", "cn": "half", "member": members[::2]}))


def churn(server: Slapd, users: int) -> int:
    """1 % leave the members group, 1 % new people join it; returns that 1 %."""
    step = max(1, users // 100)
    _add_people(server, range(users, users + step))
    leaving = [server.user_dn(uid(i)) for i in range(1, users, 100)][:step]
    joining = [server.user_dn(uid(i)) for i in range(users, users + step)]
    connection = ldap3.Connection(ldap3.Server("127.0.0.1", port=server.port),
                                  user=server.bind_dn, password=server.bind_password,
                                  auto_bind=True)
    try:
        connection.modify(group_dn(server, "members"), {
            "member": [(ldap3.MODIFY_DELETE, leaving), (ldap3.MODIFY_ADD, joining)]})
        assert connection.result["result"] == 0, connection.result
    finally:
        connection.unbind()
    return step


def _app(url: str, server: Slapd) -> Any:
    return create_app({
        "SQLALCHEMY_DATABASE_URI": url, "LDAP_URL": server.url,
        "LDAP_CA_FILE": server.ca_cert_path, "LDAP_BASE_DN": server.base_dn,
        "LDAP_BIND_DN": server.bind_dn, "LDAP_BIND_PASSWORD": server.bind_password,
        "LDAP_TIMEOUT": 30})


def timed(call: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    result = call()
    return result, time.perf_counter() - start


def run_import(url: str, server: Slapd, users: int) -> dict[str, Any]:
    migrate(url)
    app = _app(url, server)
    rows: dict[str, Any] = {}
    with app.app_context():
        ctx = ServiceContext.build(db.session, app.config)
        system = Actor.system("bench")
        VOService(ctx).create(system, VO_NAME)
        db.session.commit()

        def spec(remove: bool = False) -> Any:
            return build_spec(VO_NAME, [(group_dn(server, "half"), f"/{VO_NAME}/half")],
                              members_group=group_dn(server, "members"),
                              remove_missing=remove)

        plan, seconds = timed(lambda: preview(ctx, system, spec(), app.config))
        assert plan.counts["users_created"] == users, plan.counts
        rows["preview"] = {"seconds": seconds}
        outcome, seconds = timed(lambda: apply_plan(ctx, system, plan, batch=BATCH))
        assert not outcome.failed, outcome.failed[:3]
        rows["import"] = {"seconds": seconds, "users_per_s": users / seconds}
        again, seconds = timed(lambda: preview(ctx, system, spec(), app.config))
        assert again.changes == 0, again.counts
        rows["sync_no_change"] = {"seconds": seconds}
        moved = churn(server, users)
        plan, preview_s = timed(lambda: preview(ctx, system, spec(True), app.config))
        assert plan.counts["users_created"] == moved, plan.counts
        assert plan.counts["memberships_removed"] == moved, plan.counts
        _, apply_s = timed(lambda: apply_plan(ctx, system, plan, batch=BATCH))
        rows["sync_churn"] = {"seconds": preview_s + apply_s, "preview_s": preview_s,
                              "apply_s": apply_s, "joined": moved, "left": moved}
        db.session.remove()
        db.engine.dispose()
    return rows


def run_direct(url: str, server: Slapd, users: int) -> dict[str, Any]:
    migrate(url)
    app = _app(url, server)
    with app.app_context():
        ctx = ServiceContext.build(db.session, app.config)
        system = Actor.system("bench")
        vos = VOService(ctx)
        vo = vos.create(system, VO_NAME)
        half = vos.create_group(system, vo, f"/{VO_NAME}/half")
        db.session.commit()
        people, members, passwords = UserService(ctx), MembershipService(ctx), \
            PasswordService(ctx)

        def create_all() -> None:
            for i in range(users):
                user = people.create(system, uid(i), f"User {i}", f"{uid(i)}@example.org")
                passwords.link_ldap(system, user, uid(i))
                members.add(system, vo, user)
                if i % 2 == 0:
                    members.add_to_group(system, vo, half, user)
                if i % BATCH == BATCH - 1:
                    db.session.commit()
            db.session.commit()

        _, seconds = timed(create_all)
        db.session.remove()
        db.engine.dispose()
    return {"seconds": seconds, "users_per_s": users / seconds}


def report(users: int, backend: str, machine: dict[str, Any], rows: dict[str, Any],
           direct: dict[str, Any]) -> str:
    imp = rows["import"]
    lines = [
        f"LDAP import of {users:,} directory users into one VO ({backend}); "
        f"machine: {machine}", "",
        "| step | seconds | users/s |", "|---|---|---|",
        f"| preview (list + plan) | {rows['preview']['seconds']:.2f} | |",
        f"| import | {imp['seconds']:.1f} | {imp['users_per_s']:.0f} |",
        f"| sync, no change (preview finds nothing) | {rows['sync_no_change']['seconds']:.2f}"
        " | |",
        f"| sync, 1 % churn ({rows['sync_churn']['joined']} join, "
        f"{rows['sync_churn']['left']} leave) | {rows['sync_churn']['seconds']:.2f} | |",
        f"| direct service calls, same users (floor) | {direct['seconds']:.1f} | "
        f"{direct['users_per_s']:.0f} |", "",
        f"import / direct: {imp['seconds'] / direct['seconds']:.2f}", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--pg-url", help="maintenance database URL (default: postgres.sh)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="xos-bench-ldap-") as work, Slapd() as server:
        os.environ["XOS_INSTANCE_PATH"] = work
        start = time.perf_counter()
        load_directory(server, args.users)
        print(f"directory of {args.users:,} people loaded in "
              f"{time.perf_counter() - start:.1f} s", flush=True)
        with database(args.backend, args.pg_url, work) as url:
            machine = machine_with_database(url)
            rows = run_import(url, server, args.users)
            print(f"import: {rows}", flush=True)
        Path(work, "xos.sqlite3").unlink(missing_ok=True)
        with database(args.backend, args.pg_url, work) as url:
            direct = run_direct(url, server, args.users)
    text = report(args.users, args.backend, machine, rows, direct)
    save_results(f"ldap_import-{args.backend}", {
        "users": args.users, "backend": args.backend, "machine": machine, "rows": rows,
        "direct": direct}, text)


if __name__ == "__main__":
    main()
