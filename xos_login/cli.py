"""``xos-login``: log in once, then get access tokens, certificates and SSH keys.

Every failure is one line on stderr and an ``os.EX_*`` exit code (see ``errors``); the
group's ``invoke`` is the one place where errors become that line, so no command ever
ends in a traceback.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from . import certs, oauth
from .errors import LoginError, UsageError
from .http import Service
from .session import Session
from .store import CREDENTIALS, Credentials, Store

#: what a node's PAM stack hands its helper of a typed password (pam_exec, Linux-PAM 1.5)
PAM_PASSWORD_LIMIT = 511


def _fail(ctx: click.Context, message: str, code: int) -> NoReturn:
    """One line on stderr, then the exit code: what a user sees instead of a traceback."""
    click.echo(f"xos-login: {message}", err=True)
    ctx.exit(code)


class LoginGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LoginError as error:
            _fail(ctx, error.message, error.exit_code)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except OSError as error:
            if error.errno == errno.EPIPE:
                raise  # click handles a closed stdout quietly
            where = f"{error.filename}: " if error.filename else ""
            _fail(ctx, f"{where}{error.strerror or error}", os.EX_IOERR)
        except Exception as error:  # the last line of defence: still no traceback
            _fail(ctx, f"internal error ({type(error).__name__}: {error}); please report it",
                  os.EX_SOFTWARE)


def _session() -> Session:
    session = click.get_current_context().find_object(Session)
    assert session is not None  # made by the group's callback
    return session


def _when(moment: dt.datetime) -> str:
    left = moment - dt.datetime.now(dt.UTC)
    stamp = moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    if left.total_seconds() <= 0:
        return f"{stamp} (expired)"
    minutes = int(left.total_seconds() // 60)
    return f"{stamp} (in {minutes // 60} h {minutes % 60} min)" if minutes >= 60 else \
        f"{stamp} (in {minutes} min)"


def _tilde(path: Path) -> str:
    """The path as a user would type it: ~/... when it is under the home directory."""
    try:
        return "~/" + str(path.relative_to(Path.home()))
    except ValueError:
        return str(path)


@click.group(cls=LoginGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--url", envvar="XOS_URL", metavar="URL",
              help="The VO service, e.g. https://vo.example.org (env XOS_URL; remembered"
                   " after a login).")
@click.option("--ca-file", envvar="XOS_CA_FILE", metavar="PEM",
              type=click.Path(exists=True, dir_okay=False),
              help="Trust this CA for the service's TLS (a private CA; remembered).")
@click.pass_context
def main(ctx: click.Context, url: str | None, ca_file: str | None) -> None:
    """Log in to an XOS VO service once; get tokens, certificates and SSH keys."""
    ctx.obj = Session(Store(), url, ca_file)


# -- login ----------------------------------------------------------------------------------
def _read_password_stdin() -> str:
    line = sys.stdin.readline()
    password = line[:-1] if line.endswith("\n") else line
    if not password:
        raise UsageError("--password-stdin: no password on standard input")
    return password


@main.command()
@click.option("--password", "use_password", is_flag=True,
              help="Log in with username and password instead of the browser approval.")
@click.option("--username", metavar="NAME", help="The username (implies --password).")
@click.option("--password-stdin", is_flag=True,
              help="Read the password from the first line of stdin (for scripts).")
def login(use_password: bool, username: str | None, password_stdin: bool) -> None:
    """Log in: approve in a browser (default) or type a password (--password).

    The browser way (OAuth device flow) shows a code to enter on the service's /device
    page; --password takes your VO or institutional password here instead."""
    session = _session()
    service = session.login_service()
    if use_password or username or password_stdin:
        if password_stdin and not username:
            raise UsageError("--password-stdin needs --username")
        username = username or click.prompt("Username", err=True)
        password = _read_password_stdin() if password_stdin else \
            click.prompt("Password", hide_input=True, err=True)
        tokens = oauth.password_login(service, username, password)
    else:
        tokens = _device_login(service)
    previous = _previous_login(session)
    credentials = session.save_login(service, tokens, username)
    if previous is not None and previous.url == service.url:
        # One login at a time: the replaced one should not live on at the service.
        with contextlib.suppress(LoginError):
            oauth.revoke(service, previous.refresh_token, "refresh_token")
    groups = oauth.unverified_claims(credentials.access_token).get("groups") or []
    click.echo(f"Logged in as {credentials.username} at {credentials.url}"
               + (f" (groups: {', '.join(map(str, groups))})" if groups else ""))


def _previous_login(session: Session) -> Credentials | None:
    try:
        return session.store.credentials()
    except LoginError:  # a damaged file is simply replaced
        return None


def _device_login(service: Service) -> oauth.Tokens:
    start = oauth.start_device_login(service)
    click.echo(f"To log in, open {start.verification_uri} and enter the code:\n\n"
               f"    {start.user_code}\n")
    if start.verification_uri_complete:
        click.echo(f"or open {start.verification_uri_complete}")
    click.echo(f"Waiting for approval (the code is valid for {start.expires_in // 60} min)...")
    return oauth.wait_for_approval(service, start)


# -- status and token -----------------------------------------------------------------------
@main.command()
def status() -> None:
    """Show who is logged in, where, until when, and the groups."""
    session = _session()
    credentials = session.store.credentials()
    if credentials is None:
        click.echo("not logged in")
        click.get_current_context().exit(1)
    # Unverified decoding: only to show the user what the token says, never to decide.
    claims = oauth.unverified_claims(credentials.access_token)
    click.echo(f"logged in as {credentials.username} at {credentials.url}")
    click.echo(f"access token expires {_when(credentials.expires_at)}"
               + (" -- 'xos-login token' refreshes it"
                  if credentials.expires_at <= dt.datetime.now(dt.UTC) else ""))
    groups = claims.get("groups") or []
    roles = claims.get("roles") or []
    click.echo("groups: " + (", ".join(map(str, groups)) or "(none)"))
    if roles:
        click.echo("roles: " + ", ".join(map(str, roles)))
    click.echo(f"credentials: {_tilde(session.store.path(CREDENTIALS))}")


@main.command()
@click.option("--audience", metavar="NODE",
              help="A token for this node instead of the VO service itself.")
def token(audience: str | None) -> None:
    """Print a fresh access token, and nothing else.

    For scripts: curl -H "Authorization: Bearer $(xos-login token)" ..."""
    access_token, _ = _session().access_token(audience)
    click.echo(access_token)
    if audience and len(access_token) > PAM_PASSWORD_LIMIT:
        click.echo(f"xos-login: warning: this token is {len(access_token)} bytes; a node's"
                   f" password prompt passes at most {PAM_PASSWORD_LIMIT} (pam_exec), so log"
                   " in there with the SSH certificate (xos-login cert)", err=True)


# -- certificates ---------------------------------------------------------------------------
@main.command()
@click.option("--vo", "vos", multiple=True, metavar="VO",
              help="VO to carry in the XOS certificate (repeat; default: all yours).")
@click.option("--group", "groups", multiple=True, metavar="PATH",
              help="Group path such as /atlas/analysis (repeat; default: all held).")
@click.option("--role", "roles", multiple=True, metavar="FQAN",
              help="Role such as /atlas/Role=production (repeat; default: none).")
@click.option("--hours", type=click.IntRange(1, 24 * 366),
              help="Lifetime of the XOS certificate (default and maximum: the VO's policy).")
def cert(vos: tuple[str, ...], groups: tuple[str, ...], roles: tuple[str, ...],
         hours: int | None) -> None:
    """Make keys here; fetch an XOS and an SSH certificate for them.

    The private keys never leave this machine: the service sees a CSR and a public
    key only. --vo/--group/--role/--hours shape the XOS certificate."""
    session = _session()
    access_token, credentials = session.access_token()
    options: dict[str, Any] = {}
    if vos:
        options["vos"] = list(vos)
    if groups:
        options["groups"] = list(groups)
    if roles:
        options["roles"] = list(roles)
    if hours:
        options["lifetime_hours"] = hours
    saved = certs.fetch_and_save(session.service(credentials), session.store, access_token,
                                 credentials.username, options)
    click.echo(f"XOS certificate, valid until {_when(saved.xos_expires)}:")
    for path in (saved.xos_cert, saved.xos_chain, saved.xos_key):
        click.echo(f"    {_tilde(path)}")
    click.echo(f"SSH certificate, valid until {_when(saved.ssh_expires)}:")
    for path in (saved.ssh_cert, saved.ssh_public, saved.ssh_key):
        click.echo(f"    {_tilde(path)}")
    click.echo(f"Log in to a node with: ssh -i {_tilde(saved.ssh_key)}"
               f" {credentials.username}@NODE")


# -- logout ---------------------------------------------------------------------------------
@main.command()
@click.option("--all", "everything", is_flag=True,
              help="Also delete the keys and certificates made by 'xos-login cert'.")
def logout(everything: bool) -> None:
    """Revoke the login at the service and delete it here.

    Works without the service too: the files go, and a warning says what still lives."""
    session = _session()
    store = session.store
    with store.locked():
        try:
            credentials = store.credentials()
        except LoginError as error:  # a damaged file must not keep anyone logged in
            _warn(f"{error.message}; deleting it")
            credentials = None
            store.delete_credentials()
        if credentials is not None:
            _revoke(session, credentials)
            store.delete_credentials()
            click.echo(f"Logged out {credentials.username} from {credentials.url}")
        else:
            click.echo("not logged in", err=True)
        if everything:
            for path in store.delete_keys():
                click.echo(f"deleted {_tilde(path)}")


def _revoke(session: Session, credentials: Credentials) -> None:
    """Revoke refresh then access token; if the service cannot, say what still lives."""
    try:
        service = session.service(credentials)
        problems = [text for text in (
            oauth.revoke(service, credentials.refresh_token, "refresh_token"),
            oauth.revoke(service, credentials.access_token, "access_token")) if text]
    except LoginError as error:
        problems = [error.message]
    if problems:
        _warn(f"could not revoke the login at the service ({'; '.join(problems)});"
              f" deleting it here. The access token stays valid until"
              f" {_when(credentials.expires_at)}")


def _warn(message: str) -> None:
    click.echo(f"xos-login: warning: {message}", err=True)
