"""``xos-vo``: the operator's command line (a Flask CLI group), the same operations as the
API, run with full rights as ``cli:<unix user>`` in the audit log."""

from __future__ import annotations

import datetime as dt
import getpass
import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click
from flask import Flask, current_app
from flask.cli import FlaskGroup, with_appcontext

from .apikeys.services import ApiKeyService
from .audit.chain import verify
from .authz import Actor
from .context import ServiceContext
from .db import db
from .errors import XosError
from .memberships.services import TRANSITIONS, MembershipService
from .nodes.services import NodeService
from .users.services import UserService, user_record
from .vos.services import VOService, group_record, vo_record

T = TypeVar("T")


def run(work: Callable[[ServiceContext, Actor], T]) -> T:
    """Run one unit of work as the operator; commit, or print the error and exit 1."""
    ctx = ServiceContext.build(db.session, current_app.config)
    try:
        result = work(ctx, Actor.system(getpass.getuser()))
        db.session.commit()
        return result
    except XosError as error:
        db.session.rollback()
        raise click.ClickException(error.detail) from None


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True))


# -- users ----------------------------------------------------------------------------
@click.group("user", help="Users: create, list, suspend, reinstate, delete.")
def user_cli() -> None: ...


@user_cli.command("create")
@click.argument("username")
@click.option("--display-name", required=True)
@click.option("--email")
@click.option("--uid", type=int, help="An explicit uid inside the configured range.")
@click.option("--service-admin", is_flag=True)
@with_appcontext
def user_create(username: str, display_name: str, email: str | None, uid: int | None,
                service_admin: bool) -> None:
    echo_json(run(lambda ctx, actor: user_record(UserService(ctx).create(
        actor, username, display_name, email, uid, service_admin))))


@user_cli.command("list")
@click.option("--q", help="Username or e-mail prefix.")
@click.option("--status", type=click.Choice(["active", "suspended", "deleted"]))
@click.option("--limit", type=int, default=100)
@with_appcontext
def user_list(q: str | None, status: str | None, limit: int) -> None:
    rows, _ = run(lambda ctx, actor: UserService(ctx).search(actor, q, status, None, limit))
    for u in rows:
        click.echo(f"{u.username}\t{u.uid}\t{u.status}\t{u.display_name}")


@user_cli.command("show")
@click.argument("user")
@with_appcontext
def user_show(user: str) -> None:
    def work(ctx: ServiceContext, actor: Actor) -> dict[str, Any]:
        target = UserService(ctx).get(user)
        return {**user_record(target),
                "memberships": MembershipService(ctx).of_user(actor, target)}
    echo_json(run(work))


def _user_status_command(name: str, status: str) -> None:
    @user_cli.command(name, help=f"{name.capitalize()} a user.")
    @click.argument("user")
    @with_appcontext
    def command(user: str) -> None:
        run(lambda ctx, actor: UserService(ctx).set_status(actor, UserService(ctx).get(user),
                                                            status))
        click.echo(f"{user}: {status}")


for _name, _status in (("suspend", "suspended"), ("reinstate", "active"), ("delete", "deleted")):
    _user_status_command(_name, _status)


@user_cli.command("api-key", help="Issue an API key for a user (printed once).")
@click.argument("user")
@click.option("--description", default="issued by xos-vo")
@with_appcontext
def user_api_key(user: str, description: str) -> None:
    click.echo(run(lambda ctx, actor: ApiKeyService(ctx).issue(
        actor, user=UserService(ctx).get(user), description=description)[1]))


@user_cli.command("password", help="Set a user's VO password (read from the terminal, or"
                  " from standard input with --stdin).")
@click.argument("user")
@click.option("--stdin", "from_stdin", is_flag=True, help="Read the password from stdin.")
@with_appcontext
def user_password(user: str, from_stdin: bool) -> None:
    from .auth.passwords import PasswordService

    secret = sys.stdin.readline().rstrip("\n") if from_stdin else click.prompt(
        "New password", hide_input=True, confirmation_prompt=True)
    run(lambda ctx, actor: PasswordService(ctx).set(actor, UserService(ctx).get(user), secret))
    click.echo(f"password set for {user}")


@user_cli.command("ldap-link", help="Let a user log in with an institutional LDAP account.")
@click.argument("user")
@click.argument("ldap_username")
@with_appcontext
def user_ldap_link(user: str, ldap_username: str) -> None:
    from .auth.passwords import PasswordService

    run(lambda ctx, actor: PasswordService(ctx).link_ldap(actor, UserService(ctx).get(user),
                                                          ldap_username))
    click.echo(f"{user} logs in as LDAP user {ldap_username}")


