"""The headers every portal page carries.

No inline script or style may run (the CSP allows this origin's files only), no page may
be framed, forms post to this origin only, and behind TLS browsers are told to stay on
it (HSTS). Pages that show personal data are not cached.
"""

from __future__ import annotations

from flask import Response, request

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
       " font-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none';"
       " base-uri 'none'")


def portal_headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers.setdefault("Cache-Control", "no-store")
    if request.is_secure:
        response.headers["Strict-Transport-Security"] = "max-age=31536000; includeSubDomains"
    return response

