"""The signed-in user's certificates: the latest ones with their state, revoking one, and
asking for a new XOS certificate (for a CSR) or SSH user certificate (for a public key)
made on the user's own machine. An issued certificate is shown once, on the answer to
the request that made it: the service keeps its fingerprint, not a copy to fetch again.

Every upload or pasted text is capped at ``ca.MAX_INPUT_BYTES`` before anything parses
it; the CA library then checks it as it checks the API's (``ca.load_csr``,
``ca.load_ssh_public_key``), and ``CertificateService`` decides what may be issued or
revoked. The private key never reaches the server."""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from flask import current_app, flash, redirect, render_template, url_for
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileSize
from werkzeug.datastructures import FileStorage
from werkzeug.wrappers import Response
from wtforms import (
    BooleanField,
    HiddenField,
    IntegerField,
    SelectField,
    SelectMultipleField,
    TextAreaField,
)
from wtforms.validators import (
    AnyOf,
    DataRequired,
    Length,
    NumberRange,
    Optional,
    ValidationError,
)

import ca
from vo_service.context import ServiceContext
from vo_service.db import db
from vo_service.errors import NotFound, PermissionDenied, XosError
from vo_service.memberships.services import Holdings, MembershipService
from vo_service.pki.authority import authority
from vo_service.pki.models import IssuedCertificate
from vo_service.pki.services import CertificateService
from vo_service.timeutil import aware, utcnow

from ..portal import blueprint, service_context
from .errors import error_page

MAX_UPLOAD = ca.MAX_INPUT_BYTES  # one CSR or public key; the CA refuses more anyway
LISTED = 50  # the latest certificates shown
KINDS = {"x509-user": "XOS", "ssh-user": "SSH"}
TOO_BIG = f"is over {MAX_UPLOAD // 1024} KiB: a CSR or public key is a few kilobytes"
REASONS = {"superseded": "I have a new one",
           "keyCompromise": "My key was lost or exposed",
           "cessationOfOperation": "I no longer need it",
           "unspecified": "No reason given"}
#: ``ssh-keygen``'s default file for each key type: where ssh looks for its certificate
SSH_FILES = {"ssh-ed25519": "id_ed25519", "ssh-rsa": "id_rsa"}


class XOSRequestForm(FlaskForm):  # type: ignore[misc]
    csr_file = FileField("CSR file", validators=[
        Optional(), FileSize(MAX_UPLOAD, message=f"The CSR file {TOO_BIG}.")])
    csr_text = TextAreaField("or paste the CSR (PEM)", validators=[
        Optional(), Length(max=MAX_UPLOAD, message=f"The pasted CSR {TOO_BIG}.")])
    vos = SelectMultipleField("VOs to carry", choices=[], validate_choice=False)
    roles = BooleanField("Carry my roles in these VOs")
    xos_hours = IntegerField("Lifetime in hours", validators=[
        Optional(), NumberRange(1, 24 * 366, message="A lifetime is 1 hour or more.")])

    def validate_vos(self, field: SelectMultipleField) -> None:
        """Only the user's active VOs, each once (no echo: a value may be anything)."""
        held = [str(choice) for choice in field.choices or []]
        if len(field.data) != len(set(field.data)) or any(v not in held for v in field.data):
            raise ValidationError("Choose only VOs you are an active member of, each once.")


class SSHRequestForm(FlaskForm):  # type: ignore[misc]
    key_file = FileField("Public key file", validators=[
        Optional(), FileSize(MAX_UPLOAD, message=f"The public key file {TOO_BIG}.")])
    key_text = TextAreaField("or paste the public key line", validators=[
        Optional(), Length(max=MAX_UPLOAD, message=f"The pasted public key {TOO_BIG}.")])
    ssh_hours = IntegerField("Lifetime in hours", validators=[
        Optional(), NumberRange(1, 24 * 366, message="A lifetime is 1 hour or more.")])


