"""What a customer's security review reads: the AWS connect templates (both levels) pass checkov's
CloudFormation checks, and the only findings left are skipped in the template with a reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clusterflow.activities.providers.aws.connect import connect_template
from clusterflow.contracts.cloud_permissions import LEVELS
from tests.deploy.checkov import checkov_binary, run_checkov


@pytest.mark.skipif(checkov_binary() is None, reason="checkov not installed: run `make deploy-check`")
def test_checkov_passes_the_aws_connect_templates(tmp_path: Path) -> None:
    for level in LEVELS:
        template = connect_template("123456789012", "cf-external", "210987654321", "clusterflow-org-1", level, 3600)
        (tmp_path / f"connect-{level}.json").write_text(json.dumps(template, indent=2))
    [report] = run_checkov(tmp_path, "cloudformation")
    failed = [(c["check_id"], c["resource"], c["file_path"]) for c in report["results"]["failed_checks"]]
    assert failed == [], failed
    assert report["summary"]["parsing_errors"] == 0
    assert report["summary"]["resource_count"] == 3  # read: the role; manage: the role and its boundary
    passed = {(c["check_id"], c["file_path"]) for c in report["results"]["passed_checks"]}
    for level in LEVELS:  # the privilege checks ran on each role and passed there, unskipped
        for check in ("CKV_AWS_107", "CKV_AWS_109", "CKV_AWS_110", "CKV_AWS_111"):
            assert (check, f"/connect-{level}.json") in passed, (check, level)
    for skipped in report["results"]["skipped_checks"]:
        assert skipped["resource"] == "AWS::IAM::ManagedPolicy.ClusterflowBoundary", skipped
        assert len(skipped["check_result"].get("suppress_comment", "")) > 40, skipped
