"""Every table, imported in one place so that Alembic sees the whole metadata."""

from .apikeys.models import ApiKey
from .audit.models import AuditEvent, AuditHead
from .auth.models import LdapLink, LoginThrottle, PasswordCredential
from .ldapimport.models import LdapManaged
from .memberships.models import GroupMembership, Membership, RoleAssignment
from .nodes.models import EnrolmentToken, Node, NodeVO
from .oauth.models import (
    DeviceAuthorization,
    OAuthClient,
    RefreshToken,
    RevokedAccessToken,
    TokenSigningKey,
)
from .pki.models import CertificateVO, IssuedCertificate, PublishedCRL
from .sync.models import AccountChange, Counter
from .users.models import UnixName, User
from .vos.models import VO, Group, GroupManager, Role, VOAdmin

__all__ = [
    "VO", "AccountChange", "ApiKey", "AuditEvent", "AuditHead", "CertificateVO", "Counter",
    "Group",
    "GroupManager", "GroupMembership", "IssuedCertificate", "Membership", "Node", "NodeVO",
    "PublishedCRL", "Role",
    "RoleAssignment", "UnixName", "User", "VOAdmin", "PasswordCredential", "LdapLink",
    "LoginThrottle", "DeviceAuthorization", "OAuthClient", "RefreshToken",
    "RevokedAccessToken", "TokenSigningKey", "EnrolmentToken", "LdapManaged",
]
