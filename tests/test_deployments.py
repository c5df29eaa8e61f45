"""Deployments come from the dataset specs: prefect.yaml is generated and kept in sync,
every scheduled dataset has exactly one, and each names a real flow's parameters."""

from __future__ import annotations

import difflib
import importlib
import inspect
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from civicflow.cli import app
from civicflow.deployments import deployment_specs, render_prefect_yaml
from civicflow.schedules import effective_schedule
from civicflow.settings import Settings, load_settings
from civicflow.spec import load_all

PROJECT = Path(__file__).resolve().parents[1]
runner = CliRunner()


@pytest.fixture
def real_project(monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("CIVICFLOW_PROJECT_DIR", str(PROJECT))
    return load_settings()


def _flow_function(entrypoint: str) -> Any:
    """The Python function behind ``flows/x.py:name`` (the flow object's ``fn``)."""
    path, name = entrypoint.split(":")
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    return getattr(module, name).fn


def test_prefect_yaml_is_in_sync_with_the_specs(real_project: Settings) -> None:
    committed = (PROJECT / "prefect.yaml").read_text(encoding="utf-8")
    generated = render_prefect_yaml(real_project)
    diff = "".join(
        difflib.unified_diff(
            committed.splitlines(keepends=True),
            generated.splitlines(keepends=True),
            "prefect.yaml (committed)",
            "prefect.yaml (from datasets/)",
        )
    )
    assert not diff, (
        f"prefect.yaml is out of sync with datasets/: run civicflow deploy --write-yaml\n{diff}"
    )


def test_every_scheduled_dataset_has_exactly_one_deployment(real_project: Settings) -> None:
    specs = load_all(real_project.datasets_dir)
    deployments = deployment_specs(real_project)
    by_dataset: dict[str, list[str]] = {}
    for d in deployments:
        if "dataset_id" in d.get("parameters", {}):
            by_dataset.setdefault(d["parameters"]["dataset_id"], []).append(d["name"])
    scheduled = {i for i, s in specs.items() if effective_schedule(s) and s.produced_by is None}
    assert set(by_dataset) == scheduled
    assert all(names == [f"publish-{i}"] for i, names in by_dataset.items())
    # The hourly 311 refresh comes from its spec's schedule, not from a hand-written file.
    la311 = next(d for d in deployments if d["name"] == "publish-la311_service_requests")
    assert la311["schedules"] == [{"cron": "5 * * * *", "timezone": "America/Los_Angeles"}]
    assert la311["concurrency_limit"] == {"limit": 1, "collision_strategy": "ENQUEUE"}
    names = [d["name"] for d in deployments]
    assert len(names) == len(set(names))
    assert {"publish-all-nightly", "scorecard-daily"} <= set(names)


def test_parameters_name_the_flows_parameters(real_project: Settings) -> None:
    for d in deployment_specs(real_project):
        signature = inspect.signature(_flow_function(d["entrypoint"]))
        given = set(d.get("parameters", {}))
        assert given <= set(signature.parameters), (d["name"], given)
        required = {
            n for n, p in signature.parameters.items() if p.default is inspect.Parameter.empty
        }
        assert required <= given, (d["name"], required - given)
        assert d["work_pool"] == {"name": "civicflow"}


def test_prefect_reads_every_schedule_of_the_file(real_project: Settings) -> None:
    # The function `prefect deploy` itself turns a prefect.yaml schedule into a schedule with.
    from prefect.cli.deploy._schedules import _schedule_config_to_deployment_schedule

    document = yaml.safe_load(render_prefect_yaml(real_project))
    assert document["pull"] == [
        {
            "prefect.deployments.steps.set_working_directory": {
                "directory": "{{ $CIVICFLOW_PROJECT_DIR }}"
            }
        }
    ]
    for d in document["deployments"]:
        for entry in d["schedules"]:
            parsed = _schedule_config_to_deployment_schedule(entry)
            assert str(parsed["schedule"].timezone) == "America/Los_Angeles"


def _set_schedule(project: Settings, dataset_id: str, line: str) -> None:
    path = project.datasets_dir / f"{dataset_id}.yaml"
    text = path.read_text(encoding="utf-8")
    text = "\n".join(x for x in text.splitlines() if not x.startswith("schedule:"))
    path.write_text(text + f"\n{line}\n", encoding="utf-8")


def test_interval_and_paused_schedules_and_unscheduled_datasets(project: Settings) -> None:
    from prefect.cli.deploy._schedules import _schedule_config_to_deployment_schedule

    _set_schedule(project, "parking_citations", "schedule: {interval_minutes: 30, active: false}")
    _set_schedule(project, "neighborhood_councils", 'schedule: {cron: "0 7 * * 1", timezone: UTC}')
    by_name = {d["name"]: d for d in deployment_specs(project)}

    parking = by_name["publish-parking_citations"]["schedules"]
    assert parking == [{"interval": 1800, "timezone": "America/Los_Angeles", "active": False}]
    parsed = _schedule_config_to_deployment_schedule(parking[0])
    assert parsed["active"] is False and parsed["schedule"].interval.total_seconds() == 1800
    # irregular, but given a schedule of its own: now it gets a deployment
    assert by_name["publish-neighborhood_councils"]["schedules"] == [
        {"cron": "0 7 * * 1", "timezone": "UTC"}
    ]
    # produced by the scorecard flow: never a publish deployment of its own
    assert "publish-performance_metrics" not in by_name


def test_deploy_write_yaml_writes_what_the_specs_say(project: Settings) -> None:
    _set_schedule(project, "lax_passenger_traffic", 'schedule: {cron: "15 1 3 * *"}')
    result = runner.invoke(app, ["deploy", "--write-yaml"])
    assert result.exit_code == 0, result.output
    written = (project.project_dir / "prefect.yaml").read_text(encoding="utf-8")
    assert written == render_prefect_yaml(project)
    assert "cron: 15 1 3 * *" in written
    assert written.startswith("# GENERATED by `civicflow deploy --write-yaml`")


def test_deploy_without_a_server_says_how_to_start_one(
    project: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.fixtures.portal import free_port

    monkeypatch.setenv("PREFECT_API_URL", f"http://127.0.0.1:{free_port()}/api")
    result = runner.invoke(app, ["deploy"])
    assert result.exit_code == 2
    assert "no Prefect server answers at" in result.output
    assert "make run" in result.output


def test_deploy_reports_a_broken_spec_by_file(project: Settings) -> None:
    path = project.datasets_dir / "parking_citations.yaml"
    path.write_text(path.read_text(encoding="utf-8") + 'schedule: {cron: "every hour"}\n')
    result = runner.invoke(app, ["deploy", "--write-yaml"])
    assert result.exit_code == 2
    assert "parking_citations.yaml" in result.output and "five fields" in result.output
    assert not (project.project_dir / "prefect.yaml").exists()
