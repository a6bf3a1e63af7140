"""Histories recorded by earlier code replay on this code without a nondeterminism error.

A workflow in flight when the worker is upgraded replays its history through the new code.
The deploy histories in `histories/` were recorded before and after phases' runs were counted
by the workflow (`workflows/steps.py`, behind `workflow.patched`); see
`histories/record_deploy_history.py` for how. The exhausted deploy is the one that tells: the
old code ended it after Temporal's retries, where the new code would retry it again itself.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from clusterflow.workflows.deploy import ClusterDeployWorkflow

HISTORIES = Path(__file__).parent / "histories"


@pytest.mark.parametrize(
    "name",
    [
        "deploy_retried_before_phase_runs_counted",
        "deploy_exhausted_before_phase_runs_counted",
        "deploy_retried_phase_runs_counted",
        "deploy_exhausted_phase_runs_counted",
    ],
)
async def test_a_recorded_deploy_replays_on_this_code(name: str) -> None:
    text = (HISTORIES / f"{name}.json").read_text()
    workflow_id = json.loads(text)["events"][0]["workflowExecutionStartedEventAttributes"]["workflowId"]
    history = WorkflowHistory.from_json(workflow_id, text)
    result = await Replayer(workflows=[ClusterDeployWorkflow]).replay_workflow(history)
    assert result.replay_failure is None
