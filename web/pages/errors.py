"""The portal's HTML error pages: a request body over ``MAX_CONTENT_LENGTH`` gets a
readable 413 page in the portal's look instead of Werkzeug's bare one.

The handler is the blueprint's own, so it answers only for portal pages: the API keeps
its JSON problem details (``vo_service.api.problems``)."""

from __future__ import annotations

from flask import current_app, render_template, request, url_for
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wrappers import Response

from ..portal import blueprint


def error_page(status: int, title: str, message: str) -> Response:
    """An error page with the portal's header, for any request."""
    html = render_template("portal/error.html", title=title, message=message,
                           status=status, home=url_for("portal.index"))
    return Response(html, status=status, mimetype="text/html")


@blueprint.errorhandler(RequestEntityTooLarge)
def too_large(error: RequestEntityTooLarge) -> Response:
    limit = current_app.config.get("MAX_CONTENT_LENGTH") or 0
    current_app.logger.info("refused a %s-byte body on %s", request.content_length,
                            request.path)
    return error_page(413, "That upload is too large",
                      f"The request was over {limit // 1024} KiB, so nothing in it was read"
                      " and nothing changed. A certificate request or an SSH public key is a"
                      " few kilobytes: upload just that file.")
