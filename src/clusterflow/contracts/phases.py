"""The phases every provider implements, in the order each operation runs them."""

from __future__ import annotations

from enum import StrEnum


class Phase(StrEnum):
    VALIDATE = "VALIDATE"
    NETWORK = "NETWORK"
    CONTROL_PLANE = "CONTROL_PLANE"
    NODE_GROUPS = "NODE_GROUPS"
    ADDONS = "ADDONS"
    VERIFY = "VERIFY"


DEPLOY_PHASES: tuple[Phase, ...] = (
    Phase.VALIDATE,
    Phase.NETWORK,
    Phase.CONTROL_PLANE,
    Phase.NODE_GROUPS,
    Phase.ADDONS,
    Phase.VERIFY,
)

# Teardown runs in reverse order of creation; deleting what does not exist is success, so
# teardown is idempotent and is also the compensation of a cancelled or failed deploy.
DELETE_PHASES: tuple[Phase, ...] = (
    Phase.ADDONS,
    Phase.NODE_GROUPS,
    Phase.CONTROL_PLANE,
    Phase.NETWORK,
)

# An update's phases, in order; the planner drops those with nothing to do.
UPDATE_PHASES: tuple[Phase, ...] = (
    Phase.VALIDATE,
    Phase.CONTROL_PLANE,
    Phase.NODE_GROUPS,
    Phase.ADDONS,
    Phase.VERIFY,
)
