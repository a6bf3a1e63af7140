"""An update's GKE settings (`GkeChange`) as GKE's own objects: release channel, maintenance
window, master authorized networks. Pure functions, shared by update VALIDATE (which refuses
what GKE would) and CONTROL_PLANE (which applies each only when the live cluster differs).

The maintenance window (`start_time` "HH:MM" UTC, `duration` such as "4h" or "4h30m") becomes a
daily recurring window (`recurringWindow` with `FREQ=DAILY`, a window from that time of day
lasting the duration), GKE's own shape for a window of a chosen length: GKE's
`dailyMaintenanceWindow` has a fixed, GKE-chosen duration and could not honour the one asked
for. GKE wants at least 48 hours of maintenance availability in any 32 days with windows of at
least 4 contiguous hours, so a daily window runs from 4 to 24 hours. Maintenance exclusions
already set on the cluster are kept.

Authorized networks replace the cluster's master authorized networks; an empty list turns the
restriction off (any address may reach the public endpoint, as GKE's default).
"""

from __future__ import annotations

import ipaddress
import re
from datetime import UTC, datetime, timedelta

from google.cloud import container_v1

from clusterflow.contracts.changes import MaintenanceWindow

CHANNELS = {
    "RAPID": container_v1.ReleaseChannel.Channel.RAPID,
    "REGULAR": container_v1.ReleaseChannel.Channel.REGULAR,
    "STABLE": container_v1.ReleaseChannel.Channel.STABLE,
    "EXTENDED": container_v1.ReleaseChannel.Channel.EXTENDED,
}

DAILY = "FREQ=DAILY"
MIN_WINDOW = timedelta(hours=4)
MAX_WINDOW = timedelta(hours=24)
MAX_AUTHORIZED_NETWORKS = 50  # GKE's limit for clusters with a public endpoint
# The date a daily window's times are anchored on (GKE reads the time of day and the length).
_ANCHOR = datetime(2000, 1, 1, tzinfo=UTC)
_START = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")
_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?$")


def parse_start(text: str) -> timedelta | None:
    """The window's start as an offset into the day, or None if it is not HH:MM."""
    match = _START.match(text)
    return timedelta(hours=int(match.group(1)), minutes=int(match.group(2))) if match else None


def parse_duration(text: str) -> timedelta | None:
    """`4h`, `90m`, `4h30m` as a timedelta, or None if it is neither."""
    match = _DURATION.match(text)
    if not match or not (match.group(1) or match.group(2)):
        return None
    return timedelta(hours=int(match.group(1) or 0), minutes=int(match.group(2) or 0))


def window_problem(window: MaintenanceWindow) -> str | None:
    """Why GKE would refuse this daily window, or None."""
    if parse_start(window.start_time) is None:
        return f"maintenanceWindow.startTime {window.start_time!r} is not a time of day as HH:MM (UTC)"
    duration = parse_duration(window.duration)
    if duration is None:
        return f"maintenanceWindow.duration {window.duration!r} is not a duration such as 4h, 90m or 4h30m"
    if not MIN_WINDOW <= duration <= MAX_WINDOW:
        return (
            f"maintenanceWindow.duration {window.duration} is not between 4h and 24h: GKE needs windows of at least "
            "4 contiguous hours, and a daily window lasts at most a day"
        )
    return None


def networks_problem(cidrs: tuple[str, ...]) -> str | None:
    """Why GKE would refuse these master authorized networks, or None."""
    if len(cidrs) > MAX_AUTHORIZED_NETWORKS:
        return f"authorizedNetworks lists {len(cidrs)} networks; GKE allows at most {MAX_AUTHORIZED_NETWORKS}"
    for cidr in cidrs:
        try:
            ipaddress.ip_network(cidr, strict=True)
        except ValueError:
            return f"authorizedNetworks: {cidr!r} is not a CIDR block (such as 203.0.113.0/24)"
    return None


def maintenance_policy(
    window: MaintenanceWindow, live: container_v1.MaintenancePolicy
) -> container_v1.MaintenancePolicy:
    """The daily window as GKE's maintenance policy, keeping the live policy's exclusions."""
    start = parse_start(window.start_time)
    duration = parse_duration(window.duration)
    if start is None or duration is None:  # refused by update VALIDATE
        raise ValueError(window_problem(window))
    begins = _ANCHOR + start
    return container_v1.MaintenancePolicy(
        window=container_v1.MaintenanceWindow(
            recurring_window=container_v1.RecurringTimeWindow(
                window=container_v1.TimeWindow(start_time=begins, end_time=begins + duration),
                recurrence=DAILY,
            ),
            maintenance_exclusions=dict(live.window.maintenance_exclusions),
        ),
        resource_version=live.resource_version,
    )


def same_window(live: container_v1.MaintenancePolicy, wanted: container_v1.MaintenancePolicy) -> bool:
    have, want = live.window.recurring_window, wanted.window.recurring_window
    return bool(
        have.recurrence == want.recurrence
        and have.window.start_time == want.window.start_time
        and have.window.end_time == want.window.end_time
    )


def authorized_networks(cidrs: tuple[str, ...]) -> container_v1.MasterAuthorizedNetworksConfig:
    return container_v1.MasterAuthorizedNetworksConfig(
        enabled=bool(cidrs),
        cidr_blocks=[container_v1.MasterAuthorizedNetworksConfig.CidrBlock(cidr_block=c) for c in cidrs],
    )


def live_networks(cluster: container_v1.Cluster) -> tuple[str, ...]:
    """The cluster's authorized networks; () when the restriction is off."""
    config = cluster.master_authorized_networks_config
    return tuple(b.cidr_block for b in config.cidr_blocks) if config.enabled else ()