# -- OAuth clients and token keys ---------------------------------------------------------
@click.group("oauth", help="OAuth clients and access-token signing keys.")
def oauth_cli() -> None: ...


@oauth_cli.command("client-create", help="Register a confidential client (a service using"
                   " client credentials); prints its secret once.")
@click.argument("client_id")
@click.option("--name", default="")
@click.option("--audience", "audiences", multiple=True,
              help="An audience the client may ask tokens for (repeatable).")
@with_appcontext
def oauth_client_create(client_id: str, name: str, audiences: tuple[str, ...]) -> None:
    from .oauth.clients import ClientService

    secret = run(lambda ctx, actor: ClientService(ctx).create(
        actor, client_id, name or client_id, list(audiences)))
    click.echo(secret)


@oauth_cli.command("rotate-key", help="Announce a new signing key now; it signs once the"
                   " publishing lead (TOKEN_KEY_PUBLISH_MINUTES) has passed.")
@with_appcontext
def oauth_rotate_key() -> None:
    from .oauth.keys import KeyRing
    from .pki.authority import passphrase

    kid = run(lambda ctx, actor: KeyRing(ctx, current_app.config, passphrase()).rotate())
    click.echo(f"new signing key {kid} published")


# -- VOs ------------------------------------------------------------------------------
@click.group("vo", help="VOs, groups, roles and VO admins.")
def vo_cli() -> None: ...


@vo_cli.command("create")
@click.argument("name")
@click.option("--description", default="")
@with_appcontext
def vo_create(name: str, description: str) -> None:
    echo_json(run(lambda ctx, actor: vo_record(VOService(ctx).create(actor, name, description))))


@vo_cli.command("list")
@with_appcontext
def vo_list() -> None:
    rows, _ = run(lambda ctx, actor: VOService(ctx).page(None, 500))
    for v in rows:
        click.echo(v.name)


@vo_cli.command("group", help="Create a group, e.g. 'xos-vo vo group atlas /atlas/analysis'.")
@click.argument("vo")
@click.argument("path")
@click.option("--description", default="")
@with_appcontext
def vo_group(vo: str, path: str, description: str) -> None:
    def work(ctx: ServiceContext, actor: Actor) -> dict[str, Any]:
        vos = VOService(ctx)
        return group_record(vos.create_group(actor, vos.get(vo), path, description))
    echo_json(run(work))


@vo_cli.command("role")
@click.argument("vo")
@click.argument("role")
@with_appcontext
def vo_role(vo: str, role: str) -> None:
    run(lambda ctx, actor: VOService(ctx).create_role(actor, VOService(ctx).get(vo), role))
    click.echo(f"/{vo}/Role={role}")


@vo_cli.command("admin", help="Name (or with --remove, withdraw) a VO admin.")
@click.argument("vo")
@click.argument("user")
@click.option("--remove", is_flag=True)
@with_appcontext
def vo_admin(vo: str, user: str, remove: bool) -> None:
    run(lambda ctx, actor: VOService(ctx).set_admin(
        actor, VOService(ctx).get(vo), UserService(ctx).get(user), not remove))
    click.echo(f"{user}: {'no longer ' if remove else ''}admin of {vo}")


# -- memberships ----------------------------------------------------------------------
@click.group("member", help="Memberships: add, approve, suspend, expire, groups.")
def member_cli() -> None: ...


@member_cli.command("add")
@click.argument("vo")
@click.argument("user")
@click.option("--expires-on", type=click.DateTime(formats=["%Y-%m-%d"]), help="YYYY-MM-DD")
@with_appcontext
def member_add(vo: str, user: str, expires_on: dt.datetime | None) -> None:
    run(lambda ctx, actor: MembershipService(ctx).add(
        actor, VOService(ctx).get(vo), UserService(ctx).get(user),
        expires_on.date() if expires_on else None))
    click.echo(f"{user}: active member of {vo}")


def _transition_command(operation: str) -> None:
    @member_cli.command(operation, help=f"{operation.capitalize()} a membership.")
    @click.argument("vo")
    @click.argument("user")
    @click.option("--reason", default="")
    @with_appcontext
    def command(vo: str, user: str, reason: str) -> None:
        m = run(lambda ctx, actor: MembershipService(ctx).transition(
            actor, VOService(ctx).get(vo), UserService(ctx).get(user), operation, reason))
        click.echo(f"{user} in {vo}: {m.status}")


