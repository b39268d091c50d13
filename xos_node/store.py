"""The snapshot on disk: what the node serves after a restart while the service is down.

NSS and PAM answer from this file's content, so it is written the way nsscache commits
its maps: a temporary file in the same directory (created 0600 with O_EXCL, so nobody
can plant or read it), fsync, rename over the old file, fsync the directory. A reader
sees the old snapshot or the new one, never half of one, even after a crash or a power
cut. Writers take an flock, so two agents on one state directory cannot interleave, and
temporary files left by a crash are removed by the next writer.

The file carries a SHA-256 of its canonical snapshot: a truncated or altered file is
refused whole (``CorruptSnapshot``) and reported, never half-applied. Then the snapshot
is validated like an answer from the network, since the file could have been edited.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import CorruptSnapshot, ResyncRequired, StoreError, SyncRefused
from .journal import JOURNAL_NAME, canonical, entry_bytes, read_entries
from .model import CHANGE_LISTS, DEFAULT_LIMITS, Limits, Snapshot

log = logging.getLogger(__name__)

FILE_NAME = "snapshot.json"
LOCK_NAME = ".snapshot.lock"
CORRUPT_SUFFIX = ".corrupt"
FORMAT = "xos-node-snapshot"
VERSION = 1
#: far above DESIGN.md's largest node (a million users is some 200 MB of JSON)
MAX_FILE = 2 * 1024**3
#: journal bytes before a compaction (or a quarter of the snapshot file, if larger)
COMPACT_AT = 1024**2


def replay(snapshot: Snapshot, answer: dict[str, Any], limits: Limits) -> Snapshot:
    """``snapshot`` moved on by a journalled changes ``answer``. The revision may have
    moved between two entries through answers without changes for this node (they are
    not journalled): the answer then applies from its own ``since``."""
    since = answer.get("since")
    if type(since) is int and since > snapshot.revision:
        snapshot = snapshot.apply_changes({**answer, **{key: [] for key in CHANGE_LISTS},
                                           "since": snapshot.revision, "revision": since},
                                          limits)
    return snapshot.apply_changes(answer, limits)


_HEAD = b'{"format":"' + FORMAT.encode() + b'","version":' + str(VERSION).encode() \
    + b',"sha256":"'
_BODY_KEY = b'","snapshot":'


def file_bytes(body: bytes) -> bytes:
    """A store file holding ``body`` (a snapshot's canonical bytes) and its checksum."""
    return _HEAD + hashlib.sha256(body).hexdigest().encode() + _BODY_KEY + body + b"}\n"


def read_document(data: bytes, where: object, *, bare_ok: bool = False) -> dict[str, Any]:
    """The snapshot object a store file holds, its checksum verified (see
    :func:`read_store`); the journal is not applied."""
    return read_store(data, where, bare_ok=bare_ok)[0]


def read_store(data: bytes, where: object, *,
               bare_ok: bool = False) -> tuple[dict[str, Any], str]:
    """The snapshot object a store file holds and its checksum (the journal's ``base``),
    the checksum verified; CorruptSnapshot if not. A bare object's checksum is "".

    The one reader of the file format for the agent, the NSS provider and the PAM helpers.
    A file as :func:`file_bytes` wrote it is checked on its raw bytes and parsed once (a
    PAM helper reads it at every login); any other layout of the same JSON is parsed and
    re-serialized to check. ``bare_ok`` also accepts a bare snapshot object (the API's
    answer, as an operator or a test may write it by hand).
    """
    digest_end = len(_HEAD) + 64
    body_start = digest_end + len(_BODY_KEY)
    end = len(data.rstrip(b"\n"))
    if data.startswith(_HEAD) and data[digest_end:body_start] == _BODY_KEY \
            and data[end - 1:end] == b"}":
        body = data[body_start:end - 1]
        if hashlib.sha256(body).hexdigest().encode() != data[len(_HEAD):digest_end]:
            raise CorruptSnapshot(f"{where} does not match its checksum (altered or damaged)")
        snapshot = _parse(body, where)
        if not isinstance(snapshot, dict):
            raise CorruptSnapshot(f"{where} holds no snapshot object")
        return snapshot, data[len(_HEAD):digest_end].decode()
    document = _parse(data, where)
    if not isinstance(document, dict):
        raise CorruptSnapshot(f"{where} is not a JSON object")
    if document.get("format") != FORMAT:
        if bare_ok and "format" not in document:
            return document, ""
        raise CorruptSnapshot(f"{where} is not an xos-node snapshot file")
    if document.get("version") != VERSION:
        raise CorruptSnapshot(f"{where} has format version {document.get('version')!r},"
                              f" this node reads {VERSION}")
    snapshot = document.get("snapshot")
    if not isinstance(snapshot, dict):
        raise CorruptSnapshot(f"{where} holds no snapshot object")
    digest = hashlib.sha256(canonical(snapshot)).hexdigest()
    if document.get("sha256") != digest:
        raise CorruptSnapshot(f"{where} does not match its checksum (altered or damaged)")
    return snapshot, digest


def _parse(data: bytes, where: object) -> Any:
    try:
        return json.loads(data)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise CorruptSnapshot(f"{where} is not complete JSON (truncated or damaged)"
                              ) from None


class SnapshotStore:
    """``snapshot.json`` and its journal in ``directory`` (created 0700 on the first save).

    :meth:`save` writes a whole snapshot; :meth:`append` journals one changes answer
    (the cost of the change) and compacts, i.e. saves whole, once the journal has grown
    past ``compact_at`` bytes (at least a quarter of the snapshot file)."""

    def __init__(self, directory: str | os.PathLike[str],
                 limits: Limits = DEFAULT_LIMITS, *, compact_at: int = COMPACT_AT) -> None:
        self.directory = Path(directory)
        self.path = self.directory / FILE_NAME
        self.journal = self.directory / JOURNAL_NAME
        self.limits = limits
        self.compact_at = compact_at
        self._base: str | None = None  # the snapshot file's digest, once read or written
        self._base_size = 0
        self._journal_size = 0

    # -- reading -----------------------------------------------------------------------
    def load(self) -> Snapshot | None:
        """The stored snapshot with its journal applied, None when there is none yet.

        Raises ``CorruptSnapshot`` (and logs why) for a file that is truncated, altered or
        invalid, and ``StoreError`` when the directory is unsafe or unreadable."""
        if not self.directory.exists():
            return None
        self._check_directory()
        data = self._read(self.path, MAX_FILE)
        if data is None:
            return None
        try:
            return self._decode(data, self._read(self.journal, MAX_FILE) or b"")
        except CorruptSnapshot as error:
            log.error("refusing the stored snapshot %s: %s", self.path, error.message)
            raise

    def _read(self, path: Path, limit: int) -> bytes | None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError as error:
            raise StoreError(f"cannot read {path}: {error.strerror or error}") from None
        with os.fdopen(fd, "rb") as handle:
            data = handle.read(limit + 1)
        if len(data) > limit:
            raise CorruptSnapshot(f"{path} is larger than {limit} bytes")
        return data

    def _decode(self, data: bytes, journal: bytes) -> Snapshot:
        body, base = read_store(data, self.path)
        try:
            snapshot = Snapshot.from_json(body, limits=self.limits)
        except SyncRefused as error:
            raise CorruptSnapshot(f"{self.path} holds an invalid snapshot: {error.reason}"
                                  ) from None
        entries = read_entries(journal, base, self.journal)
        for number, answer in enumerate(entries, 1):
            try:
                snapshot = replay(snapshot, answer, self.limits)
            except (SyncRefused, ResyncRequired) as error:
                raise CorruptSnapshot(f"{self.journal}: entry {number} does not apply:"
                                      f" {error.message}") from None
        self._base, self._base_size = base, len(data)
        self._journal_size = len(journal) if entries else 0
        return snapshot

    # -- writing -----------------------------------------------------------------------
    def save(self, snapshot: Snapshot) -> None:
        """Replace the stored snapshot by ``snapshot`` atomically and durably, and start
        the journal afresh."""
        body = canonical(snapshot.to_json())
        data = file_bytes(body)
        self._prepare_directory()
        with self._locked():
            self._remove_leftovers()
            self._replace(data)
            # after the rename: a crash before this unlink leaves entries for the old
            # file, which readers recognize by their base and do not use
            with contextlib.suppress(FileNotFoundError):
                self.journal.unlink()
        self._base = hashlib.sha256(body).hexdigest()
        self._base_size, self._journal_size = len(data), 0

    def append(self, snapshot: Snapshot, answer: dict[str, Any]) -> None:
        """Make ``snapshot``, which is the stored one moved on by the changes ``answer``,
        durable: one journal line, or a whole save when there is no stored file to
        journal against yet or the journal is due for compaction."""
        line = entry_bytes(self._base, answer) if self._base else b""
        if not line or self._journal_size + len(line) > max(self.compact_at,
                                                            self._base_size // 4):
            self.save(snapshot)
            return
        with self._locked():
            try:
                fd = os.open(self.journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT
                             | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            except OSError as error:
                raise StoreError(f"cannot open {self.journal}: {error.strerror or error}"
                                 ) from None
            try:
                os.write(fd, line)
                os.fsync(fd)
            except OSError as error:
                raise StoreError(f"cannot write {self.journal}: {error.strerror or error}"
                                 ) from None
            finally:
                os.close(fd)
            if self._journal_size == 0:
                self._fsync_directory()  # the journal's own directory entry
        self._journal_size += len(line)

    def quarantine(self) -> Path | None:
        """Move a refused snapshot file aside (``snapshot.json.corrupt``) for the operator
        to inspect; the next save writes a good one. Returns the new path, if any."""
        target = self.path.with_name(FILE_NAME + CORRUPT_SUFFIX)
        try:
            os.replace(self.path, target)
        except FileNotFoundError:
            return None
        except OSError as error:
            raise StoreError(f"cannot move {self.path} aside: {error.strerror}") from None
        return target

    def _replace(self, data: bytes) -> None:
        temporary = self.directory / f".{FILE_NAME}.{secrets.token_hex(8)}.tmp"
        try:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                         | os.O_CLOEXEC, 0o600)
        except OSError as error:
            raise StoreError(f"cannot create a file in {self.directory}:"
                             f" {error.strerror or error}") from None
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.path)
        except BaseException as error:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            if isinstance(error, OSError):
                raise StoreError(f"cannot write {self.path}: {error.strerror or error}"
                                 ) from None
            raise
        self._fsync_directory()

    def _fsync_directory(self) -> None:
        """Without this, a crash after the rename may bring back the old file."""
        fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        except OSError as error:
            raise StoreError(f"cannot sync {self.directory}: {error.strerror}") from None
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(self.directory / LOCK_NAME,
                     os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _remove_leftovers(self) -> None:
        """Temporary files of a writer that crashed. Called under the lock: every writer
        renames or removes its temporary file before it lets go, so what is left is stale."""
        for entry in self.directory.glob(f".{FILE_NAME}.*.tmp"):
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
                log.info("removed %s, left by an interrupted write", entry)

    # -- the directory -----------------------------------------------------------------
    def _prepare_directory(self) -> None:
        """Create the directory 0700, or tighten one of ours that others could enter."""
        try:
            self.directory.parent.mkdir(parents=True, exist_ok=True)
            self.directory.mkdir(mode=0o700, exist_ok=True)
        except OSError as error:
            raise StoreError(f"cannot create {self.directory}: {error.strerror or error}"
                             ) from None
        info = self._check_directory(tighten=True)
        if stat.S_IMODE(info.st_mode) != 0o700:
            os.chmod(self.directory, 0o700)

    def _check_directory(self, tighten: bool = False) -> os.stat_result:
        """A real directory of ours that nobody else may write (or, with ``tighten``, that
        we are about to make 0700)."""
        try:
            info = os.lstat(self.directory)
        except OSError as error:
            raise StoreError(f"cannot use {self.directory}: {error.strerror}") from None
        if not stat.S_ISDIR(info.st_mode):
            raise StoreError(f"{self.directory} is not a directory (a symlink is refused)")
        if info.st_uid != os.geteuid():
            raise StoreError(f"{self.directory} belongs to uid {info.st_uid}, not to this"
                             " agent")
        if not tighten and stat.S_IMODE(info.st_mode) & 0o022:
            raise StoreError(f"{self.directory} is writable by others (mode"
                             f" {stat.S_IMODE(info.st_mode):o}); chmod 700 it")
        return info
