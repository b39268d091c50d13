"""``xos-node``: the node agent's command line (``enroll``, ``run``, ``sync``, ``show``,
``storage``).

Every failure is one line on stderr and an ``os.EX_*`` exit code; the group's ``invoke``
is the one place where errors become that line, so no command ends in a traceback.
The API key is read from a file (never from the command line, where ``ps`` shows it to
every user), and that file must not be readable by others.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import click

from .client import MAX_WAIT, NodeClient, check_api_key
from .errors import NodeError, UsageError
from .store import SnapshotStore
from .sync import FAILED, INTERVAL, MAX_BACKOFF, REFUSED, WAIT, SyncLoop

MAX_KEY_FILE = 4096


def _fail(ctx: click.Context, message: str, code: int) -> NoReturn:
    click.echo(f"xos-node: {message}", err=True)
    ctx.exit(code)


class NodeGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except NodeError as error:
            _fail(ctx, error.message, error.exit_code)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except OSError as error:
            where = f"{error.filename}: " if error.filename else ""
            _fail(ctx, f"{where}{error.strerror or error}", os.EX_IOERR)


def read_key_file(path: str) -> str:
    """The node API key from ``path``; refused when others may read the file."""
    return check_api_key(read_secret_file(path, "an XOS API key"))


def read_secret_file(path: str, what: str) -> str:
    """A secret from ``path`` (trailing whitespace dropped); refused when others may read
    the file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as error:
        raise UsageError(f"cannot read the key file {path}: {error.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        mode = stat.S_IMODE(os.fstat(handle.fileno()).st_mode)
        if mode & 0o077:
            raise UsageError(f"the key file {path} is open to others (mode {mode:o});"
                             f" chmod 600 {path}")
        data = handle.read(MAX_KEY_FILE + 1)
    try:
        return data.decode("ascii").strip()
    except UnicodeDecodeError:
        raise UsageError(f"the key file {path} does not hold {what}") from None


@click.group("xos-node", cls=NodeGroup)
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def main(verbose: int) -> None:
    """The XOS node agent: syncs the node's VO accounts from the VO service."""
    if not logging.getLogger().handlers:  # a host program (or pytest) keeps its own set-up
        logging.basicConfig(format="%(asctime)s %(name)s %(levelname)s: %(message)s",
                            level=logging.DEBUG if verbose > 1 else logging.INFO
                            if verbose else logging.WARNING)


@contextlib.contextmanager
def _stopped_by_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM and SIGINT set ``stop`` (the loop ends after the current step)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, lambda *_: stop.set())
                for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _polling_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--interval, --wait and --max-backoff: how the sync loop polls (sync and run)."""
    for option in reversed((
            click.option("--interval", type=click.FloatRange(min=0.5), default=INTERVAL,
                         show_default=True,
                         help="Shortest time between two polls, in seconds."),
            click.option("--wait", type=click.IntRange(0, MAX_WAIT), default=WAIT,
                         show_default=True, help="Long-poll: how long the service may hold"
                         " an answer (0: plain polls)."),
            click.option("--max-backoff", type=click.FloatRange(min=0.5),
                         default=MAX_BACKOFF, show_default=True,
                         help="Longest wait after failures, in seconds."))):
        command = option(command)
    return command


@main.command()
@click.option("--url", required=True, help="The VO service, https://host[:port].")
@click.option("--node", required=True, help="This node's registered name.")
@click.option("--key-file", required=True, type=click.Path(dir_okay=False),
              help="File holding the node's API key (mode 0600).")
@click.option("--state-dir", required=True, type=click.Path(file_okay=False),
              help="Where the snapshot is kept (created 0700).")
@click.option("--ca-file", type=click.Path(dir_okay=False),
              help="The VO's CA bundle to verify the service's TLS certificate.")
@_polling_options
@click.option("--once", is_flag=True, help="Sync once and exit (non-zero on failure).")
def sync(url: str, node: str, key_file: str, state_dir: str, ca_file: str | None,
         interval: float, wait: int, max_backoff: float, once: bool) -> None:
    """Sync the node's accounts into STATE_DIR, and keep them current."""
    client = NodeClient(url, node, read_key_file(key_file), ca_file=ca_file)
    loop = SyncLoop(client, SnapshotStore(state_dir), lambda snapshot: None,
                    interval=interval, max_backoff=max(interval, max_backoff),
                    wait=0 if once else wait)
    if not once:
        stop = threading.Event()
        with _stopped_by_signals(stop):
            loop.run(stop)
        return
    result = loop.step()
    if result.outcome in (FAILED, REFUSED):
        served = f"still serving revision {result.revision}" if result.revision is not None \
            else "no snapshot yet"
        click.echo(f"xos-node: {result.error} ({served})", err=True)
        raise click.exceptions.Exit(os.EX_UNAVAILABLE if result.outcome == FAILED
                                    else os.EX_DATAERR)
    click.echo(f"{result.outcome}: node {node} at revision {result.revision}")
    if not result.saved:
        raise click.exceptions.Exit(os.EX_IOERR)


