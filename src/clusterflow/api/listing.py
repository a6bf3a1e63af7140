"""Paged listings shared by routers (organization-wide and per-cluster operation history).

Totals are exact up to `exact_total_limit` and estimated beyond (`records/totals.py`); the page
says which (`totalCountExact`), and so does its message.
"""

from __future__ import annotations

from clusterflow.api.errors import ApiError
from clusterflow.api.schemas.operations import OperationPage
from clusterflow.api.views import operation_view
from clusterflow.records import operations
from clusterflow.records.db import DbPool


async def operation_page(
    pool: DbPool,
    organization_id: str,
    *,
    limit: int,
    page_token: str | None,
    cluster_id: str | None = None,
    operation_type: str | None = None,
    status: str | None = None,
    exact_total_limit: int,
) -> OperationPage:
    after_id = None
    if page_token:
        try:
            after_id = operations.decode_page_token(page_token)
        except ValueError as err:
            raise ApiError(
                400, "INVALID_PAGE_TOKEN", "pageToken was not issued by this API", {"field": "pageToken"}
            ) from err
    found = await operations.list_page(
        pool,
        organization_id,
        cluster_id=cluster_id,
        operation_type=operation_type,
        status=status,
        limit=limit,
        after_id=after_id,
        exact_total_limit=exact_total_limit,
    )
    return OperationPage(
        operations=[operation_view(r) for r in found.rows],
        totalCount=found.total.value,
        totalCountExact=found.total.exact,
        nextPageToken=found.next_page_token,
    )


def operations_message(page: OperationPage) -> str:
    """The envelope's message: the number, said as an estimate when it is one."""
    if page.totalCountExact:
        return f"{page.totalCount} operations"
    return f"about {page.totalCount:,} operations"
