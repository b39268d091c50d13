"""``xos-node run``: the node agent, one long-running process for the node's whole job.

It works from the state directory that ``xos-node enroll`` wrote and that the PAM helpers
and ``xos-run`` read:

- the sync loop (:mod:`.sync`) keeps ``snapshot.json`` current, long-polling the service,
  and keeps serving the stored snapshot while the service is down;
- the NSS provider (:mod:`nss_plugin`) answers glibc from memory on the userdb socket:
  each new snapshot is swapped in as soon as it is saved, and a change to the local
  ``/etc/passwd`` or ``/etc/group`` is picked up within seconds (local accounts win);
- upkeep, every few minutes and never on the NSS path: the token keys (``jwks.json``;
  the service publishes a new key an hour before it signs with it), the SSH CA keys and
  key revocation list sshd reads, and the node's certificate (renewed when less than a
  third of its lifetime is left).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509

from ca.store import write_public

from .client import NodeClient
from .enrol import KRL, new_key_and_csr, write_node_certificate
from .errors import BadAnswer, NodeError, UsageError
from .model import Snapshot
from .store import SnapshotStore
from .sync import SyncLoop

log = logging.getLogger(__name__)

UPKEEP_EVERY = 600.0  # seconds between JWKS and certificate checks
LOCAL_FILES_EVERY = 2.0  # seconds between looks at /etc/passwd and /etc/group
RENEW_AT = 2 / 3  # of a certificate's lifetime


@dataclass(frozen=True)
class NodeIdentity:
    """Who this node is and where its service is: ``node.json`` and ``api-key``."""

    state_dir: Path
    node: str
    url: str
    ca_file: str | None
    api_key: str

    @classmethod
    def load(cls, state_dir: Path) -> NodeIdentity:
        from .cli import read_key_file

        try:
            info = json.loads((state_dir / "node.json").read_text())
            node, url = str(info["node"]), str(info.get("url") or info["issuer"])
        except FileNotFoundError:
            raise UsageError(f"{state_dir} holds no node.json: run xos-node enroll first"
                             ) from None
        except (ValueError, KeyError, TypeError):
            raise UsageError(f"{state_dir / 'node.json'} is not a node description") from None
        ca_file = info.get("ca_file")
        return cls(state_dir, node, url, str(ca_file) if ca_file else None,
                   read_key_file(str(state_dir / "api-key")))

    def client(self, **options: Any) -> NodeClient:
        return NodeClient(self.url, self.node, self.api_key, ca_file=self.ca_file, **options)


# -- upkeep: token keys and the node certificate --------------------------------------
def refresh_jwks(client: NodeClient, state_dir: Path) -> bool:
    """Write the service's current JWKS to ``jwks.json`` if it changed; True if it did.
    ``client.jwks()`` has checked it is a usable key set."""
    document = client.jwks()
    path = state_dir / "jwks.json"
    try:
        if json.loads(path.read_text()) == document:
            return False
    except (OSError, ValueError):
        pass
    write_public(path, json.dumps(document).encode())
    log.info("token keys updated: %s", ", ".join(k.get("kid", "?") for k in document["keys"]))
    return True


def refresh_ssh_files(client: NodeClient, state_dir: Path) -> bool:
    """The SSH CA keys sshd trusts and its key revocation list, rewritten when changed
    (sshd reads both at each login: no reload needed)."""
    changed = False
    for name, data in (("ssh_user_ca.pub", "".join(f"{line}\n" for line in
                                                   client.ssh_ca_keys()).encode()),
                       (KRL, client.ssh_krl())):
        path = state_dir / name
        if not path.exists() or path.read_bytes() != data:
            write_public(path, data)
            log.info("%s updated", path)
            changed = True
    return changed


def renewal_due(certificate: x509.Certificate, now: dt.datetime) -> bool:
    start, end = certificate.not_valid_before_utc, certificate.not_valid_after_utc
    return now >= start + (end - start) * RENEW_AT


def renew_certificate(client: NodeClient, state_dir: Path,
                      now: dt.datetime | None = None) -> bool:
    """Renew ``tls.pem`` (with a new key) once two thirds of its lifetime have passed."""
    now = now or dt.datetime.now(dt.UTC)
    current = x509.load_pem_x509_certificate((state_dir / "tls.pem").read_bytes())
    if not renewal_due(current, now):
        return False
    key, csr = new_key_and_csr()
    answer = client.renew_certificate(csr)
    try:
        fresh = x509.load_pem_x509_certificate(str(answer["certificate"]).encode())
        chain = str(answer["chain"])
        x509.load_pem_x509_certificates(chain.encode())
    except (KeyError, TypeError, ValueError) as error:
        raise BadAnswer(f"the renewed certificate is not usable: {error}") from None
    if fresh.public_key() != key.public_key():
        raise BadAnswer("the renewed certificate is not for the key made here")
    write_node_certificate(state_dir, key, fresh, chain)
    log.info("node certificate renewed: serial %x, valid until %s", fresh.serial_number,
             fresh.not_valid_after_utc.isoformat())
    return True


def upkeep(client: NodeClient, state_dir: Path) -> None:
    """One round of upkeep; a failure is logged and tried again next round."""
    for task in (refresh_jwks, refresh_ssh_files, renew_certificate):
        try:
            task(client, state_dir)
        except (NodeError, OSError, ValueError) as error:
            log.warning("%s failed, trying again later: %s", task.__name__,
                        getattr(error, "message", error))


# -- NSS: the in-process userdb provider -------------------------------------------------
class NssFeed:
    """Serves each snapshot the sync loop announces on the userdb socket, from memory.

    ``__call__`` is the loop's ``on_change``: the view follows what the snapshot touched
    (``AccountView.updated``), so a suspension costs microseconds, not a rebuild of every
    account; :meth:`check_local_files` rebuilds it whole when the local passwd or group
    file changed, as does the next announcement after a failed update. The socket is
    served from the start (empty until the first snapshot), so lookups never wait on the
    sync."""

    def __init__(self, *, socket_dir: str, service: str, passwd: Path, group: Path,
                 conflicts: Path | None = None) -> None:
        from nss_plugin.accounts import AccountView
        from nss_plugin.daemon import FilesWatch
        from nss_plugin.varlink import UserdbServer, bypass_self

        bypass_self(service)  # before anything here could resolve a name through us
        self.passwd, self.group, self.conflicts = passwd, group, conflicts
        self.local_files = FilesWatch(passwd, group)
        self._snapshot: Snapshot | None = None
        self._whole = True  # the next view is built whole
        self._lock = threading.Lock()
        self.server = UserdbServer(AccountView.empty(), service=service,
                                   socket_dir=socket_dir).start()

    def __call__(self, snapshot: Snapshot) -> None:
        with self._lock:
            self._serve(snapshot)

    def check_local_files(self) -> None:
        if self.local_files.changed() and self._snapshot is not None:
            log.info("local accounts changed: rebuilding the NSS view")
            with self._lock:
                self._whole = True
                self._serve(self._snapshot)

    def _serve(self, snapshot: Snapshot) -> None:
        from nss_plugin.accounts import AccountView, LocalAccounts
        from nss_plugin.daemon import report_conflicts

        current = self.server.view
        try:
            if self._whole:
                view = AccountView.from_snapshot(
                    snapshot, LocalAccounts.from_files(self.passwd, self.group))
            else:
                view = current.updated(snapshot)
        except Exception:  # noqa: BLE001 -- whatever it was, the next view is built whole
            self._whole = True
            log.exception("NSS keeps serving revision %d", current.revision)
            return
        self.server.replace(view)
        self._snapshot, self._whole = snapshot, False
        if view.conflicts != current.conflicts or self.conflicts is not None \
                and not self.conflicts.exists():
            report_conflicts(view, self.conflicts)
        log.info("NSS serves %d users (%d refused) at revision %d", len(view),
                 len(view.conflicts), view.revision)

    def close(self) -> None:
        self.server.close()


# -- the whole agent ------------------------------------------------------------------
def run_agent(identity: NodeIdentity, stop: threading.Event, *, nss: NssFeed | None,
              interval: float, wait: int, max_backoff: float,
              upkeep_every: float = UPKEEP_EVERY,
              on_change: Callable[[Snapshot], None] | None = None) -> None:
    """Sync, serve and keep up until ``stop`` is set; returns at once then.

    The sync and upkeep run in daemon threads: a long-poll in flight when ``stop`` comes
    is abandoned, which is safe because every file is replaced atomically."""
    client = identity.client()
    listeners = [f for f in (nss, on_change) if f is not None]

    def announce(snapshot: Snapshot) -> None:
        for listener in listeners:
            listener(snapshot)

    loop = SyncLoop(client, SnapshotStore(identity.state_dir), announce, interval=interval,
                    max_backoff=max(interval, max_backoff), wait=wait)

    def housekeeping() -> None:
        due = 0.0
        while not stop.is_set():
            if time.monotonic() >= due:
                upkeep(client, identity.state_dir)
                due = time.monotonic() + upkeep_every
            if nss is not None:
                nss.check_local_files()
            stop.wait(LOCAL_FILES_EVERY)

    for name, work in (("sync", lambda: loop.run(stop)), ("upkeep", housekeeping)):
        threading.Thread(target=work, name=f"xos-node-{name}", daemon=True).start()
    stop.wait()
