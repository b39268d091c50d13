"""Keys at rest: passphrases, atomic private/public file writes, permission checks.

Private files are created 0600 in a 0700 directory under a temporary name with
``O_CREAT | O_EXCL`` (so they are never readable by others, not even for an instant),
fsynced, then renamed over the target, so a reader sees the old file or the new one.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path

from .errors import KeyStoreError

PRIVATE_FILE_MODE = 0o600
PUBLIC_FILE_MODE = 0o644
PRIVATE_DIR_MODE = 0o700
_GROUP_OTHER = 0o077


def read_passphrase(*, file: str | None = None, env: str | None = None) -> bytes:
    """Read a passphrase from a file (one trailing newline stripped) or an env variable.

    Give exactly one of ``file`` and ``env`` (the variable's *name*). KeyStoreError if
    neither or both are given, the file cannot be read, or the passphrase is empty.
    """
    if (file is None) == (env is None):
        raise KeyStoreError("give exactly one of a passphrase file or environment variable")
    if file is not None:
        try:
            data = Path(file).read_bytes()
        except OSError as exc:
            raise KeyStoreError(f"cannot read passphrase file {file}: {exc.strerror}") from None
        passphrase = data.removesuffix(b"\n").removesuffix(b"\r")
        source = f"passphrase file {file}"
    else:
        assert env is not None
        passphrase = os.environb.get(os.fsencode(env), b"")
        source = f"environment variable {env}"
    if not passphrase:
        raise KeyStoreError(f"the {source} is empty or unset")
    return passphrase


def write_private(path: Path, data: bytes) -> None:
    """Atomically write a secret file 0600, creating its directory 0700 if missing.

    An existing directory keeps its mode; :func:`check_private` tells if it is too open.
    """
    _write_atomic(Path(path), data, PRIVATE_FILE_MODE)


def write_public(path: Path, data: bytes) -> None:
    """Atomically write a public file (certificate, CRL) 0644."""
    _write_atomic(Path(path), data, PUBLIC_FILE_MODE)


def check_private(path: Path) -> None:
    """KeyStoreError if ``path`` is missing or it or its directory grants group/other access.

    Use it before loading a key, as OpenSSH does: a key others could read is compromised.
    """
    path = Path(path)
    for target, what in ((path, "key file"), (path.parent, "key directory")):
        try:
            mode = stat.S_IMODE(target.stat().st_mode)
        except OSError as exc:
            raise KeyStoreError(f"cannot stat {what} {target}: {exc.strerror}") from None
        if mode & _GROUP_OTHER:
            wanted = PRIVATE_FILE_MODE if target is path else PRIVATE_DIR_MODE
            raise KeyStoreError(
                f"{what} {target} is accessible by group or others (mode {mode:04o});"
                f" chmod {wanted:o} it"
            )


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    parent = path.parent
    try:
        if not parent.exists():
            parent.mkdir(mode=PRIVATE_DIR_MODE, parents=True)
            os.chmod(parent, PRIVATE_DIR_MODE)  # mkdir's mode is filtered by the umask
        temp = parent / f".{path.name}.{secrets.token_hex(8)}.tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(temp, flags, PRIVATE_FILE_MODE)
    except OSError as exc:
        raise KeyStoreError(f"cannot create a file in {parent}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)  # exact mode whatever the umask
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
        _fsync_dir(parent)
    except OSError as exc:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        raise KeyStoreError(f"cannot write {path}: {exc.strerror}") from None


def _fsync_dir(directory: Path) -> None:
    """Make the rename durable: fsync the directory holding the new entry."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
