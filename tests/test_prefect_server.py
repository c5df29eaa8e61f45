"""The project on a REAL Prefect server: `prefect server start` and a process worker on
free ports, `civicflow deploy` against it, deployment runs triggered through the Prefect
client. A good source publishes to a real portal; a broken one ends Failed with the
reason in the flow run's logs. Every process is stopped (by process group) at the end.

Slow by nature (a server, a worker and two flow runs in subprocesses): one module-scoped
stack serves both tests.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from civicflow.deployments import deployment_specs
from civicflow.settings import load_settings
from flows import _server
from tests.fixtures.portal import DatasetteServer, free_port

PROJECT = Path(__file__).resolve().parents[1]
log = logging.getLogger("civicflow.tests.prefect_server")
BIN = Path(sys.executable).parent
LA311 = "la311_service_requests"
BROKEN = "la311_broken"
#: generous: on a busy 2-core machine a fresh server migrates its database for a minute
START_TIMEOUT_S = 180
RUN_TIMEOUT_S = 300
#: how flows/publish.py's last log line of a run begins
WORKERS = ("worker-a", "worker-b")
END_MESSAGES = (f"{LA311} published:", f"{LA311} unchanged:", f"{BROKEN} rejected:")


def _project_copy(root: Path) -> Path:
    """The project's specs and suites, the code and data linked, plus a dataset whose
    source file is broken (empty)."""
    project = root / "project"
    for name in ("datasets", "expectations"):
        shutil.copytree(PROJECT / name, project / name)
    for name in ("flows", "data"):
        (project / name).symlink_to(PROJECT / name)
    shutil.copy(PROJECT / "pyproject.toml", project / "pyproject.toml")
    empty = root / "exports" / "la311_export.csv"
    empty.parent.mkdir()
    empty.write_bytes(b"")
    spec = (PROJECT / "datasets" / f"{LA311}.yaml").read_text(encoding="utf-8")
    spec = spec.replace(f"id: {LA311}\n", f"id: {BROKEN}\n", 1)
    spec = spec.replace(
        "  path: data/la311_service_requests/MyLA311_Service_Request_Data_2017_Subset.csv\n",
        f"  path: {empty}\n",
        1,
    )
    assert f"id: {BROKEN}" in spec and str(empty) in spec
    (project / "datasets" / f"{BROKEN}.yaml").write_text(spec, encoding="utf-8")
    return project


@dataclass
class Stack:
    api_url: str
    portal: DatasetteServer
    project: Path
    logs: Path
    deploy_output: str
    tables_before: list[str]
    pool_created: bool


def _stack_env(root: Path, project: Path, portal: DatasetteServer, api_url: str) -> dict[str, str]:
    """What the server, the worker (and so each flow run) and `civicflow deploy` see."""
    return {
        **os.environ,
        **portal.env,
        "PREFECT_HOME": str(root / "prefect"),
        "PREFECT_API_URL": api_url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        # The test triggers runs itself: no scheduled runs racing it, no UI to build.
        "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
        "PREFECT_SERVER_UI_ENABLED": "false",
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_LOGGING_EXTRA_LOGGERS": "civicflow",
        "CIVICFLOW_PROJECT_DIR": str(project),
        "CIVICFLOW_VAR_DIR": str(root / "var"),
    }


def _create_pool(api_url: str) -> bool:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from civicflow.cli.deploy import ensure_pool

    with temporary_settings({PREFECT_API_URL: api_url}):
        return bool(ensure_pool("civicflow"))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Server and portal booting side by side; then the pool (as `civicflow deploy`
    creates it), the worker booting while `civicflow deploy` registers the deployments."""
    root = tmp_path_factory.mktemp("prefect_stack")
    logs = root / "logs"
    logs.mkdir()
    project = _project_copy(root)
    portal = DatasetteServer(var_dir=root / "portal" / "var")
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = _stack_env(root, project, portal, api_url)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        clock = time.monotonic()
        # With flows/_server.py's helpers (what `make run` uses): the portal starts while
        # the server migrates its fresh database.
        server, _ = _server.launch_server(port, env, logs / "server.log")
        procs.append(server)
        portal.start()
        _server.wait_healthy(server, api_url, logs / "server.log", START_TIMEOUT_S)
        log.info("prefect server healthy in %.1f s", time.monotonic() - clock)
        pool_created = _create_pool(api_url)
        # Two workers share the pool; one run at a time each, so two runs at once need both.
        for name in WORKERS:
            procs.append(
                _server.start_worker(
                    "civicflow", api_url, env, logs / f"{name}.log", name=name, limit=1
                )
            )
        clock = time.monotonic()
        deploy = subprocess.run(
            [str(BIN / "civicflow"), "deploy"],
            env=env,
            cwd=project,
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT_S,
        )
        assert deploy.returncode == 0, deploy.stdout + deploy.stderr
        log.info("civicflow deploy in %.1f s", time.monotonic() - clock)
        yield Stack(api_url, portal, project, logs, deploy.stdout, portal.tables(), pool_created)
    finally:
        for proc in reversed(procs):
            _server.stop(proc)
        portal.stop()


