"""Prefect smoke test: the publish flows run under the test harness, stage by stage."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from prefect.states import State

PROJECT = Path(__file__).resolve().parents[1]


@pytest.fixture
def flow_env(prefect_harness, datasette_server, tmp_path, monkeypatch) -> Path:
    """Flows under the harness, publishing to the real portal, state in a tmp var dir."""
    for key, value in datasette_server.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("CIVICFLOW_PROJECT_DIR", str(PROJECT))
    monkeypatch.setenv("CIVICFLOW_VAR_DIR", str(tmp_path / "var"))
    return tmp_path


def test_publish_dataset_flow_runs_its_stages_as_tasks(flow_env: Path) -> None:
    from prefect.client.orchestration import get_client

    from flows.publish import publish_dataset

    state: State = publish_dataset("la311_service_requests", return_state=True)
    assert state.is_completed(), state.message
    summary = state.result()
    assert summary["outcome"] in ("published", "unchanged")
    assert summary["rows_in"] == 9999

    async def task_names() -> set[str]:
        async with get_client() as client:
            runs = await client.read_task_runs()
            return {
                r.name.split("-")[0]
                for r in runs
                if r.flow_run_id == state.state_details.flow_run_id
            }

    names = anyio.run(task_names)
    assert {"extract", "validate", "protect", "publish"} <= names


def test_rejected_run_ends_failed_with_the_reason(flow_env: Path) -> None:
    from flows.publish import publish_dataset

    empty = flow_env / "empty.csv"
    empty.write_bytes(b"")
    state = publish_dataset("la311_service_requests", str(empty), return_state=True)
    assert state.is_failed()
    assert "empty" in state.message
    assert state.result(raise_on_failure=False)["outcome"] == "rejected"
