"""Liveness (the process answers) and readiness (PostgreSQL and Temporal reachable)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from clusterflow.api.deps import Pool, Temporal
from clusterflow.api.schemas.health import Liveness, Readiness
from clusterflow.records.db import ping

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness", response_model=Liveness)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness: database and Temporal reachable",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "A dependency is unreachable"}},
)
async def readyz(pool: Pool, temporal: Temporal) -> JSONResponse:
    checks: dict[str, str] = {}
    try:
        await asyncio.wait_for(ping(pool), 2)
        checks["database"] = "ok"
    except Exception as err:  # any failure means not ready; the reason is reported
        checks["database"] = f"unavailable: {type(err).__name__}"
    try:
        await asyncio.wait_for(temporal.service_client.check_health(), 2)
        checks["temporal"] = "ok"
    except Exception as err:
        checks["temporal"] = f"unavailable: {type(err).__name__}"
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not ready", "checks": checks}, status_code=200 if ready else 503
    )
