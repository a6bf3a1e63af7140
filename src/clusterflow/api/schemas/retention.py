"""An organization's history retention: what it keeps and for how long (`records/retention.py`)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field

from clusterflow.api.schemas.common import Strict

Days = Annotated[int, Field(ge=1, le=36500)]


class RetentionDaysView(BaseModel):
    eventsDays: int = Field(description="Event logs of finished operations, after they finished")
    auditDays: int = Field(description="Audit events")
    deliveriesDays: int = Field(description="Dispatched notification events and their delivery attempts")
    operationsDays: int = Field(description="Finished operations no other record refers to, after they finished")


class RetentionOverridesView(BaseModel):
    eventsDays: int | None
    auditDays: int | None
    deliveriesDays: int | None
    operationsDays: int | None


class RetentionView(BaseModel):
    effective: RetentionDaysView = Field(description="What the HistoryRetention schedule applies to this organization")
    overrides: RetentionOverridesView = Field(description="The organization's own days; null follows the default")
    defaults: RetentionDaysView = Field(description="The control plane's defaults (CLUSTERFLOW_RETENTION_*)")


class RetentionChange(Strict):
    """The organization's own retention, in days (1 to 36500); an omitted or null field follows the
    control plane's default. Replaces every override at once."""

    eventsDays: Days | None = None
    auditDays: Days | None = None
    deliveriesDays: Days | None = None
    operationsDays: Days | None = None
