"""Keys at rest: passphrase sources, atomic 0600/0644 writes, permission checks."""

from __future__ import annotations

import os
import stat
from contextlib import contextmanager

import pytest

import ca
import ca.store


def mode(path):
    return stat.S_IMODE(path.stat().st_mode)


@contextmanager
def umask(value):
    previous = os.umask(value)
    try:
        yield
    finally:
        os.umask(previous)


def test_passphrase_from_a_file_loses_one_trailing_newline(tmp_path):
    path = tmp_path / "pass"
    path.write_bytes(b"s3cret \n")
    assert ca.read_passphrase(file=str(path)) == b"s3cret "
    path.write_bytes(b"s3cret\r\n")
    assert ca.read_passphrase(file=str(path)) == b"s3cret"
    path.write_bytes(b"two\n\n")
    assert ca.read_passphrase(file=str(path)) == b"two\n"


def test_passphrase_from_the_environment(monkeypatch):
    monkeypatch.setenv("XOS_TEST_CA_PASS", "from env")
    assert ca.read_passphrase(env="XOS_TEST_CA_PASS") == b"from env"


@pytest.mark.parametrize("content", [b"", b"\n"])
def test_an_empty_passphrase_file_is_refused(tmp_path, content):
    path = tmp_path / "pass"
    path.write_bytes(content)
    with pytest.raises(ca.KeyStoreError, match="passphrase file .* is empty"):
        ca.read_passphrase(file=str(path))


def test_missing_sources_are_refused(tmp_path, monkeypatch):
    monkeypatch.delenv("XOS_TEST_CA_UNSET", raising=False)
    with pytest.raises(ca.KeyStoreError, match="environment variable XOS_TEST_CA_UNSET is empty"):
        ca.read_passphrase(env="XOS_TEST_CA_UNSET")
    with pytest.raises(ca.KeyStoreError, match="cannot read passphrase file"):
        ca.read_passphrase(file=str(tmp_path / "missing"))
    with pytest.raises(ca.KeyStoreError, match="exactly one"):
        ca.read_passphrase()
    with pytest.raises(ca.KeyStoreError, match="exactly one"):
        ca.read_passphrase(file=str(tmp_path / "p"), env="X")


def test_write_private_creates_0700_dir_and_0600_file(tmp_path):
    path = tmp_path / "ca" / "keys" / "issuing.key"
    with umask(0):
        ca.write_private(path, b"secret")
    assert path.read_bytes() == b"secret"
    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700
    ca.check_private(path)


def test_write_public_is_0644_whatever_the_umask(tmp_path):
    path = tmp_path / "certs" / "issuing.pem"
    with umask(0o077):
        ca.write_public(path, b"cert")
    assert mode(path) == 0o644 and path.read_bytes() == b"cert"


def test_writes_replace_the_file_and_leave_no_temporary(tmp_path):
    path = tmp_path / "k" / "key.pem"
    ca.write_private(path, b"old")
    ca.write_private(path, b"new")
    assert path.read_bytes() == b"new"
    assert sorted(p.name for p in path.parent.iterdir()) == ["key.pem"]


def test_a_private_file_is_never_readable_by_others(tmp_path, monkeypatch):
    """Spy on the syscalls: created exclusively at 0600, still 0600 when renamed in."""
    seen = []
    real_open, real_replace = os.open, os.replace

    def spy_open(path, flags, mode=0o777, **kwargs):
        if str(path).endswith(".tmp"):
            seen.append(("open", flags & os.O_EXCL, flags & os.O_CREAT, mode))
        return real_open(path, flags, mode, **kwargs)

    def spy_replace(src, dst):
        seen.append(("replace", stat.S_IMODE(os.stat(src).st_mode)))
        real_replace(src, dst)

    monkeypatch.setattr(ca.store.os, "open", spy_open)
    monkeypatch.setattr(ca.store.os, "replace", spy_replace)
    with umask(0):
        ca.write_private(tmp_path / "d" / "key", b"secret")
    assert seen == [("open", os.O_EXCL, os.O_CREAT, 0o600), ("replace", 0o600)]


def test_a_failed_write_leaves_nothing_behind(tmp_path, monkeypatch):
    def failing_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ca.store.os, "replace", failing_replace)
    with pytest.raises(ca.KeyStoreError, match="cannot write .*No space left on device"):
        ca.write_private(tmp_path / "key", b"secret")
    assert list(tmp_path.iterdir()) == []


def test_write_into_a_file_instead_of_a_directory_fails_cleanly(tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_bytes(b"")
    with pytest.raises(ca.KeyStoreError, match="cannot create a file in"):
        ca.write_private(blocker / "key", b"secret")


def test_an_existing_directory_keeps_its_mode(tmp_path):
    directory = tmp_path / "shared"
    directory.mkdir(mode=0o755)
    os.chmod(directory, 0o755)
    ca.write_private(directory / "key", b"secret")
    assert mode(directory) == 0o755
    with pytest.raises(ca.KeyStoreError, match=r"key directory .* \(mode 0755\); chmod 700"):
        ca.check_private(directory / "key")


def test_check_private_refuses_a_group_readable_file(tmp_path):
    path = tmp_path / "d" / "key"
    ca.write_private(path, b"secret")
    os.chmod(path, 0o640)
    with pytest.raises(ca.KeyStoreError, match=r"key file .* \(mode 0640\); chmod 600"):
        ca.check_private(path)


def test_check_private_refuses_a_missing_file(tmp_path):
    with pytest.raises(ca.KeyStoreError, match="cannot stat key file"):
        ca.check_private(tmp_path / "missing")


def test_store_round_trip_with_an_encrypted_key(tmp_path, user_key):
    path = tmp_path / "ca" / "issuing.key"
    ca.write_private(path, ca.encrypt_private_key(user_key, b"pw"))
    ca.check_private(path)
    assert ca.decrypt_private_key(path.read_bytes(), b"pw").public_key() == user_key.public_key()