for _operation in TRANSITIONS:
    if _operation != "expire":
        _transition_command(_operation)


@member_cli.command("expire-due", help="Expire memberships whose date has come (run daily).")
@with_appcontext
def member_expire_due() -> None:
    count = run(lambda ctx, actor: MembershipService(ctx).expire_due(actor))
    click.echo(f"{count} membership(s) expired")


@member_cli.command("group", help="Put a member into a group (or --remove).")
@click.argument("vo")
@click.argument("path")
@click.argument("user")
@click.option("--remove", is_flag=True)
@with_appcontext
def member_group(vo: str, path: str, user: str, remove: bool) -> None:
    def work(ctx: ServiceContext, actor: Actor) -> None:
        vos, ms = VOService(ctx), MembershipService(ctx)
        v = vos.get(vo)
        method = ms.remove_from_group if remove else ms.add_to_group
        method(actor, v, vos.group(v, path), UserService(ctx).get(user))
    run(work)
    click.echo(f"{user}: {'removed from' if remove else 'added to'} {path}")


# -- nodes ----------------------------------------------------------------------------
@click.group("node", help="Nodes: register, choose VOs, issue keys.")
def node_cli() -> None: ...


@node_cli.command("register")
@click.argument("name")
@click.option("--vo", "vos", multiple=True)
@click.option("--description", default="")
@with_appcontext
def node_register(name: str, vos: tuple[str, ...], description: str) -> None:
    def work(ctx: ServiceContext, actor: Actor) -> dict[str, Any]:
        nodes = NodeService(ctx)
        return nodes.record(nodes.register(actor, name, description, list(vos)))
    echo_json(run(work))


@node_cli.command("vos", help="Set the VOs a node serves.")
@click.argument("name")
@click.argument("vos", nargs=-1)
@with_appcontext
def node_vos(name: str, vos: tuple[str, ...]) -> None:
    def work(ctx: ServiceContext, actor: Actor) -> dict[str, Any]:
        nodes = NodeService(ctx)
        return nodes.record(nodes.set_vos(actor, nodes.get(name), list(vos)))
    echo_json(run(work))


@node_cli.command("api-key")
@click.argument("name")
@with_appcontext
def node_api_key(name: str) -> None:
    click.echo(run(lambda ctx, actor: ApiKeyService(ctx).issue(
        actor, node=NodeService(ctx).get(name), description="issued by xos-vo")[1]))


@node_cli.command("enrolment-token", help="A one-time token for 'xos-node enroll' (printed"
                  " once).")
@click.argument("name")
@click.option("--hours", type=int, help="Lifetime (default ENROLMENT_TOKEN_HOURS).")
@with_appcontext
def node_enrolment_token(name: str, hours: int | None) -> None:
    from .nodes.enrolment import EnrolmentService

    token, _ = run(lambda ctx, actor: EnrolmentService(ctx).issue(
        actor, NodeService(ctx).get(name), hours or current_app.config["ENROLMENT_TOKEN_HOURS"]))
    click.echo(token)


# -- audit ----------------------------------------------------------------------------
@click.group("audit", help="The hash-chained audit log.")
def audit_cli() -> None: ...


@audit_cli.command("verify", help="Check the whole chain; name the first broken link.")
@with_appcontext
def audit_verify() -> None:
    verdict = verify(db.session)
    if verdict.ok:
        click.echo(f"audit chain intact: {verdict.events} events")
        return
    click.echo(f"audit chain BROKEN at event {verdict.broken_seq}: {verdict.reason}", err=True)
    sys.exit(1)


@audit_cli.command("head", help="Print the chain head, to anchor it elsewhere.")
@with_appcontext
def audit_head() -> None:
    from .audit.models import AuditHead

    head = db.session.get(AuditHead, 1)
    click.echo(f"{head.seq} {head.hash}" if head else "no audit head: run 'xos-vo db upgrade'")


# -- LDAP import ------------------------------------------------------------------------
@click.group("ldap", help="Import a VO's users and groups from the institutional LDAP "
             "directory (LDAP_URL): preview, then import; run again to sync.")
def ldap_cli() -> None: ...


