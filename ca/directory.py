"""The CA directory: where the root, the issuing CAs and the SSH CAs live on disk.

Layout (the directory 0700, every key 0600 and encrypted with one passphrase)::

    root.pem  root.key              the root CA; root.key may be moved offline
    issuing/0001.pem  0001.key      issuing CAs by generation; ``issuing/current`` names one
    ssh/0001.pub  0001.key          SSH CA keys by generation; ``ssh/current`` names one

Rotation adds a generation and points ``current`` at it; older generations stay, so
that certificates they signed still get OCSP answers and CRLs, and SSH certificates they
signed keep working until they expire (nodes trust every published SSH CA line).
Everything here reads and writes files; nothing is cached between calls.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from .authority import IssuingCA, create_issuing, create_root
from .errors import KeyStoreError
from .keys import decrypt_private_key, encrypt_private_key
from .ssh import SSHCertificateAuthority
from .store import check_private, write_private, write_public


@dataclass(frozen=True)
class LoadedCA:
    """Every key of a CA directory, decrypted: what a service needs to sign."""

    root: x509.Certificate
    issuers: dict[int, IssuingCA]
    current: int
    ssh: dict[int, SSHCertificateAuthority]
    ssh_current: int

    @property
    def issuing(self) -> IssuingCA:
        return self.issuers[self.current]

    @property
    def ssh_ca(self) -> SSHCertificateAuthority:
        return self.ssh[self.ssh_current]

    def ssh_public_lines(self) -> list[str]:
        """Every SSH CA key a node should trust, newest first."""
        return [self.ssh[g].public_line() for g in sorted(self.ssh, reverse=True)]


class CADirectory:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    # -- creating and rotating ------------------------------------------------------
    @classmethod
    def init(cls, path: str | Path, name: str, passphrase: bytes, *,
             now: dt.datetime | None = None) -> CADirectory:
        """Create a root CA, a first issuing CA and a first SSH CA in a new directory."""
        directory = cls(path)
        if (directory.path / "root.pem").exists():
            raise KeyStoreError(f"{directory.path} already holds a CA; use rotate")
        root_key, root = create_root(f"{name} Root CA", now=now)
        write_private(directory.path / "root.key", encrypt_private_key(root_key, passphrase))
        write_public(directory.path / "root.pem", root.public_bytes(serialization.Encoding.PEM))
        directory.rotate_issuing(passphrase, name=name, now=now)
        directory.rotate_ssh(passphrase)
        return directory

    def rotate_issuing(self, passphrase: bytes, *, name: str | None = None,
                       root_key: Path | None = None, now: dt.datetime | None = None) -> int:
        """Make a new issuing CA signed by the root and make it current; return its
        generation. ``root_key`` is where the (possibly offline) root key sits."""
        key_path = root_key or self.path / "root.key"
        if not key_path.exists():
            raise KeyStoreError(f"the root key {key_path} is not here: bring it back from"
                                " offline storage, or pass its path")
        check_private(key_path)
        root = self.root_certificate()
        key = decrypt_private_key(key_path.read_bytes(), passphrase)
        generation = self._next("issuing")
        label = name or root.subject.rfc4514_string().removeprefix("CN=").removesuffix(
            " Root CA")
        issuing_key, cert = create_issuing(key, root, f"{label} Issuing CA {generation}",
                                           now=now)
        folder = self.path / "issuing"
        write_private(folder / f"{generation:04d}.key",
                      encrypt_private_key(issuing_key, passphrase))
        write_public(folder / f"{generation:04d}.pem", cert.public_bytes(
            serialization.Encoding.PEM))
        write_public(folder / "current", f"{generation:04d}\n".encode())
        return generation

    def rotate_ssh(self, passphrase: bytes) -> int:
        """Make a new SSH CA key and make it current; return its generation."""
        key = ed25519.Ed25519PrivateKey.generate()
        generation = self._next("ssh")
        folder = self.path / "ssh"
        write_private(folder / f"{generation:04d}.key", encrypt_private_key(key, passphrase))
        write_public(folder / f"{generation:04d}.pub",
                     (SSHCertificateAuthority(key).public_line() + "\n").encode())
        write_public(folder / "current", f"{generation:04d}\n".encode())
        return generation

    # -- reading ----------------------------------------------------------------------
    def exists(self) -> bool:
        return (self.path / "root.pem").is_file()

    def root_certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self._read(self.path / "root.pem"))

    def issuer_certificates(self) -> dict[int, x509.Certificate]:
        return {g: x509.load_pem_x509_certificate(self._read(p))
                for g, p in self._generations("issuing", ".pem").items()}

    def ssh_public_lines(self) -> list[str]:
        lines = self._generations("ssh", ".pub")
        return [self._read(lines[g]).decode().strip() for g in sorted(lines, reverse=True)]

    def current(self, kind: str) -> int:
        text = self._read(self.path / kind / "current").decode().strip()
        if not text.isdigit():
            raise KeyStoreError(f"{self.path / kind / 'current'} does not name a generation")
        return int(text)

    def load(self, passphrase: bytes,
             urls: Callable[[int], tuple[str | None, str | None]] | None = None) -> LoadedCA:
        """Decrypt every key. ``urls(generation)`` gives the CRL and OCSP URLs that
        certificates of that issuing CA carry."""
        root = self.root_certificate()
        issuers: dict[int, IssuingCA] = {}
        for generation, cert in self.issuer_certificates().items():
            key_path = self.path / "issuing" / f"{generation:04d}.key"
            check_private(key_path)
            key = decrypt_private_key(key_path.read_bytes(), passphrase)
            issuing = IssuingCA(key=key, certificate=cert, chain=(cert, root))  # type: ignore[arg-type]
            if urls is not None:
                crl_url, ocsp_url = urls(generation)
                issuing = replace(issuing, crl_url=crl_url, ocsp_url=ocsp_url)
            issuers[generation] = issuing
        ssh: dict[int, SSHCertificateAuthority] = {}
        for generation, key_path in self._generations("ssh", ".key").items():
            check_private(key_path)
            key = decrypt_private_key(key_path.read_bytes(), passphrase)
            if not isinstance(key, ed25519.Ed25519PrivateKey):
                raise KeyStoreError(f"{key_path} is not an Ed25519 key")
            ssh[generation] = SSHCertificateAuthority(key)
        current, ssh_current = self.current("issuing"), self.current("ssh")
        if current not in issuers or ssh_current not in ssh:
            raise KeyStoreError(f"{self.path}: the current generation has no key")
        return LoadedCA(root, issuers, current, ssh, ssh_current)

    # -- helpers ------------------------------------------------------------------------
    def _generations(self, kind: str, suffix: str) -> dict[int, Path]:
        folder = self.path / kind
        if not folder.is_dir():
            raise KeyStoreError(f"{folder} is missing: run 'xos-ca init'")
        return {int(p.stem): p for p in folder.glob(f"*{suffix}") if p.stem.isdigit()}

    def _next(self, kind: str) -> int:
        folder = self.path / kind
        return 1 + max((int(p.stem) for p in folder.glob("*.key") if p.stem.isdigit()),
                       default=0) if folder.is_dir() else 1

    @staticmethod
    def _read(path: Path) -> bytes:
        try:
            return path.read_bytes()
        except OSError as exc:
            raise KeyStoreError(f"cannot read {path}: {exc.strerror}") from None