class RevokeForm(FlaskForm):  # type: ignore[misc]
    serial = HiddenField(validators=[DataRequired(), Length(max=40)])
    kind = HiddenField(validators=[DataRequired(), AnyOf(tuple(KINDS))])
    reason = SelectField("Reason", choices=REASONS)


@dataclass(frozen=True, slots=True)
class Listed:
    """One certificate as the page shows it."""

    kind: str
    serial: str
    kind_label: str
    carries: list[str]
    issued_at: dt.datetime
    not_after: dt.datetime
    state: str  # valid, expired or revoked
    reason: str | None


@dataclass(frozen=True, slots=True)
class Issued:
    """A certificate just issued, shown once, with a download for each file."""

    kind_label: str
    serial: str
    not_after: dt.datetime
    certificate: str
    filename: str
    chain: str | None = None

    def download(self, text: str) -> str:
        return "data:application/octet-stream;base64," + base64.b64encode(
            text.encode()).decode()


def _service(ctx: ServiceContext) -> CertificateService:
    """Built as the API builds it (``vo_service.api.certificates._service``)."""
    return CertificateService(ctx, authority(), current_app.config)


def _listed(row: IssuedCertificate, now: dt.datetime) -> Listed:
    state = "revoked" if row.revoked_at is not None else \
        "expired" if aware(row.not_after) <= now else "valid"
    carries = [line for line in (*row.vos.split("\n"), *row.fqans.split("\n")) if line]
    if row.kind == "ssh-user":
        carries = [f"principal {row.subject}"]
    return Listed(row.kind, row.serial, KINDS.get(row.kind, row.kind), carries,
                  aware(row.issued_at), aware(row.not_after), state, row.revocation_reason)


