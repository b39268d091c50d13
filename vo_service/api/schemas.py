"""Request bodies and query strings. Unknown fields are refused; every string has a
maximum length, so oversized values never reach the services."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
)
from pydantic_core import PydanticCustomError

Name = Annotated[StrictStr, Field(min_length=1, max_length=32)]
Text = Annotated[StrictStr, Field(max_length=1000)]
Reason = Annotated[StrictStr, Field(max_length=512)]
Cursor = Annotated[str, Field(max_length=253)]
Limit = Annotated[int, Field(ge=1, le=500)]


ISO_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _iso_date_text(value: object) -> object:
    """Dates travel as 'YYYY-MM-DD' only (no timestamps, no other spellings)."""
    if not isinstance(value, str) or not ISO_DATE_RE.fullmatch(value):
        raise PydanticCustomError("date_type", "Input should be a valid date (YYYY-MM-DD)")
    return value


IsoDate = Annotated[dt.date, BeforeValidator(_iso_date_text)]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Query(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PageQuery(Query):
    after: Cursor | None = None
    limit: Limit | None = None


class UserCreate(Body):
    username: Name
    display_name: Annotated[StrictStr, Field(min_length=1, max_length=128)]
    email: Annotated[StrictStr, Field(max_length=254)] | None = None
    uid: StrictInt | None = Field(default=None, description="an explicit uid inside the range")
    is_service_admin: StrictBool = False


class UserUpdate(Body):
    display_name: Annotated[StrictStr, Field(min_length=1, max_length=128)] | None = None
    email: Annotated[StrictStr, Field(max_length=254)] | None = None


class UserQuery(PageQuery):
    q: Annotated[str, Field(max_length=254)] | None = None
    status: Literal["active", "suspended", "deleted"] | None = None


class ServiceAdminFlag(Body):
    is_service_admin: StrictBool


class ApiKeyCreate(Body):
    description: Annotated[StrictStr, Field(max_length=256)] = ""


class VOCreate(Body):
    name: Name
    description: Text = ""


class GroupCreate(Body):
    path: Annotated[StrictStr, Field(min_length=2, max_length=512)]
    description: Text = ""


class RoleCreate(Body):
    name: Annotated[StrictStr, Field(min_length=1, max_length=64)]
    description: Text = ""


class MembershipRequest(Body):
    reason: Reason = ""


class MemberAdd(Body):
    user: Annotated[StrictStr, Field(min_length=1, max_length=64)]
    expires_on: IsoDate | None = None


class MemberTransition(Body):
    reason: Reason = ""
    expires_on: IsoDate | None = None


class Expiry(Body):
    expires_on: IsoDate | None


class MemberQuery(PageQuery):
    q: Annotated[str, Field(max_length=32)] | None = None
    status: Literal["pending", "active", "suspended", "expired", "removed"] | None = None


class NodeCreate(Body):
    name: Annotated[StrictStr, Field(min_length=1, max_length=253)]
    description: Annotated[StrictStr, Field(max_length=512)] = ""
    vos: Annotated[list[Name], Field(max_length=1000)] = []


class NodeVOs(Body):
    vos: Annotated[list[Name], Field(max_length=1000)]


class NodeQuery(PageQuery):
    vo: Name | None = None


class ChangesQuery(Query):
    since: Annotated[int, Field(ge=0, le=2**62)]
    wait: Annotated[int, Field(ge=0, le=60)] = Field(
        default=0, description="long-poll: hold the answer up to this many seconds until"
                               " something changed")


class AuditQuery(Query):
    vo: Name | None = None
    after: Annotated[int, Field(ge=0, le=2**62)] | None = None
    limit: Limit | None = None


PEMText = Annotated[StrictStr, Field(min_length=1, max_length=16 * 1024)]
SSHKeyText = Annotated[StrictStr, Field(min_length=1, max_length=16 * 1024)]
Path = Annotated[StrictStr, Field(min_length=1, max_length=512)]


class VOUpdate(Body):
    description: Text | None = None
    cert_hours: Annotated[StrictInt, Field(ge=1, le=24 * 366)] | None = None


class UserCertificateRequest(Body):
    csr: PEMText
    vos: Annotated[list[Name], Field(max_length=200)] | None = Field(
        default=None, description="VOs to carry, primary first (default: every active VO)")
    groups: Annotated[list[Path], Field(max_length=200)] | None = Field(
        default=None, description="group paths (default: every group held in those VOs)")
    roles: Annotated[list[Path], Field(max_length=200)] | None = Field(
        default=None, description="role FQANs such as /atlas/Role=production (default: none)")
    lifetime_hours: Annotated[StrictInt, Field(ge=1, le=24 * 366)] | None = None


class SSHUserCertificateRequest(Body):
    public_key: SSHKeyText
    lifetime_hours: Annotated[StrictInt, Field(ge=1, le=24 * 366)] | None = None


class NodeCertificateRequest(Body):
    csr: PEMText
    lifetime_days: Annotated[StrictInt, Field(ge=1, le=3660)] | None = None


class SSHHostCertificateRequest(Body):
    public_key: SSHKeyText
    lifetime_days: Annotated[StrictInt, Field(ge=1, le=3660)] | None = None


class Revocation(Body):
    reason: Annotated[StrictStr, Field(max_length=32)] = "unspecified"


class CertificateQuery(Query):
    user: Annotated[str, Field(max_length=64)] | None = None
    node: Annotated[str, Field(max_length=253)] | None = None
    limit: Limit | None = None


class PasswordChange(Body):
    password: Annotated[StrictStr, Field(min_length=1, max_length=256)]


class EnrolmentTokenCreate(Body):
    hours: Annotated[StrictInt, Field(ge=1, le=24 * 30)] | None = None


class Enrolment(Body):
    token: Annotated[StrictStr, Field(min_length=1, max_length=128)]
    csr: PEMText
    ssh_host_key: SSHKeyText | None = None
