from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import DateTime, ForeignKey, Integer, LargeBinary, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from ..db import db
from ..timeutil import utcnow


class OAuthClient(db.Model):  # type: ignore[name-defined,misc]
    """A registered OAuth client. Public clients (``xos-login``) have no secret;
    confidential ones keep only the SHA-256 of a high-entropy secret shown once."""

    __tablename__ = "oauth_clients"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64), unique=True)
    secret_hash: Mapped[str | None] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(128))
    grant_types: Mapped[str] = mapped_column(String(512))  # space separated
    scope: Mapped[str] = mapped_column(String(512), default="")  # allowed scopes
    # Extra audiences this client may ask tokens for, beyond the service and the nodes
    # of the user's VOs (client credentials: the audiences the service may call).
    audiences: Mapped[str] = mapped_column(String(2048), default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    disabled_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class RefreshToken(db.Model):  # type: ignore[name-defined,misc]
    """One refresh token (stored as its SHA-256). Each use rotates it: the old row gets
    ``used_at`` and a new row of the same family is made. A used token presented again
    means it was copied: the whole family is revoked."""

    __tablename__ = "refresh_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    family: Mapped[str] = mapped_column(String(32), index=True)
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("users.id"), index=True)
    client_id: Mapped[str] = mapped_column(String(64))
    scope: Mapped[str] = mapped_column(String(512), default="")
    audience: Mapped[str] = mapped_column(String(253))
    issued_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    # The family's absolute end: rotation never extends a login beyond it.
    family_expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class DeviceAuthorization(db.Model):  # type: ignore[name-defined,misc]
    """An RFC 8628 device authorization: the device polls with the device code (stored
    as its SHA-256); the user approves the user code on the service's page."""

    __tablename__ = "device_authorizations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    device_code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_code: Mapped[str] = mapped_column(String(16), unique=True)
    client_id: Mapped[str] = mapped_column(String(64))
    scope: Mapped[str] = mapped_column(String(512), default="")
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    interval: Mapped[int] = mapped_column(Integer)
    last_poll_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    decision: Mapped[str] = mapped_column(String(8), default="pending")  # approved, denied
    user_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, ForeignKey("users.id"))
    used_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class TokenSigningKey(db.Model):  # type: ignore[name-defined,misc]
    """An access-token signing key (encrypted with the CA passphrase). Published in the
    JWKS from ``created_at``, it signs from ``signs_from`` until ``retired_at``, and stays
    published until ``unpublish_at``, after the last token it signed has expired."""

    __tablename__ = "token_signing_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    private_pem: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    signs_from: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    retired_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    unpublish_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class RevokedAccessToken(db.Model):  # type: ignore[name-defined,misc]
    """Access tokens revoked before they expire (RFC 7009), by ``jti``, kept until
    ``expires_at``; introspection and the service itself refuse them."""

    __tablename__ = "revoked_access_tokens"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)
