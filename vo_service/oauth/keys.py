"""Access-token signing keys: kept in the database (every replica signs with the same
key), encrypted with the CA passphrase, rotated without breaking anyone.

A new key is published in the JWKS ``TOKEN_KEY_PUBLISH_MINUTES`` before it signs
anything, so a verifier that refreshes its JWKS that often never meets an unknown kid.
When it starts signing, the previous key retires and stays published until the last
token it signed has expired (access-token lifetime plus clock skew). Rotation happens by
itself, lazily, once the current key is ``TOKEN_KEY_ROTATE_DAYS`` old, or on demand
(``xos-vo token-keys rotate``).
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import or_, select

import xos_tokens

from ..context import ServiceContext
from ..timeutil import utcnow
from .models import TokenSigningKey

if TYPE_CHECKING:
    from xos_tokens import SigningKey

_DECRYPTED: dict[str, SigningKey] = {}  # kid -> key; keys never change once written
_LOCK = threading.Lock()


def _starts(row: TokenSigningKey) -> dt.datetime:
    """When a key signs from (SQLite hands back naive datetimes; all are UTC)."""
    value = row.signs_from
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


class KeyRing:
    def __init__(self, ctx: ServiceContext, config: Mapping[str, Any],
                 passphrase: bytes) -> None:
        self.ctx = ctx
        self.session = ctx.session
        self.passphrase = passphrase
        self.rotate_after = dt.timedelta(days=config["TOKEN_KEY_ROTATE_DAYS"])
        self.lead = dt.timedelta(minutes=config["TOKEN_KEY_PUBLISH_MINUTES"])
        self.linger = dt.timedelta(minutes=config["ACCESS_TOKEN_MINUTES"]) + \
            dt.timedelta(seconds=xos_tokens.DEFAULT_LEEWAY)

    # -- publishing ------------------------------------------------------------------
    def published(self, now: dt.datetime | None = None) -> list[TokenSigningKey]:
        now = now or utcnow()
        return list(self.session.scalars(select(TokenSigningKey).where(or_(
            TokenSigningKey.unpublish_at.is_(None), TokenSigningKey.unpublish_at > now))
            .order_by(TokenSigningKey.created_at.desc())))

    def jwks(self, now: dt.datetime | None = None) -> dict[str, Any]:
        """The published keys; makes the first key (or a due rotation) happen first, so
        that verifiers can fetch the key before any token is signed."""
        self.signing_key(now)
        return xos_tokens.jwks(self.load(row) for row in self.published(now))

    def key_set(self, now: dt.datetime | None = None) -> xos_tokens.KeySet:
        return xos_tokens.KeySet.from_keys(self.load(row) for row in self.published(now))

    def load(self, row: TokenSigningKey) -> SigningKey:
        with _LOCK:
            key = _DECRYPTED.get(row.kid)
            if key is None:
                key = xos_tokens.SigningKey.from_pem(row.private_pem, self.passphrase)
                _DECRYPTED[row.kid] = key
            return key

    # -- signing ---------------------------------------------------------------------
    def signing_key(self, now: dt.datetime | None = None) -> SigningKey:
        """The key to sign with now; rotates first when it is due."""
        now = now or utcnow()
        rows = self.published(now)
        starts = {r.kid: _starts(r) for r in rows}
        active = [r for r in rows if starts[r.kid] <= now]
        if not active:
            return self.load(self._create(now, now))  # first key: nothing to announce
        current = max(active, key=lambda r: starts[r.kid])
        for older in active:
            if older is not current and older.retired_at is None:
                older.retired_at = starts[current.kid]
                older.unpublish_at = starts[current.kid] + self.linger
        pending = [r for r in rows if starts[r.kid] > now]
        if not pending and now - starts[current.kid] >= self.rotate_after:
            self._create(now, now + self.lead)
        self.session.flush()
        return self.load(current)

    def rotate(self, now: dt.datetime | None = None) -> str:
        """Announce a new key now; it signs once the publishing lead has passed."""
        now = now or utcnow()
        return self._create(now, now + self.lead).kid

    def _create(self, now: dt.datetime, signs_from: dt.datetime) -> TokenSigningKey:
        key = xos_tokens.SigningKey.generate()
        row = TokenSigningKey(kid=key.kid, private_pem=key.to_pem(self.passphrase),
                              created_at=now, signs_from=signs_from)
        self.session.add(row)
        self.session.flush()
        self.ctx.audit.append("service", "token_key.create", "token_key", key.kid,
                              after={"signs_from": signs_from.isoformat()})
        with _LOCK:
            _DECRYPTED[key.kid] = key
        return row
