"""The files of one login under ``$XDG_CONFIG_HOME/xos``: credentials, settings, keys.

Why so careful: the credentials file holds a refresh token that is as good as the
user's password for two weeks, and refresh tokens rotate on every use. So the directory
is 0700, secret files are created 0600 (never chmod-ed after the fact), every write is
atomic (temporary file, fsync, rename), and the read-refresh-write of a token happens
under a lock: two ``xos-login token`` running at once would otherwise both redeem the
same refresh token, and the service treats the second redemption as a stolen token and
ends the whole login.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import LocalFileError

CREDENTIALS = "credentials.json"
SETTINGS = "config.json"
LOCK = ".credentials.lock"
#: key and certificate files written by ``xos-login cert``, removed by ``logout --all``
XOS_KEY, XOS_CERT, XOS_CHAIN = "xos.key", "xos.pem", "xos-chain.pem"
SSH_KEY = "id_xos_ed25519"
SSH_PUBLIC, SSH_CERT = SSH_KEY + ".pub", SSH_KEY + "-cert.pub"
KEY_FILES = (XOS_KEY, XOS_CERT, XOS_CHAIN, SSH_KEY, SSH_PUBLIC, SSH_CERT)
MAX_FILE = 1024 * 1024


def default_directory() -> Path:
    """``$XDG_CONFIG_HOME/xos``, or ``~/.config/xos`` (the XDG spec ignores a relative
    XDG_CONFIG_HOME)."""
    base = os.environ.get("XDG_CONFIG_HOME", "")
    root = Path(base) if base and os.path.isabs(base) else Path.home() / ".config"
    return root / "xos"


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` by ``data`` all at once: a reader sees the old or the new file,
    never half of one, even after a crash. mkstemp creates the file 0600, so a secret is
    never readable by others, not even for a moment."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        if mode != 0o600:
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself survives a crash
    finally:
        os.close(directory)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_FILE + 1)
    except FileNotFoundError:
        return None
    try:
        value = json.loads(data) if len(data) <= MAX_FILE else None
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise LocalFileError(f"{path} is damaged; delete it or run 'xos-login login'")
    return value


@dataclasses.dataclass(frozen=True)
class Credentials:
    """One login: where, who, and the tokens. ``expires_at`` is computed from the
    answer's ``expires_in`` on this machine's clock, so clock skew does not matter."""

    url: str
    username: str
    access_token: str
    expires_at: dt.datetime
    refresh_token: str

    def to_json(self) -> dict[str, str]:
        return {"url": self.url, "username": self.username,
                "access_token": self.access_token,
                "access_token_expires_at": self.expires_at.isoformat(timespec="seconds"),
                "refresh_token": self.refresh_token}

    @classmethod
    def from_json(cls, value: dict[str, Any], path: Path) -> Credentials:
        fields = ("url", "username", "access_token", "access_token_expires_at",
                  "refresh_token")
        if not all(isinstance(value.get(name), str) for name in fields):
            raise LocalFileError(f"{path} is damaged; run 'xos-login login'")
        try:
            expires = dt.datetime.fromisoformat(value["access_token_expires_at"])
        except ValueError:
            raise LocalFileError(f"{path} has a bad expiry; run 'xos-login login'") from None
        if expires.tzinfo is None:
            expires = expires.replace(tzinfo=dt.UTC)
        return cls(value["url"], value["username"], value["access_token"], expires,
                   value["refresh_token"])

    def replace(self, **changes: Any) -> Credentials:
        return dataclasses.replace(self, **changes)


class Store:
    """The configuration directory: credentials, remembered settings, keys."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory or default_directory()

    def path(self, name: str) -> Path:
        return self.directory / name

    def ensure(self) -> Path:
        """Create the directory 0700, and tighten it if it exists wider: it holds keys."""
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            if self.directory.stat().st_mode & 0o077:
                self.directory.chmod(0o700)
        except OSError as error:
            raise LocalFileError(f"cannot create {self.directory}: {error.strerror}") from None
        return self.directory

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the login's lock: one read-refresh-write at a time (see module doc)."""
        self.ensure()
        fd = os.open(self.path(LOCK), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    # -- credentials -------------------------------------------------------------------
    def credentials(self) -> Credentials | None:
        path = self.path(CREDENTIALS)
        value = _read_json(path)
        return None if value is None else Credentials.from_json(value, path)

    def save_credentials(self, credentials: Credentials) -> None:
        self.ensure()
        data = json.dumps(credentials.to_json(), indent=2).encode() + b"\n"
        write_atomic(self.path(CREDENTIALS), data, 0o600)

    def delete_credentials(self) -> bool:
        try:
            self.path(CREDENTIALS).unlink()
        except FileNotFoundError:
            return False
        return True

    # -- remembered settings: the service's URL and CA file, kept after a logout --------
    def settings(self) -> dict[str, str]:
        value = _read_json(self.path(SETTINGS)) or {}
        return {k: v for k, v in value.items() if isinstance(v, str)}

    def save_settings(self, settings: dict[str, str]) -> None:
        self.ensure()
        write_atomic(self.path(SETTINGS), json.dumps(settings, indent=2).encode() + b"\n",
                     0o600)

    # -- keys and certificates -----------------------------------------------------------
    def write_file(self, name: str, data: bytes, mode: int) -> Path:
        self.ensure()
        path = self.path(name)
        write_atomic(path, data, mode)
        return path

    def delete_keys(self) -> list[Path]:
        gone = []
        for name in KEY_FILES:
            with contextlib.suppress(FileNotFoundError):
                self.path(name).unlink()
                gone.append(self.path(name))
        return gone