def _page(ctx: ServiceContext, xos: XOSRequestForm | None = None,
          ssh: SSHRequestForm | None = None, issued: Issued | None = None,
          status: int = 200) -> tuple[str, int]:
    holdings = MembershipService(ctx).holdings(current_user.user)
    xos = xos or XOSRequestForm(formdata=None)
    xos.vos.choices = list(holdings.vos)
    rows: list[Listed] = []
    try:
        now = utcnow()
        rows = [_listed(r, now) for r in _service(ctx).of_owner(
            current_user.actor, user=current_user.user, limit=LISTED)]
    except XosError as error:
        flash(error.detail, "error")
    return render_template(
        "portal/certificates.html", rows=rows, capped=len(rows) >= LISTED, xos=xos,
        ssh=ssh or SSHRequestForm(formdata=None), revoke=RevokeForm(formdata=None), reasons=REASONS,
        issued=issued, holdings=holdings,
        roles=[r for vo in holdings.vos for r in holdings.roles[vo]],
        max_kib=MAX_UPLOAD // 1024), status


def _refuse(form: FlaskForm, fallback: str) -> None:
    """Flash the form's first error, or ``fallback`` (a missing or stale CSRF token)."""
    messages = [m for name, errors in form.errors.items() if name != "csrf_token"
                for m in errors]
    flash(messages[0] if messages else fallback, "error")


def _text(upload: FileStorage | None, pasted: str | None, what: str) -> str:
    """The one CSR or key sent, as text; MalformedInput-like refusals as ValueError."""
    if upload is not None and (pasted or "").strip():
        raise ValueError(f"Upload the {what} file or paste it, not both.")
    if upload is None:
        if not (pasted or "").strip():
            raise ValueError(f"Choose a {what} file or paste it.")
        return str(pasted).strip()
    data = upload.read(MAX_UPLOAD + 1)
    if len(data) > MAX_UPLOAD:  # FileSize checked already; a stream may still surprise
        raise ValueError(f"The {what} file {TOO_BIG}.")
    if not data.strip():
        raise ValueError(f"The {what} file is empty.")
    try:
        return data.decode("ascii").strip()
    except UnicodeDecodeError:
        raise ValueError(f"The {what} file is not PEM or OpenSSH text (a binary file?)."
                         ) from None


@blueprint.get("/certificates")
@login_required
def certificates() -> Any:
    return _page(service_context())


@blueprint.post("/certificates/xos")
@login_required
def request_xos() -> Any:
    ctx = service_context()
    form = XOSRequestForm()
    holdings = MembershipService(ctx).holdings(current_user.user)
    form.vos.choices = list(holdings.vos)
    if not form.validate_on_submit():
        _refuse(form, "That request was not valid; reload the page and try again.")
        return _page(ctx, xos=form, status=400)
    try:
        csr = _text(form.csr_file.data, form.csr_text.data, "CSR")
    except ValueError as problem:
        flash(str(problem), "error")
        return _page(ctx, xos=form, status=400)
    vos = list(form.vos.data) or None
    roles = _roles(holdings, vos or list(holdings.vos)) if form.roles.data else None
    try:
        service = _service(ctx)
        row, cert = service.issue_user(current_user.actor, current_user.user, csr, vos=vos,
                                       roles=roles, hours=form.xos_hours.data)
        db.session.commit()
    except XosError as error:
        db.session.rollback()
        flash(f"No certificate issued: {error.detail}", "error")
        return _page(ctx, xos=form, status=error.status)
    flash(f"XOS certificate {row.serial} issued.", "info")
    issued = Issued("XOS", row.serial, aware(row.not_after), _pem(cert), "xos-cert.pem",
                    "".join(_pem(c) for c in service.loaded.issuing.chain))
    return _page(ctx, issued=issued)


def _roles(holdings: Holdings, vos: list[str]) -> list[str]:
    return [r for vo in vos for r in holdings.roles.get(vo, [])]


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(Encoding.PEM).decode()


@blueprint.post("/certificates/ssh")
@login_required
def request_ssh() -> Any:
    ctx = service_context()
    form = SSHRequestForm()
    if not form.validate_on_submit():
        _refuse(form, "That request was not valid; reload the page and try again.")
        return _page(ctx, ssh=form, status=400)
    try:
        key = _text(form.key_file.data, form.key_text.data, "public key")
    except ValueError as problem:
        flash(str(problem), "error")
        return _page(ctx, ssh=form, status=400)
    try:
        row, line = _service(ctx).issue_ssh_user(current_user.actor, current_user.user, key,
                                                 form.ssh_hours.data)
        db.session.commit()
    except XosError as error:
        db.session.rollback()
        flash(f"No certificate issued: {error.detail}", "error")
        return _page(ctx, ssh=form, status=error.status)
    flash(f"SSH certificate {row.serial} issued.", "info")
    name = SSH_FILES.get(key.split()[0], "id_ecdsa")
    return _page(ctx, issued=Issued("SSH", row.serial, aware(row.not_after), line.strip(),
                                    f"{name}-cert.pub"))


@blueprint.post("/certificates/revoke")
@login_required
def revoke_certificate() -> Response:
    form = RevokeForm()
    if not form.validate_on_submit():
        flash("That request was not valid; reload the page and try again.", "error")
        return redirect(url_for("portal.certificates"))
    ctx = service_context()
    try:
        service = _service(ctx)
        cert = service.read(current_user.actor, service.get(form.serial.data, form.kind.data))
        if cert.user_id != current_user.user.id:  # a service admin's, seen here: not theirs
            raise NotFound(f"no certificate of yours with serial {cert.serial}")
        service.revoke(current_user.actor, cert, form.reason.data)
        db.session.commit()
    except (NotFound, PermissionDenied):
        db.session.rollback()
        return error_page(404, "No such certificate",
                          "You have no certificate with that serial number.")
    except XosError as error:
        db.session.rollback()
        flash(error.detail, "error")
        return redirect(url_for("portal.certificates"))
    flash(f"Certificate {cert.serial} is revoked.", "info")
    return redirect(url_for("portal.certificates"))
