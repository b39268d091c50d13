"""``python -m nss_plugin``: serve a snapshot file to nss-systemd, reloading it on change.

Why a file and not the network: DESIGN.md wants NSS answered from memory and never from
the VO service; the node agent writes the snapshot atomically (write, fsync, rename) and
this process picks it up, on SIGHUP or when a poll sees the snapshot, /etc/passwd or
/etc/group change (local accounts can change too, and they always win).

A snapshot that cannot be read or is malformed is refused whole: at start-up the process
exits (``os.EX_DATAERR``/``os.EX_NOINPUT``) so the failure is visible; on a reload the
previous view stays in service and the error is logged. Conflicts with local accounts are
logged and, with ``--conflicts FILE``, written there as JSON (atomically) for the agent.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from types import FrameType
from typing import Any

from xos_node.errors import NodeError
from xos_node.journal import JOURNAL_NAME, read_entries
from xos_node.model import DEFAULT_LIMITS, Snapshot
from xos_node.store import read_store, replay

from .accounts import AccountView, Conflict
from .errors import NssPluginError
from .userdb import MAX_LISTED_MEMBERS
from .varlink import DEFAULT_SERVICE, DEFAULT_SOCKET_DIR, UserdbServer, bypass_self

log = logging.getLogger("nss_plugin")

MAX_SNAPSHOT_BYTES = 1024**3  # a million users is some 200 MB of JSON
LOGGED_CONFLICTS = 20  # each is logged up to this many, then a count


def load_snapshot(path: Path, max_bytes: int = MAX_SNAPSHOT_BYTES) -> dict[str, Any]:
    """Read a snapshot file: the node agent's store file (checksum verified, so a damaged
    file is refused whole rather than served in part) with the changes journalled beside
    it applied, or a bare API snapshot object. Size is bounded before parsing."""
    data = _read_bounded(path, max_bytes)
    try:
        body, base = read_store(data, path, bare_ok=True)
        journal = path.with_name(JOURNAL_NAME)
        entries = read_entries(_read_bounded(journal, max_bytes), base, journal) \
            if base and journal.exists() else []
        if not entries:
            return body
        snapshot = Snapshot.from_json(body)
        for answer in entries:
            snapshot = replay(snapshot, answer, DEFAULT_LIMITS)
        return snapshot.to_json()
    except NodeError as error:
        raise NssPluginError(error.message) from None


def _read_bounded(path: Path, max_bytes: int) -> bytes:
    with path.open("rb") as fh:
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise NssPluginError(f"{path}: snapshot larger than {max_bytes} bytes")
    return data


def _fingerprint(paths: Sequence[Path]) -> tuple[tuple[int, int, int, int] | None, ...]:
    """What a poll compares: a rename or an in-place write changes inode, size or mtime."""
    marks: list[tuple[int, int, int, int] | None] = []
    for path in paths:
        try:
            st = path.stat()
        except OSError:
            marks.append(None)
        else:
            marks.append((st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
    return tuple(marks)


def write_conflicts(path: Path, revision: int, conflicts: Sequence[Conflict]) -> None:
    """Write the refusal report atomically (temp file, fsync, rename)."""
    body = json.dumps({"revision": revision, "conflicts": [asdict(c) for c in conflicts]},
                      indent=1)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(body + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class Provider:
    """Loads views from files and hands them to a UserdbServer."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.snapshot = Path(args.snapshot)
        self.passwd = Path(args.passwd)
        self.group = Path(args.group)
        self.conflicts_path = Path(args.conflicts) if args.conflicts else None
        self.watch = FilesWatch(self.snapshot, self.snapshot.with_name(JOURNAL_NAME),
                                self.passwd, self.group)

    def load(self) -> AccountView:
        """A new view from the files as they are now (raises on any error)."""
        self.watch.changed()  # what is read now is the new mark
        return build_view(load_snapshot(self.snapshot), self.passwd, self.group,
                          self.conflicts_path)


class FilesWatch:
    """Tells when any of some files changed since the last look."""

    def __init__(self, *paths: Path) -> None:
        self.paths = paths
        self.mark = _fingerprint(paths)

    def changed(self) -> bool:
        mark = _fingerprint(self.paths)
        changed, self.mark = mark != self.mark, mark
        return changed