@main.command("run")
@click.option("--state-dir", default="/var/lib/xos-node", show_default=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="The state directory xos-node enroll wrote.")
@click.option("--socket-dir", default="/run/systemd/userdb", show_default=True,
              help="Where nss-systemd looks for userdb sockets.")
@click.option("--service", default="io.xos.Accounts", show_default=True,
              help="The userdb service name (the socket's name).")
@click.option("--no-nss", is_flag=True, help="Sync only; serve no userdb socket.")
@click.option("--passwd", default="/etc/passwd", show_default=True,
              type=click.Path(dir_okay=False, path_type=Path),
              help="Local users: they always win over VO accounts.")
@click.option("--group", default="/etc/group", show_default=True,
              type=click.Path(dir_okay=False, path_type=Path), help="Local groups.")
@_polling_options
@click.option("--upkeep", type=click.FloatRange(min=1), default=600, show_default=True,
              help="Seconds between refreshes of the token keys and certificate checks.")
def run_command(state_dir: Path, socket_dir: str, service: str, no_nss: bool, passwd: Path,
                group: Path, interval: float, wait: int, max_backoff: float,
                upkeep: float) -> None:
    """Run the node agent: sync, serve NSS, keep keys and certificate current."""
    from .agent import NodeIdentity, NssFeed, run_agent

    identity = NodeIdentity.load(state_dir)
    nss = None if no_nss else NssFeed(socket_dir=socket_dir, service=service,
                                      passwd=passwd, group=group,
                                      conflicts=state_dir / "conflicts.json")
    stop = threading.Event()
    try:
        with _stopped_by_signals(stop):
            run_agent(identity, stop, nss=nss, interval=interval, wait=wait,
                      max_backoff=max_backoff, upkeep_every=upkeep)
    finally:
        if nss is not None:
            nss.close()


@main.command()
@click.option("--state-dir", required=True, type=click.Path(file_okay=False),
              help="The agent's state directory.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def show(state_dir: str, as_json: bool) -> None:
    """Show the stored snapshot: node, revision, VOs and counts."""
    snapshot = SnapshotStore(Path(state_dir)).load()
    if snapshot is None:
        _fail(click.get_current_context(), f"no snapshot in {state_dir} yet (run xos-node"
              " sync)", os.EX_NOINPUT)
    summary = snapshot.summary()
    if as_json:
        click.echo(json.dumps(summary, sort_keys=True))
        return
    click.echo(f"node:     {summary['node']}\n"
               f"revision: {summary['revision']}\n"
               f"vos:      {' '.join(summary['vos']) or '-'}\n"
               f"users:    {summary['users']} ({summary['locked_users']} locked)\n"
               f"groups:   {summary['groups']}")


@main.command()
@click.option("--url", required=True, help="The VO service, https://host[:port].")
@click.option("--token-file", required=True, type=click.Path(dir_okay=False),
              help="File holding the one-time enrolment token (xos-vo node enrolment-token).")
@click.option("--state-dir", required=True, type=click.Path(file_okay=False),
              help="Where the node keeps its keys, certificates and accounts.")
@click.option("--ca-file", type=click.Path(dir_okay=False),
              help="The VO service's TLS CA, when it is not in the system trust store.")
@click.option("--ssh-host-key", type=click.Path(dir_okay=False, path_type=Path),
              help="An SSH host public key to certify (e.g. /etc/ssh/ssh_host_ed25519_key.pub).")
def enroll(url: str, token_file: str, state_dir: str, ca_file: str | None,
           ssh_host_key: Path | None) -> None:
    """Join the VO service once with a one-time token; writes the node's credentials."""
    from .enrol import enrol

    done = enrol(url, read_secret_file(token_file, "an enrolment token"), Path(state_dir),
                 ca_file=ca_file,
                 ssh_host_key=ssh_host_key)
    click.echo(f"enrolled {done.node} (VOs: {', '.join(done.vos) or '-'}); credentials in"
               f" {done.state_dir}. Next: xos-node run --state-dir {done.state_dir}")


@main.command("storage")
@click.option("--state-dir", required=True, type=click.Path(file_okay=False))
@click.argument("root", type=click.Path(file_okay=False, path_type=Path))
def storage_command(state_dir: str, root: Path) -> None:
    """Lay out shared storage under ROOT: one setgid directory per VO group."""
    from .storage import StorageError, lay_out

    snapshot = SnapshotStore(Path(state_dir)).load()
    if snapshot is None:
        raise UsageError(f"no snapshot in {state_dir} yet (run xos-node sync)")
    try:
        made = lay_out(root, snapshot.to_json()["groups"])
    except StorageError as error:
        raise UsageError(str(error)) from None
    click.echo(f"{len(made)} group directories under {root}"
               f" ({sum(d.created for d in made)} new)")
