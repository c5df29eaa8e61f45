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
    assert Path(summary["report"]).with_suffix(".html").is_file()

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
    from flows._common import summary_of
    from flows.publish import publish_dataset

    empty = flow_env / "empty.csv"
    empty.write_bytes(b"")
    state = publish_dataset("la311_service_requests", str(empty), return_state=True)
    assert state.is_failed()
    assert "empty" in state.message
    summary = summary_of(state)
    assert summary["outcome"] == "rejected"
    # the steward's page beside the JSON report, and the verdict on the flow run in the UI
    assert Path(summary["report"]).with_suffix(".html").is_file()
    from prefect.client.orchestration import get_client

    from flows.artifacts import artifact_key

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts()
    mine = [a for a in artifacts if a.flow_run_id == state.state_details.flow_run_id]
    assert [a.key for a in mine] == [f"{artifact_key('la311_service_requests')}-summary"]
    assert "Stopped at extract" in str(mine[0].data)


def test_publish_all_runs_datasets_at_once_as_child_flow_runs(
    flow_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two datasets with a concurrency of 2 are in the pipeline at the same moment.

    Start and end times cannot show it on a busy 2-core machine (a small dataset can finish
    before the other's subflow is created), so each run waits at a two-party barrier before
    its real pipeline: only runs that are in flight together get past it.
    """
    import threading

    from prefect.client.orchestration import get_client

    from civicflow import pipeline
    from civicflow.settings import load_settings
    from civicflow.spec import load_all
    from flows.publish import publish_all

    monkeypatch.setenv("CIVICFLOW_PUBLISH_CONCURRENCY", "2")
    both_in_flight = threading.Barrier(2, timeout=180)
    real_run = pipeline.run_dataset

    def run_when_both_are_in_flight(*args: object, **kwargs: object) -> pipeline.RunOutcome:
        both_in_flight.wait()  # BrokenBarrierError (the run fails) if they run one by one
        return real_run(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(pipeline, "run_dataset", run_when_both_are_in_flight)
    wanted = {"lax_passenger_traffic", "neighborhood_councils"}
    others = [i for i in load_all(load_settings().datasets_dir) if i not in wanted]
    state: State = publish_all(skip=others, return_state=True)
    assert state.is_completed(), state.message
    assert {s["dataset_id"] for s in state.result()} == wanted
    assert not both_in_flight.broken

    async def children() -> list:
        async with get_client() as client:
            runs = await client.read_flow_runs()
            parent = state.state_details.flow_run_id
            tasks = {t.id: t for t in await client.read_task_runs()}
            return [
                r
                for r in runs
                if r.parent_task_run_id in tasks
                and tasks[r.parent_task_run_id].flow_run_id == parent
            ]

    runs = anyio.run(children)
    assert sorted(r.name for r in runs) == [f"publish-{i}" for i in sorted(wanted)]
    assert all(r.state.is_completed() for r in runs)


def test_two_runs_of_one_dataset_queue_on_its_concurrency_limit(flow_env: Path) -> None:
    """Issue 8 item 7: the hourly and nightly deployments both publish 311; they queue."""
    import threading

    from prefect.client.orchestration import get_client

    from civicflow.ledger import Ledger
    from civicflow.settings import load_settings
    from flows.publish import limit_name, publish_dataset

    states: list[State] = []

    def run() -> None:
        states.append(publish_dataset("la311_service_requests", return_state=True))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)

    assert len(states) == 2 and all(s.is_completed() for s in states), states
    first, second = sorted(
        Ledger(load_settings().ledger_path).runs("la311_service_requests"),
        key=lambda r: r.started_at,
    )
    assert second.started_at >= first.finished_at  # one waited for the other
    assert {first.outcome, second.outcome} <= {"published", "unchanged"}
    assert second.outcome == "unchanged"  # same data: nothing left to publish
    with get_client(sync_client=True) as client:
        limit = client.read_global_concurrency_limit_by_name(limit_name("la311_service_requests"))
    assert limit.limit == 1 and limit.active_slots == 0


def test_only_transient_failures_are_retried() -> None:
    """Retrying a refused swap would re-read the live version and publish over it;
    retrying a refused token or a bug only hides the cause."""
    import sqlite3

    import httpx
    from prefect.states import Failed

    from civicflow.portals import PortalConflict, PortalError
    from flows._common import _retry_if_transient

    def raised(exc: Exception, cause: Exception | None = None) -> Exception:
        try:
            raise exc from cause
        except Exception as caught:  # noqa: BLE001 - building a chained exception
            return caught

    outage = raised(PortalError("portal unreachable"), httpx.ConnectError("refused"))
    retried = [
        outage,
        PortalError("HTTP 503: busy", status=503),
        PortalError("HTTP 429: slow down", status=429),
        sqlite3.OperationalError("database is locked"),
    ]
    final = [
        PortalConflict("the live version changed", "run-other"),
        PortalError("HTTP 403: token refused", status=403),
        ValueError("a bug"),
        raised(PortalConflict("changed", "run-x"), httpx.ConnectError("refused")),
    ]
    assert [_retry_if_transient(None, None, Failed(data=e)) for e in retried] == [True] * 4
    assert [_retry_if_transient(None, None, Failed(data=e)) for e in final] == [False] * 4


def test_flows_read_missing_secrets_from_prefect_secret_blocks(
    prefect_harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.blocks.system import Secret

    from civicflow.settings import load_settings
    from flows._common import with_block_secrets

    monkeypatch.setenv("CIVICFLOW_PROJECT_DIR", str(PROJECT))
    monkeypatch.delenv("CIVICFLOW_SOCRATA_KEY_SECRET", raising=False)
    monkeypatch.setenv("CIVICFLOW_SOCRATA_KEY_ID", "from-the-environment")
    Secret(value="from-a-block").save("civicflow-socrata-key-secret", overwrite=True)
    Secret(value="ignored-block").save("civicflow-socrata-key-id", overwrite=True)
    # the domain is configuration, not a secret, but a worker reads it from a block too
    monkeypatch.delenv("CIVICFLOW_SOCRATA_DOMAIN", raising=False)
    Secret(value="https://data.city.example").save("civicflow-socrata-domain", overwrite=True)

    settings = with_block_secrets(load_settings())
    assert settings.env["CIVICFLOW_SOCRATA_DOMAIN"] == "https://data.city.example"

    assert settings.secret("CIVICFLOW_SOCRATA_KEY_SECRET") == "from-a-block"
    # the environment wins over a block; a secret with no block stays unset
    assert settings.secret("CIVICFLOW_SOCRATA_KEY_ID") == "from-the-environment"
    assert settings.secret("CIVICFLOW_SOCRATA_APP_TOKEN") is None
    assert "from-a-block" not in repr(settings)
