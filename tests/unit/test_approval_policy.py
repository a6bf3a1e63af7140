"""Approval policy evaluation and signed approval links, without services.

The integration tests (`tests/integration/test_approvals.py`, `test_notifications.py`) prove
the same through the API; these pin the rules' edges: first match wins, `clusterUpdate` covers
minor upgrades, a rule with no operations exempts, and a link is bound to its operation, action
and window.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest

from clusterflow import approval_links
from clusterflow.api.approvals import PolicyError, parse_policy
from clusterflow.settings import Settings

KEY = base64.b64encode(b"a" * 32).decode()


def test_defaults_make_deletes_and_minor_upgrades_wait_for_one_owner() -> None:
    policy = parse_policy({})
    delete = policy.evaluate("clusterDelete", {})
    assert delete is not None and delete.rule.name == "default"
    assert delete.approvals_required == 1 and delete.require_different_approver is False
    assert policy.evaluate("minorVersionUpgrade", {}) is not None
    assert policy.evaluate("clusterUpdate", {}) is None
    assert policy.evaluate("clusterDeploy", {}) is None


def test_any_update_covers_minor_upgrades() -> None:
    policy = parse_policy({"clusterUpdate": True, "minorVersionUpgrade": False})
    assert policy.evaluate("minorVersionUpgrade", {}) is not None


def test_the_first_matching_rule_decides_and_may_exempt() -> None:
    policy = parse_policy(
        {
            "approvalsRequired": 1,
            "rules": [
                {"name": "prod", "labelSelector": "env=prod", "operations": ["clusterDelete"], "approvalsRequired": 2},
                {"name": "payments", "labelSelector": "team in (payments)", "operations": ["clusterDeploy"]},
                {"name": "dev", "environment": "dev", "operations": []},
            ],
        }
    )
    prod = policy.evaluate("clusterDelete", {"env": "prod", "team": "payments"})
    assert prod is not None and prod.rule.name == "prod" and prod.rule.label_selector == "env=prod"
    assert prod.approvals_required == 2
    # The prod rule matched first: it does not list deploys, so a prod deploy does not wait.
    assert policy.evaluate("clusterDeploy", {"env": "prod", "team": "payments"}) is None
    assert policy.evaluate("clusterDeploy", {"team": "payments"}) is not None
    assert policy.evaluate("clusterDelete", {"env": "dev"}) is None
    fallback = policy.evaluate("clusterDelete", {"env": "staging"})
    assert fallback is not None and fallback.rule.name == "default" and fallback.approvals_required == 1


def test_a_rule_inherits_four_eyes_unless_it_says_otherwise() -> None:
    policy = parse_policy(
        {
            "requireDifferentApprover": True,
            "rules": [
                {
                    "name": "sandbox",
                    "labelSelector": "env=sandbox",
                    "operations": ["clusterDelete"],
                    "requireDifferentApprover": False,
                },
                {"name": "prod", "labelSelector": "env=prod", "operations": ["clusterDelete"]},
            ],
        }
    )
    sandbox, prod = (
        policy.evaluate("clusterDelete", {"env": "sandbox"}),
        policy.evaluate("clusterDelete", {"env": "prod"}),
    )
    assert sandbox is not None and sandbox.require_different_approver is False
    assert prod is not None and prod.require_different_approver is True


def test_the_stored_document_round_trips() -> None:
    document = {
        "clusterDelete": True,
        "rules": [{"name": "prod", "environment": "prod", "labelSelector": "tier=db", "operations": ["clusterDelete"]}],
    }
    policy = parse_policy(document)
    assert policy.rules[0].document()["labelSelector"] == "tier=db,env=prod"
    assert parse_policy(policy.document()) == policy


@pytest.mark.parametrize(
    ("rule", "field"),
    [
        ({"labelSelector": "env in (prod", "operations": []}, "rules[0].labelSelector"),
        ({"environment": "Prod Env", "operations": []}, "rules[0].environment"),
        ({"operations": ["clusterDelete"]}, "rules[0].labelSelector"),
    ],
)
def test_a_bad_rule_names_its_field(rule: dict[str, object], field: str) -> None:
    with pytest.raises(PolicyError) as refused:
        parse_policy({"rules": [rule]})
    assert refused.value.field == field


def test_a_link_is_bound_to_its_operation_action_and_window() -> None:
    settings = Settings(vault_keys={"k1": KEY})
    expires = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    token = approval_links.token(settings, "op_1", "APPROVE", expires)
    link = approval_links.check(settings, token, "op_1", "APPROVE")
    assert link is not None and link.expires_at == expires
    assert approval_links.check(settings, token, "op_2", "APPROVE") is None
    assert approval_links.check(settings, token, "op_1", "REJECT") is None
    later = token.replace(f".{int(expires.timestamp())}.", f".{int(expires.timestamp()) + 3600}.")
    assert approval_links.check(settings, later, "op_1", "APPROVE") is None  # the window is signed too
    assert approval_links.check(settings, "cfl_approve.notanumber.x", "op_1", "APPROVE") is None
    other_key = Settings(vault_keys={"k1": base64.b64encode(b"b" * 32).decode()})
    assert approval_links.check(other_key, token, "op_1", "APPROVE") is None
    # Approve and reject links differ, and neither is the other's.
    reject = approval_links.token(settings, "op_1", "REJECT", expires)
    assert reject != token and approval_links.check(settings, reject, "op_1", "REJECT") is not None
    assert link.sha256 != approval_links.ApprovalLink("op_1", "REJECT", expires).sha256


def test_without_a_vault_key_no_link_is_signed_or_accepted() -> None:
    settings = Settings(vault_keys={})
    with pytest.raises(Exception, match="vault"):
        approval_links.token(settings, "op_1", "APPROVE", datetime.now(UTC))
    assert approval_links.check(settings, "cfl_approve.1.x", "op_1", "APPROVE") is None