@pytest.fixture(scope="module")
def runs(stack: Stack) -> dict[str, tuple[Any, list[str]]]:
    """Both deployments triggered at once through the Prefect client (the worker runs them
    side by side), each waited for: deployment name -> (final flow run, its log lines)."""
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    names = [f"publish-{LA311}", f"publish-{BROKEN}"]
    with temporary_settings({PREFECT_API_URL: stack.api_url}):
        # timeout=0: return as soon as the run is created; waited for below
        clock = time.monotonic()
        started = {n: run_deployment(f"publish-dataset/{n}", timeout=0) for n in names}
        with get_client(sync_client=True) as client:
            ended = {n: _wait(client, r.id) for n, r in started.items()}
    log.info("both deployment runs final in %.1f s", time.monotonic() - clock)
    return ended


def _wait(client: Any, flow_run_id: Any) -> tuple[Any, list[str]]:
    """The flow run once final (or at the timeout), with its log messages.

    The run's process ships its last log lines as it exits: wait for its end message.
    """
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    deadline = time.monotonic() + RUN_TIMEOUT_S
    while True:
        flow_run = client.read_flow_run(flow_run_id)
        logs = client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
        )
        messages = [log.message for log in logs]
        ended = any(m.startswith(END_MESSAGES) for m in messages)
        if flow_run.state.is_final():
            # a run that crashed never logs an end message: give its logs a moment only
            deadline = min(deadline, time.monotonic() + 20)
        if (flow_run.state.is_final() and ended) or time.monotonic() > deadline:
            return flow_run, messages
        time.sleep(1)


def _worker_log(stack: Stack) -> str:
    return "".join(
        (stack.logs / f"{name}.log").read_text(errors="replace")[-2000:] for name in WORKERS
    )


def _ran_by(stack: Stack, flow_run_id: Any) -> list[str]:
    """The workers that took ``flow_run_id``: their log has Prefect's "submitting" line for
    it and no "Aborted submission" (the server refuses a second claim of one run)."""
    took, aborted = (
        f"submitting flow run '{flow_run_id}'",
        f"submission of flow run '{flow_run_id}'",
    )
    logs = {n: (stack.logs / f"{n}.log").read_text(errors="replace") for n in WORKERS}
    return [n for n, text in logs.items() if took in text and f"Aborted {aborted}" not in text]


def test_civicflow_deploy_registers_one_deployment_per_scheduled_dataset(stack: Stack) -> None:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with (
        temporary_settings({PREFECT_API_URL: stack.api_url}),
        get_client(sync_client=True) as client,
    ):
        names = {d.name: d for d in client.read_deployments()}
        pool = client.read_work_pool("civicflow")
    assert pool.type == "process"
    assert {
        f"publish-{LA311}",
        f"publish-{BROKEN}",
        "publish-all-nightly",
        "scorecard-daily",
    } <= set(names)
    la311 = names[f"publish-{LA311}"]
    assert la311.parameters == {"dataset_id": LA311}
    assert la311.work_pool_name == "civicflow"
    assert [s.schedule.cron for s in la311.schedules] == ["5 * * * *"]  # type: ignore[union-attr]
    assert la311.pull_steps == [
        {"prefect.deployments.steps.set_working_directory": {"directory": str(stack.project)}}
    ]
    assert stack.pool_created  # by civicflow.cli.deploy.ensure_pool, on the fresh server
    expected = deployment_specs(load_settings(stack.project))
    assert f"{len(expected)} deployments on {stack.api_url}" in stack.deploy_output
    assert {d["name"] for d in expected} <= set(names)


