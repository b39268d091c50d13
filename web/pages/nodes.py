"""A VO's nodes and their last contact, for the VO's admins (the service decides who may
list them)."""

from __future__ import annotations

from flask import abort, render_template, request
from flask_login import current_user, login_required

from vo_service.errors import XosError
from vo_service.nodes.services import NodeService
from vo_service.vos.services import VOService

from ..portal import blueprint, service_context, vo_tab


@blueprint.route("/vos/<vo>/nodes")
@login_required
@vo_tab("Nodes", 80)
def vo_nodes(vo: str) -> str:
    ctx = service_context()
    nodes = NodeService(ctx)
    try:
        target = VOService(ctx).get(vo)
        rows, following = nodes.page(current_user.actor, target,
                                     request.args.get("after") or None)
    except XosError as error:
        abort(error.status if error.status in (403, 404) else 404)
    return render_template("portal/nodes.html", vo=target,
                           nodes=[nodes.record(n) for n in rows], following=following)
