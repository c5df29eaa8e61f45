"""`civicflow run --serve` (what `make run` calls) as a running system, from outside.

One real process on free ports: it starts the portal, the project's Prefect server, every
deployment and a process worker, runs publish-all and the scorecard once, and keeps it
all serving. Checked through the Prefect client and over HTTP: one deployment per
scheduled dataset plus publish-all and the scorecard, the worker online, the scheduler
creating the next runs (schedules are live), the job's runs completed on that server, the
portal serving the data; then Ctrl-C stops every service it started.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from civicflow.deployments import deployment_specs
from civicflow.settings import load_settings
from flows._server import is_healthy
from tests.fixtures.portal import free_port

pytestmark = pytest.mark.slow

PROJECT = Path(__file__).resolve().parents[1]
CLI = Path(sys.executable).with_name("civicflow")
READY = "serving; Ctrl-C to stop"
START_TIMEOUT_S = 600


@dataclass
class Served:
    proc: subprocess.Popen[str]
    api_url: str
    portal_url: str
    var_dir: Path
    lines: list[str] = field(default_factory=list)

    @property
    def output(self) -> str:
        return "".join(self.lines)


def _follow(served: Served) -> None:
    assert served.proc.stdout is not None
    for line in served.proc.stdout:
        served.lines.append(line)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("serve")
    port, prefect_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(
        CIVICFLOW_PROJECT_DIR=str(PROJECT),
        CIVICFLOW_VAR_DIR=str(root / "var"),
        PREFECT_HOME=str(root / "prefect"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        # Prefect's scheduler looks every 60 s by default; the test need not wait that long.
        PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS="5",
    )
    for name in ("CIVICFLOW_HASH_KEY", "DATASETTE_SECRET", "CIVICFLOW_DATASETTE_TOKEN"):
        env.pop(name, None)
    proc = subprocess.Popen(
        [str(CLI), "run", "--serve", "--port", str(port), "--prefect-port", str(prefect_port)],
        env=env,
        cwd=PROJECT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    served = Served(
        proc, f"http://127.0.0.1:{prefect_port}/api", f"http://127.0.0.1:{port}", root / "var"
    )
    threading.Thread(target=_follow, args=(served,), daemon=True).start()
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while READY not in served.output:
            assert proc.poll() is None, served.output
            assert time.monotonic() < deadline, served.output
            time.sleep(1)
        yield served
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)


def _client(served: Served) -> Any:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    class _Client:
        def __enter__(self) -> Any:
            self._settings = temporary_settings({PREFECT_API_URL: served.api_url})
            self._settings.__enter__()
            self._client = get_client(sync_client=True)
            return self._client.__enter__()

        def __exit__(self, *exc: object) -> None:
            self._client.__exit__(*exc)
            self._settings.__exit__(*exc)

    return _Client()


def test_every_deployment_is_on_the_projects_server_with_a_worker_online(served: Served) -> None:
    expected = {d["name"] for d in deployment_specs(load_settings(PROJECT))}
    with _client(served) as client:
        deployments = {d.name for d in client.read_deployments()}
        deadline = time.monotonic() + 120
        while True:
            workers = client.read_workers_for_work_pool("civicflow")
            if any(w.status.value == "ONLINE" for w in workers) or time.monotonic() > deadline:
                break
            time.sleep(2)
    assert deployments == expected
    assert {"publish-all-nightly", "scorecard-daily", "publish-la311_service_requests"} <= expected
    assert any(w.status.value == "ONLINE" for w in workers), workers
    assert f"Prefect UI: {served.api_url.removesuffix('/api')}/" in served.output


def test_the_schedules_are_live(served: Served) -> None:
    """The server's scheduler creates the next runs of each scheduled deployment (it once
    crashed on every pass with a SQLAlchemy it was not built for)."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterDeploymentId

    with _client(served) as client:
        la311 = client.read_deployment_by_name("publish-dataset/publish-la311_service_requests")
        deadline = time.monotonic() + 120
        while True:
            scheduled = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    deployment_id=FlowRunFilterDeploymentId(any_=[la311.id])
                )
            )
            if scheduled or time.monotonic() > deadline:
                break
            time.sleep(2)
    assert scheduled, "the scheduler created no run of the hourly 311 deployment"
    assert all(
        r.state.is_scheduled() or r.state.is_final() or r.state.is_running() for r in scheduled
    )


def test_the_job_ran_on_that_server_and_the_portal_serves_it(served: Served) -> None:
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    with _client(served) as client:
        runs = {
            name: client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[name])))
            for name in ("publish-all", "scorecard")
        }
    for name, found in runs.items():
        assert any(r.state.is_completed() for r in found), (name, found)
    tables = httpx.get(f"{served.portal_url}/portal.json", timeout=30).json()["tables"]
    names = {t["name"] for t in tables}
    assert {"la311_service_requests", "lax_passenger_workbook"} <= names
    assert "PUBLISHED" in served.output or "UNCHANGED" in served.output


def test_ctrl_c_stops_every_service_it_started(served: Served) -> None:
    served.proc.send_signal(signal.SIGINT)
    assert served.proc.wait(120) == 0, served.output
    assert "stopping" in served.output
    assert not is_healthy(served.api_url, timeout=2)
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{served.portal_url}/-/versions.json", timeout=2)
    worker_log = served.var_dir / "logs" / "prefect-worker.log"
    assert worker_log.is_file()
    leftovers = subprocess.run(
        ["pgrep", "-f", f"prefect worker start --pool civicflow.*|{served.var_dir}"],
        capture_output=True,
        text=True,
    )
    assert leftovers.stdout.strip() == "", leftovers.stdout