def test_a_deployment_run_publishes_to_the_portal(
    stack: Stack, runs: dict[str, tuple[Any, list[str]]]
) -> None:
    flow_run, messages = runs[f"publish-{LA311}"]
    assert flow_run.state.is_completed(), (flow_run.state, messages, _worker_log(stack))
    assert LA311 not in stack.tables_before
    assert stack.portal.row_count(LA311) == 9999
    assert any(m.startswith(f"{LA311} published:") for m in messages), messages


def test_a_broken_source_ends_failed_with_the_reason_in_the_logs(
    stack: Stack, runs: dict[str, tuple[Any, list[str]]]
) -> None:
    flow_run, messages = runs[f"publish-{BROKEN}"]
    assert flow_run.state.is_failed(), (flow_run.state, messages, _worker_log(stack))
    rejected = [m for m in messages if m.startswith(f"{BROKEN} rejected:")]
    assert rejected and "empty" in rejected[0], messages
    assert "empty" in (flow_run.state.message or "")
    assert BROKEN not in stack.portal.tables()


def test_two_workers_on_one_pool_share_the_runs(
    stack: Stack, runs: dict[str, tuple[Any, list[str]]]
) -> None:
    """Both workers are online on the pool; each run was taken by exactly one of them (a
    second claim is refused by the server), and with one run at a time each, the two runs
    triggered together went one to each."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with (
        temporary_settings({PREFECT_API_URL: stack.api_url}),
        get_client(sync_client=True) as client,
    ):
        online = {w.name for w in client.read_workers_for_work_pool("civicflow")}
    assert set(WORKERS) <= online, online
    takers = {name: _ran_by(stack, flow_run.id) for name, (flow_run, _) in runs.items()}
    assert all(len(t) == 1 for t in takers.values()), (takers, _worker_log(stack))
    assert sorted(t[0] for t in takers.values()) == sorted(WORKERS), takers


def test_a_cli_call_finds_the_projects_running_server(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows._server import is_healthy, project_server_url, record_server

    monkeypatch.setenv("CIVICFLOW_VAR_DIR", str(tmp_path / "var"))
    settings = load_settings(stack.project)
    dead = f"http://127.0.0.1:{free_port()}/api"
    record_server(settings, dead, pid=0)
    assert not is_healthy(dead)
    assert project_server_url(settings) != dead  # a stale record is not trusted

    record_server(settings, stack.api_url, pid=0)
    assert project_server_url(settings) == stack.api_url
    # A fresh CLI process: found before Prefect is imported, so Prefect talks to it.
    # (conftest turns detection off for every other test: on here)
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PREFECT_API_URL", "CIVICFLOW_PROJECT_SERVER")
    }
    env.update(CIVICFLOW_PROJECT_DIR=str(stack.project), CIVICFLOW_VAR_DIR=str(tmp_path / "var"))
    script = (
        "from civicflow.settings import load_settings\n"
        "from flows._server import use_project_server\n"
        "print(use_project_server(load_settings()))\n"
        "from prefect.settings import PREFECT_API_URL\n"
        "print(PREFECT_API_URL.value())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [stack.api_url, stack.api_url]


def test_each_deployment_run_carries_its_validation_artifacts(
    stack: Stack, runs: dict[str, tuple[Any, list[str]]]
) -> None:
    """The Prefect UI shows the checks on the run that published and the reason on the
    run that stopped (public artifacts: counts and check names, no values)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.artifacts import artifact_key

    def of(name: str) -> dict[str, Any]:
        flow_run, _ = runs[name]
        with (
            temporary_settings({PREFECT_API_URL: stack.api_url}),
            get_client(sync_client=True) as client,
        ):
            found = client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run.id])
                )
            )
        return {a.key: a for a in found}

    good = of(f"publish-{LA311}")
    key = artifact_key(LA311)
    assert {key, f"{key}-summary"} <= set(good), good
    assert good[key].type == "table" and "primary-key" in str(good[key].data)
    assert "Verdict: passed" in str(good[f"{key}-summary"].data)
    broken = of(f"publish-{BROKEN}")
    summary = broken[f"{artifact_key(BROKEN)}-summary"]
    assert "Stopped at extract" in str(summary.data) and "empty" in str(summary.data)
