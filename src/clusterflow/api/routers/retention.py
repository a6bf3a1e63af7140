"""An organization's history retention: read it (viewer), change it (owner).

Retention deletes history for good (audit rows included), so changing it is an owner's
decision, audited like every mutation; the HistoryRetention schedule applies it on its next run.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from clusterflow.api.deps import AppSettings, Owner, Pool, Viewer
from clusterflow.api.errors import not_found, request_id_of
from clusterflow.api.schemas.common import ERRORS, Envelope
from clusterflow.api.schemas.retention import RetentionChange, RetentionDaysView, RetentionOverridesView, RetentionView
from clusterflow.contracts.retention import RetentionDays
from clusterflow.records import retention
from clusterflow.records.db import DbPool
from clusterflow.settings import Settings

router = APIRouter(prefix="/v1", tags=["organizations"])


def retention_defaults(settings: Settings) -> RetentionDays:
    """The control plane's defaults, as the retention activities read them."""
    return RetentionDays(
        events=settings.retention_events_days,
        audit=settings.retention_audit_days,
        deliveries=settings.notification_retention_days,
        operations=settings.retention_operations_days,
    )


def _days(days: RetentionDays) -> RetentionDaysView:
    return RetentionDaysView(
        eventsDays=days.events, auditDays=days.audit, deliveriesDays=days.deliveries, operationsDays=days.operations
    )


async def _view(pool: DbPool, settings: Settings, org_id: str, caller_org: str) -> RetentionView:
    found = await retention.organization_overrides(pool, org_id) if org_id == caller_org else None
    if found is None:
        raise not_found("organization", org_id)
    default = retention_defaults(settings)
    effective = RetentionDays(
        events=found.events or default.events,
        audit=found.audit or default.audit,
        deliveries=found.deliveries or default.deliveries,
        operations=found.operations or default.operations,
    )
    return RetentionView(
        effective=_days(effective),
        overrides=RetentionOverridesView(
            eventsDays=found.events,
            auditDays=found.audit,
            deliveriesDays=found.deliveries,
            operationsDays=found.operations,
        ),
        defaults=_days(default),
    )


@router.get(
    "/organizations/{orgId}/retention",
    response_model=Envelope[RetentionView],
    responses=ERRORS,
    summary="How long the organization's history is kept",
)
async def get_retention(
    request: Request, orgId: str, principal: Viewer, pool: Pool, settings: AppSettings
) -> Envelope[RetentionView]:
    view = await _view(pool, settings, orgId, principal.organization_id)
    return Envelope(id=request_id_of(request), message="retention", data=view)


@router.put(
    "/organizations/{orgId}/retention",
    response_model=Envelope[RetentionView],
    responses=ERRORS,
    summary="Set how long the organization's history is kept (owner role)",
    description="Each field is days (1 to 36500); omitted or null follows the control plane's default. The "
    "HistoryRetention schedule applies it on its next run; what it deletes is gone for good.",
)
async def put_retention(
    request: Request, orgId: str, change: RetentionChange, principal: Owner, pool: Pool, settings: AppSettings
) -> Envelope[RetentionView]:
    if orgId != principal.organization_id:
        raise not_found("organization", orgId)
    await retention.set_organization_retention(
        pool,
        orgId,
        events=change.eventsDays,
        audit=change.auditDays,
        deliveries=change.deliveriesDays,
        operations=change.operationsDays,
    )
    view = await _view(pool, settings, orgId, principal.organization_id)
    return Envelope(id=request_id_of(request), message="retention updated", data=view)
