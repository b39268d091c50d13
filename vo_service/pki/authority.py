"""The CA keys of this service process: loaded from the CA directory once, and loaded
again when ``xos-ca rotate`` names a new current generation (one ``stat`` per use)."""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import Any

from flask import Flask, current_app

import ca
from ca.directory import CADirectory, LoadedCA

from ..errors import CAUnavailable


def ca_dir(config: Mapping[str, Any], instance_path: str) -> str:
    return config.get("CA_DIR") or os.path.join(instance_path, "ca")


class Authorities:
    def __init__(self, path: str, config: Mapping[str, Any]) -> None:
        self.directory = CADirectory(path)
        self.config = config
        self.lock = threading.Lock()
        self.loaded: LoadedCA | None = None
        self.stamp: tuple[float, ...] = ()

    def _stamp(self) -> tuple[float, ...]:
        try:
            return tuple(os.stat(self.directory.path / kind / "current").st_mtime_ns
                         for kind in ("issuing", "ssh"))
        except OSError:
            return ()

    def passphrase(self) -> bytes:
        secret = self.config.get("CA_PASSPHRASE")
        if secret:
            return str(secret).encode()
        if self.config.get("CA_PASSPHRASE_FILE"):
            return ca.read_passphrase(file=self.config["CA_PASSPHRASE_FILE"])
        raise CAUnavailable("no CA passphrase configured (CA_PASSPHRASE_FILE or"
                            " XOS_CA_PASSPHRASE)")

    def get(self) -> LoadedCA:
        stamp = self._stamp()
        if self.loaded is not None and stamp == self.stamp:
            return self.loaded
        with self.lock:
            if self.loaded is None or stamp != self.stamp:
                if not self.directory.exists():
                    raise CAUnavailable(f"no CA in {self.directory.path}: run 'xos-ca init'")
                base = self.config["PUBLIC_URL"].rstrip("/")
                try:
                    self.loaded = self.directory.load(
                        self.passphrase(),
                        lambda generation: (f"{base}/ca/crl/{generation}.der", f"{base}/ocsp"))
                except ca.CAError as error:
                    raise CAUnavailable(f"cannot load the CA: {error}") from None
                self.stamp = stamp
        return self.loaded


def init_app(app: Flask) -> None:
    app.extensions["xos_ca"] = Authorities(ca_dir(app.config, app.instance_path), app.config)


def authority() -> LoadedCA:
    """The current app's CA keys (CAUnavailable when none are set up)."""
    authorities: Authorities = current_app.extensions["xos_ca"]
    return authorities.get()


def passphrase() -> bytes:
    """The CA passphrase, which also encrypts the access-token signing keys."""
    authorities: Authorities = current_app.extensions["xos_ca"]
    return authorities.passphrase()
