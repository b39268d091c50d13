"""The CA's public face, for tools that have never heard of XOS: certificates, CRLs
(DER and PEM), the SSH CA keys and KRL, and an OCSP responder (RFC 6960, POST and GET).
No authentication: everything here is public by nature."""

from __future__ import annotations

import base64
import binascii
import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from flask import Blueprint, Flask, Response, current_app, request

import ca

from ..context import ServiceContext
from ..db import db
from ..errors import NotFound
from ..pki.authority import authority
from ..pki.revocation import CRLPublisher, Revoker, ssh_krl

blueprint = Blueprint("ca_public", __name__)
OCSP_REQUEST = "application/ocsp-request"


def _pem(*certs: x509.Certificate) -> Response:
    body = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)
    return Response(body, mimetype="application/x-pem-file")


@blueprint.get("/ca/root.pem")
def root() -> Response:
    return _pem(authority().root)


@blueprint.get("/ca/chain.pem")
def chain() -> Response:
    return _pem(*authority().issuing.chain)


@blueprint.get("/ca/issuers/<int:generation>.pem")
def issuer(generation: int) -> Response:
    loaded = authority()
    if generation not in loaded.issuers:
        raise NotFound(f"no issuing CA generation {generation}")
    return _pem(loaded.issuers[generation].certificate)


def _crl(generation: int | None, form: str) -> Response:
    loaded = authority()
    ctx = ServiceContext.build(db.session, current_app.config)
    der = CRLPublisher(ctx, loaded, dt.timedelta(
        hours=current_app.config["CRL_VALIDITY_HOURS"])).der(
        loaded.current if generation is None else generation)
    db.session.commit()
    if form == "pem":
        pem = x509.load_der_x509_crl(der).public_bytes(serialization.Encoding.PEM)
        return Response(pem, mimetype="application/x-pem-file")
    return Response(der, mimetype="application/pkix-crl")


@blueprint.get("/ca/crl.<any(der, pem):form>")
def current_crl(form: str) -> Response:
    return _crl(None, form)


@blueprint.get("/ca/crl/<int:generation>.<any(der, pem):form>")
def crl(generation: int, form: str) -> Response:
    return _crl(generation, form)


@blueprint.get("/ca/ssh-ca.pub")
def ssh_ca() -> Response:
    """Every SSH CA key nodes should trust (sshd's TrustedUserCAKeys), newest first."""
    return Response("".join(line + "\n" for line in authority().ssh_public_lines()),
                    mimetype="text/plain")


@blueprint.get("/ca/ssh-krl")
def krl() -> Response:
    """Revoked SSH certificates as an OpenSSH KRL (sshd's RevokedKeys)."""
    ctx = ServiceContext.build(db.session, current_app.config)
    return Response(ssh_krl(ctx, authority()), mimetype="application/octet-stream")


def _ocsp(request_der: bytes) -> Response:
    loaded = authority()
    generations = {id(issuing): g for g, issuing in loaded.issuers.items()}
    revoker = Revoker(ServiceContext.build(db.session, current_app.config))
    answer = ca.answer_ocsp(request_der, list(loaded.issuers.values()),
                            lambda issuing, serial: revoker.status(generations[id(issuing)],
                                                                   serial))
    return Response(answer, mimetype="application/ocsp-response")


@blueprint.post("/ocsp")
def ocsp_post() -> Response:
    # The CA library answers MALFORMED_REQUEST for anything unreadable or too large.
    return _ocsp(request.get_data(cache=False)[:ca.MAX_INPUT_BYTES + 1])


@blueprint.get("/ocsp/<path:encoded>")
def ocsp_get(encoded: str) -> Response:
    try:
        der = base64.b64decode(encoded[:2 * ca.MAX_INPUT_BYTES], validate=True)
    except (binascii.Error, ValueError):
        der = b""
    return _ocsp(der)


def init_app(app: Flask) -> None:
    app.register_blueprint(blueprint)
