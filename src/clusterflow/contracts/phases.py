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


class PhaseAction(StrEnum):
    """What a phase activity does; with the provider it names the activity (`aws.update_phase`)."""

    DEPLOY = "deploy"
    UPDATE = "update"
    DELETE = "delete"


def phase_activity_name(provider: str, action: PhaseAction | str) -> str:
    """The activity that runs one provider's phases, e.g. `gcp.update_phase`.

    The one place the name is made: the worker registers each provider's activities under it
    and the workflows call them through it.
    """
    return f"{provider}.{PhaseAction(action).value}_phase"


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
