"""The portal's pages, one feature per module; importing them registers their routes."""

from . import account, admin, audit, certificates, errors, groups, member, members, nodes  # noqa: F401