def _ldap_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options preview and import share (they decide the plan)."""
    for option in reversed([
        click.argument("vo"),
        click.option("--map", "maps", multiple=True, metavar="LDAPGROUP=/VO/PATH",
                     help="A directory group's DN and the VO group its members join."),
        click.option("--members-group", metavar="DN",
                     help="The directory group whose members are the VO's members."),
        click.option("--members-filter", metavar="FILTER",
                     help="Or: an LDAP filter selecting the VO's members, e.g. (ou=physics)."),
        click.option("--link-existing", is_flag=True,
                     help="Link existing VO users of the same name (else: a conflict)."),
        click.option("--remove-missing", is_flag=True,
                     help="Remove what the import added and the directory no longer lists."),
    ]):
        command = option(command)
    return command


def _ldap_plan(ctx: ServiceContext, actor: Actor, vo: str, maps: tuple[str, ...],
               members_group: str | None, members_filter: str | None, link_existing: bool,
               remove_missing: bool) -> Any:
    from .ldapimport import build_spec, parse_mapping, preview

    spec = build_spec(vo, parse_mapping(maps), members_group=members_group,
                      members_filter=members_filter, link_existing=link_existing,
                      remove_missing=remove_missing)
    return preview(ctx, actor, spec, current_app.config)


def _echo_plan(plan: Any, details: bool) -> None:
    c = plan.counts
    click.echo(f"VO {plan.vo}: {c['users_created']} users to create, {c['users_linked']} to "
               f"link, {c['memberships_added']} memberships to add, "
               f"{c['group_memberships_added']} group memberships to add, "
               f"{c['groups_created']} groups to create, {c['memberships_removed']} "
               f"memberships and {c['group_memberships_removed']} group memberships to "
               f"remove; {c['conflicts']} conflicts, {c['skipped']} skipped, "
               f"{c['unchanged']} unchanged")
    if c["left_not_removed"]:
        click.echo(f"{c['left_not_removed']} imported memberships are no longer in the "
                   "directory: --remove-missing removes them")
    if not details:
        return
    for path in plan.create_groups:
        click.echo(f"group    {path}")
    for s in plan.steps:
        what = "create" if s.create else "link" if s.link else "update"
        email = f" <{s.email}>" if s.email else ""
        groups = "".join(f" +{g}" for g in s.add_groups)
        member = f" {s.membership}" if s.membership else ""
        notes = "".join(f" ({n})" for n in s.notes)
        click.echo(f"{what:8} {s.username} \"{s.display_name}\"{email}{member}{groups}{notes}")
    for name, path in plan.left:
        verb = "remove" if plan.removals else "left"
        click.echo(f"{verb:8} {name} from {path}")
    for conflict in plan.conflicts:
        click.echo(f"conflict {conflict.username}: {conflict.reason}")
    for skip in plan.skipped:
        click.echo(f"skipped  {skip.name or '-'} {skip.dn or '-'}: {skip.reason}")


@ldap_cli.command("preview", help="Show what an import would change (changes nothing).")
@_ldap_options
@with_appcontext
def ldap_preview(**options: Any) -> None:
    _echo_plan(run(lambda ctx, actor: _ldap_plan(ctx, actor, **options)), details=True)


@ldap_cli.command("import", help="Import (or sync) the VO's users, memberships and groups.")
@_ldap_options
@click.option("--batch", type=click.IntRange(1, 5000), default=200, show_default=True,
              help="Changes committed together.")
@with_appcontext
def ldap_import(batch: int, **options: Any) -> None:
    from .ldapimport import apply_plan, work_size

    def work(ctx: ServiceContext, actor: Actor) -> tuple[Any, Any]:
        plan = _ldap_plan(ctx, actor, **options)
        with click.progressbar(length=work_size(plan), label="Importing",
                               show_pos=True) as bar:
            outcome = apply_plan(ctx, actor, plan, progress=bar.update, batch=batch)
        return plan, outcome

    plan, outcome = run(work)
    _echo_plan(plan, details=False)
    click.echo(f"applied {outcome.applied} of {plan.changes} changes")
    for name, why in outcome.failed:
        click.echo(f"failed   {name}: {why}", err=True)
    if outcome.failed:
        sys.exit(1)


# -- demo -----------------------------------------------------------------------------
@click.command("demo", help="Create a demo VO, users and node (once) and print an admin key.")
@with_appcontext
def demo() -> None:
    from .demo import build_demo

    click.echo(run(build_demo))


def init_app(app: Flask) -> None:
    for group in (user_cli, vo_cli, member_cli, node_cli, audit_cli, oauth_cli, ldap_cli,
                  demo):
        app.cli.add_command(group)


def main() -> None:
    from .app import create_app
    from .errors import ConfigurationError

    try:
        FlaskGroup(create_app=create_app, help="XOS identity VO service administration.")()
    except ConfigurationError as error:  # the service's settings, before any command ran
        click.echo(f"xos-vo: {error.detail}", err=True)
        sys.exit(2)
