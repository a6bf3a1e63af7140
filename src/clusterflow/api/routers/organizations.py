"""Organizations, their members, and the roles that govern every route.

A key belongs to exactly one organization, so "the organizations I can see" is the key's own;
any other organization ID answers 404, like every other resource of another organization.
Creating an organization returns an owner key for it (shown once).
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from clusterflow.api.deps import Owner, Pool, Viewer
from clusterflow.api.errors import ApiError, not_found, request_id_of
from clusterflow.api.schemas.common import ERRORS, Envelope, Strict
from clusterflow.api.views import timestamp
from clusterflow.records import organizations as orgs
from clusterflow.records.organizations import MemberRow, OrganizationRow

router = APIRouter(prefix="/v1", tags=["organizations"])

ROLE_DESCRIPTIONS = {
    "viewer": "read clusters, operations, events and the catalog",
    "editor": "viewer, plus deploy, update, delete, register and cancel",
    "admin": "editor, plus API keys, approval policy, notifications, audit log and force cancel",
    "owner": "admin, plus approvals and membership",
}


class OrganizationView(BaseModel):
    id: str
    name: str
    createdAt: str


class OrganizationCreate(Strict):
    name: str = Field(min_length=1, max_length=100)
    ownerEmail: str = Field(min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+$")


class CreatedOrganization(OrganizationView):
    ownerKey: str = Field(description="An owner API key of the new organization. Shown once")


class MemberView(BaseModel):
    id: str
    email: str
    name: str | None
    role: str
    createdAt: str


class MemberCreate(Strict):
    email: str = Field(min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+$")
    name: str | None = Field(default=None, max_length=100)
    role: Literal["viewer", "editor", "admin", "owner"]


class MemberRemoved(BaseModel):
    memberId: str


class WhoAmI(BaseModel):
    keyId: str
    organizationId: str
    role: str = Field(description="viewer, editor, admin or owner")
    name: str = Field(description="The key's name")


class RoleView(BaseModel):
    name: str
    rank: int
    description: str


def _org(row: OrganizationRow) -> OrganizationView:
    return OrganizationView(id=row.id, name=row.name, createdAt=timestamp(row.created_at) or "")


def _member(row: MemberRow) -> MemberView:
    return MemberView(
        id=row.id, email=row.email, name=row.name, role=row.role, createdAt=timestamp(row.created_at) or ""
    )


async def _own_org(pool: Pool, orgId: str, organization_id: str) -> OrganizationView:
    if orgId != organization_id:
        raise not_found("organization", orgId)
    row = await orgs.get_organization(pool, orgId)
    if row is None:
        raise not_found("organization", orgId)
    return _org(row)


@router.get(
    "/organizations",
    response_model=Envelope[list[OrganizationView]],
    responses=ERRORS,
    summary="The caller's organization",
)
async def list_organizations(request: Request, principal: Viewer, pool: Pool) -> Envelope[list[OrganizationView]]:
    org = await _own_org(pool, principal.organization_id, principal.organization_id)
    return Envelope(id=request_id_of(request), message="1 organization", data=[org])


@router.post(
    "/organizations",
    status_code=201,
    response_model=Envelope[CreatedOrganization],
    responses=ERRORS,
    summary="Create an organization (owner role); returns an owner key for it, once",
)
async def create_organization(
    request: Request, body: OrganizationCreate, principal: Owner, pool: Pool
) -> Envelope[CreatedOrganization]:
    async with pool.acquire() as conn, conn.transaction():
        org_id = await orgs.create_organization(conn, body.name)
        await orgs.add_member(conn, org_id, body.ownerEmail, None, "owner")
        _, key = await orgs.create_api_key(conn, org_id, "initial owner", "owner", created_by=principal.key_id)
        row = await orgs.get_organization(conn, org_id)
    assert row is not None
    view = _org(row)
    return Envelope(
        id=request_id_of(request),
        message="organization created",
        data=CreatedOrganization(**view.model_dump(), ownerKey=key),
    )


@router.get("/organizations/{orgId}", response_model=Envelope[OrganizationView], responses=ERRORS)
async def get_organization(request: Request, orgId: str, principal: Viewer, pool: Pool) -> Envelope[OrganizationView]:
    return Envelope(
        id=request_id_of(request), message="organization", data=await _own_org(pool, orgId, principal.organization_id)
    )


@router.get("/organizations/{orgId}/members", response_model=Envelope[list[MemberView]], responses=ERRORS)
async def list_members(request: Request, orgId: str, principal: Viewer, pool: Pool) -> Envelope[list[MemberView]]:
    await _own_org(pool, orgId, principal.organization_id)
    rows = await orgs.list_members(pool, orgId)
    members = [_member(r) for r in rows]
    return Envelope(id=request_id_of(request), message=f"{len(members)} members", data=members)


@router.post(
    "/organizations/{orgId}/members",
    status_code=201,
    response_model=Envelope[MemberView],
    responses=ERRORS,
    summary="Add a member with a role (owner role)",
)
async def add_member(
    request: Request, orgId: str, body: MemberCreate, principal: Owner, pool: Pool
) -> Envelope[MemberView]:
    await _own_org(pool, orgId, principal.organization_id)
    member_id = await orgs.add_member(pool, orgId, body.email, body.name, body.role)
    if member_id is None:
        raise ApiError(409, "ALREADY_A_MEMBER", f"{body.email} is already a member", {"field": "email"})
    row = next(r for r in await orgs.list_members(pool, orgId) if r.id == member_id)
    return Envelope(
        id=request_id_of(request),
        message="member added",
        data=_member(row),
    )


@router.delete(
    "/organizations/{orgId}/members/{memberId}",
    response_model=Envelope[MemberRemoved],
    responses=ERRORS,
    summary="Remove a member (owner role); the last owner cannot be removed",
)
async def remove_member(
    request: Request, orgId: str, memberId: str, principal: Owner, pool: Pool
) -> Envelope[MemberRemoved]:
    await _own_org(pool, orgId, principal.organization_id)
    async with pool.acquire() as conn:
        outcome = await orgs.remove_member(conn, orgId, memberId)
    if outcome == "not_found":
        raise not_found("member", memberId)
    if outcome == "last_owner":
        raise ApiError(
            409,
            "LAST_OWNER",
            "the last owner of an organization cannot be removed; add another first",
            {"memberId": memberId},
        )
    return Envelope(id=request_id_of(request), message="member removed", data=MemberRemoved(memberId=memberId))


@router.get(
    "/whoami",
    response_model=Envelope[WhoAmI],
    responses=ERRORS,
    summary="The calling key: its organization and role (what a client may offer its user)",
)
async def whoami(request: Request, principal: Viewer) -> Envelope[WhoAmI]:
    me = WhoAmI(
        keyId=principal.key_id, organizationId=principal.organization_id, role=principal.role, name=principal.name
    )
    return Envelope(id=request_id_of(request), message=f"{principal.role} key", data=me)


@router.get("/roles", response_model=Envelope[list[RoleView]], responses=ERRORS, summary="Roles, weakest first")
async def list_roles(request: Request, principal: Viewer) -> Envelope[list[RoleView]]:
    roles = [RoleView(name=n, rank=i, description=d) for i, (n, d) in enumerate(ROLE_DESCRIPTIONS.items())]
    return Envelope(id=request_id_of(request), message="roles", data=roles)
