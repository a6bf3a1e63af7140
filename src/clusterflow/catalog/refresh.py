"""The inputs and results of the catalog refresh, shared by the schedule, workflow and activity.

They live beside the catalog (standard library only) rather than in `contracts/` because only
the refresh uses them; fields are only ever added with defaults, so a workflow started by an
older worker still decodes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Providers whose catalog a cloud publishes; `local` is a simulator whose snapshot is the truth.
REFRESHABLE = ("aws", "gcp", "azure")
REFRESH_WORKFLOW = "CatalogRefresh"
REFRESH_ACTIVITY = "catalog.refresh_provider"


@dataclass(frozen=True)
class CatalogRefreshInput:
    # The enabled providers to refresh; the schedule fills them from the worker's settings.
    providers: tuple[str, ...] = ()


@dataclass(frozen=True)
class ProviderRefreshInput:
    provider: str


@dataclass(frozen=True)
class ProviderRefreshResult:
    provider: str
    regions: int = 0
    # Empty when the refresh succeeded; else why it failed (the last good catalog stays in place).
    error: str = ""


@dataclass(frozen=True)
class CatalogRefreshResult:
    results: tuple[ProviderRefreshResult, ...] = field(default_factory=tuple)