def build_view(snapshot: dict[str, Any], passwd: Path, group: Path,
               conflicts_path: Path | None = None) -> AccountView:
    """The view of ``snapshot`` beside the local files, its refusals logged and reported
    (raises on a snapshot that does not validate)."""
    view = AccountView.from_files(snapshot, passwd, group)
    report_conflicts(view, conflicts_path)
    return view


def report_conflicts(view: AccountView, conflicts_path: Path | None = None) -> None:
    """Log what local accounts refused (the first few) and write the whole list."""
    for conflict in view.conflicts[:LOGGED_CONFLICTS]:
        log.warning("%s", conflict)
    if len(view.conflicts) > LOGGED_CONFLICTS:
        log.warning("... and %d more refused entries", len(view.conflicts) - LOGGED_CONFLICTS)
    if conflicts_path is not None:
        write_conflicts(conflicts_path, view.revision, view.conflicts)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m nss_plugin",
        description="Serve the node's VO accounts to glibc through nss-systemd (userdb).")
    parser.add_argument("--snapshot", required=True,
                        help="the account snapshot (JSON), or the node agent's store file")
    parser.add_argument("--passwd", default="/etc/passwd", help="local users (always win)")
    parser.add_argument("--group", default="/etc/group", help="local groups (always win)")
    parser.add_argument("--socket-dir", default=DEFAULT_SOCKET_DIR)
    parser.add_argument("--service", default=DEFAULT_SERVICE,
                        help="userdb service name = socket name (default %(default)s)")
    parser.add_argument("--poll", type=float, default=2.0,
                        help="seconds between checks for changed files (0: SIGHUP only)")
    parser.add_argument("--max-listed-members", type=int, default=MAX_LISTED_MEMBERS,
                        help="groups with more members are listed without them "
                             "(0: no limit; default %(default)s)")
    parser.add_argument("--conflicts", help="write refused entries here as JSON")
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run until SIGTERM or SIGINT; an ``os.EX_*`` exit code."""
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s nss_plugin %(levelname)s %(message)s")
    # Before anything could resolve a name: our own lookups must not ask ourselves.
    bypass_self(args.service)
    provider = Provider(args)
    try:
        view = provider.load()
    except FileNotFoundError as err:
        log.error("cannot read: %s", err)
        return os.EX_NOINPUT
    except (OSError, NssPluginError) as err:  # SnapshotError is an NssPluginError
        log.error("refusing to start: %s", err)
        return os.EX_DATAERR

    wake = threading.Event()
    flags = {"stop": False, "reload": False, "failed": False}

    def on_signal(signum: int, frame: FrameType | None) -> None:
        flags["reload" if signum == signal.SIGHUP else "stop"] = True
        wake.set()

    def on_failure(err: BaseException) -> None:  # the server's socket is already gone
        flags["failed"] = flags["stop"] = True
        wake.set()

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, on_signal)
    try:
        server = UserdbServer(view, service=args.service, socket_dir=args.socket_dir,
                              max_listed_members=args.max_listed_members or None,
                              on_failure=on_failure).start()
    except (OSError, NssPluginError) as err:
        log.error("cannot serve: %s", err)
        return os.EX_OSERR
    log.info("serving %d users, %d refused, revision %d on %s", len(view),
             len(view.conflicts), view.revision, server.path)
    try:
        while not flags["stop"]:
            wake.wait(args.poll if args.poll > 0 else None)
            wake.clear()
            if flags["stop"]:
                break
            if flags["reload"] or (args.poll > 0 and provider.watch.changed()):
                flags["reload"] = False
                try:
                    view = provider.load()
                except (OSError, NssPluginError) as err:
                    log.error("reload refused, still serving revision %d: %s",
                              server.view.revision, err)
                    continue
                server.replace(view)
                log.info("now serving %d users, %d refused, revision %d", len(view),
                         len(view.conflicts), view.revision)
    finally:
        server.close()
    if flags["failed"]:
        log.error("exiting: the userdb server failed (%s)", server.failure)
        return os.EX_SOFTWARE
    return os.EX_OK
