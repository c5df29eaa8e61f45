"""Prefect smoke tests for flows/scorecard.py under the session's test harness.

The full run publishes the source datasets and then performance_metrics to a real
Datasette portal over HTTP; the other runs without a portal (publish=False).
"""

from __future__ import annotations

import csv
import json
import secrets
from pathlib import Path

import anyio
import pytest

from civicflow.ledger import Ledger
from civicflow.settings import Settings, load_settings
from tests.test_metrics_kpis import SOURCES, publish_parquet

PROJECT = Path(__file__).resolve().parents[1]


def _task_names(flow_run_id) -> set[str]:
    from prefect.client.orchestration import get_client

    async def names() -> set[str]:
        async with get_client() as client:
            runs = await client.read_task_runs()
            return {r.name.rsplit("-", 1)[0] for r in runs if r.flow_run_id == flow_run_id}

    return anyio.run(names)


def test_scorecard_flow_without_publishing(prefect_harness, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("CIVICFLOW_PROJECT_DIR", str(PROJECT))
    monkeypatch.setenv("CIVICFLOW_VAR_DIR", str(tmp_path / "var"))
    settings = Settings(project_dir=PROJECT, var_dir=tmp_path / "var")
    for dataset_id in SOURCES:
        publish_parquet(settings, dataset_id)
    from flows.scorecard import scorecard

    state = scorecard(publish=False, return_state=True)
    assert state.is_completed(), state.message
    summary = state.result()
    assert summary["publish"] is None
    assert Path(summary["site"]["html"]).is_file() and Path(summary["performance_csv"]).is_file()
    # the staged file is private (var/scorecard/); nothing unvalidated goes next to the page
    assert Path(summary["site"]["html"]).parent not in Path(summary["performance_csv"]).parents
    assert summary["performance_csv_public"] is None
    assert set(summary["kpis"]) == {p.stem for p in (PROJECT / "metrics" / "kpis").glob("*.yaml")}
    assert "no_data" not in summary["kpis"].values()
    assert {
        "load-metrics",
        "compute-kpis",
        "write-performance-csv",
        "export-performance-csv",
        "certify",
        "write-site",
    } <= _task_names(state.state_details.flow_run_id)
    # performance_metrics was not published, and the certification page says so
    data = json.loads(Path(summary["site"]["json"]).read_text())
    shared = next(
        c for c in data["certification"]["criteria"] if c["id"] == "progress_shared_publicly"
    )
    assert shared["met"] is False and "never published" in shared["missing"]


@pytest.mark.slow
def test_scorecard_flow_publishes_performance_metrics_to_the_portal(
    prefect_harness, datasette_server, tmp_path, monkeypatch
) -> None:
    for key, value in datasette_server.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("CIVICFLOW_HASH_KEY", secrets.token_hex(32))  # parking_citations hashes VINs
    monkeypatch.setenv("CIVICFLOW_PROJECT_DIR", str(PROJECT))
    monkeypatch.setenv("CIVICFLOW_VAR_DIR", str(tmp_path / "var"))
    from civicflow.pipeline import run_dataset
    from flows.scorecard import scorecard

    settings = load_settings()
    for dataset_id in SOURCES:
        outcome = run_dataset(settings, dataset_id)
        assert outcome.ok, f"{dataset_id}: {outcome.reason}"

    state = scorecard(return_state=True)
    assert state.is_completed(), state.message
    summary = state.result()
    assert summary["publish"]["outcome"] == "published", summary["publish"]
    names = _task_names(state.state_details.flow_run_id)
    assert {
        "compute-kpis",
        "extract",
        "validate",
        "protect",
        "publish",
        "certify",
        "write-site",
    } <= names
    # performance_metrics' checks on this run in the Prefect UI, like any publish
    from prefect.client.orchestration import get_client

    from flows.artifacts import artifact_key

    with get_client(sync_client=True) as client:
        keys = {
            a.key
            for a in client.read_artifacts()
            if a.flow_run_id == state.state_details.flow_run_id
        }
    assert artifact_key("performance_metrics") in keys

    rows = list(csv.DictReader(Path(summary["performance_csv"]).read_text().splitlines()))
    assert datasette_server.row_count("performance_metrics") == len(rows) > 0
    public = list(csv.DictReader(Path(summary["performance_csv_public"]).read_text().splitlines()))
    assert len(public) == len(rows) and {r["kpi_id"] for r in public} == set(summary["kpis"])
    assert datasette_server.row_count("neighborhood_councils") == 99
    small = datasette_server.query(
        "select count(*) as n from performance_metrics where records is not null and records < 11"
    )
    assert small[0]["n"] == 0
    kpi_ids = {
        r["kpi_id"]
        for r in datasette_server.query("select distinct kpi_id from performance_metrics")
    }
    assert kpi_ids == set(summary["kpis"])
    last = Ledger(settings.ledger_path).last("performance_metrics")
    assert last is not None and last.outcome == "published"

    # the page shows the level computed from this run, with the KPI values shared publicly
    data = json.loads(Path(summary["site"]["json"]).read_text())
    shared = next(
        c for c in data["certification"]["criteria"] if c["id"] == "progress_shared_publicly"
    )
    assert shared["met"] is True
    assert data["certification"]["level"] == summary["level"]
    html = Path(summary["site"]["html"]).read_text()
    assert f'data-level="{summary["level"]}"' in html

    # same sources, same KPI values: the second run leaves the portal's version alone
    again = scorecard(return_state=True)
    assert again.is_completed(), again.message
    assert again.result()["publish"]["outcome"] == "unchanged"


def test_civicflow_scorecard_cli_runs_the_flow(prefect_harness, tmp_path, monkeypatch) -> None:
    from typer.testing import CliRunner

    from civicflow.cli import app

    monkeypatch.setenv("CIVICFLOW_PROJECT_DIR", str(PROJECT))
    monkeypatch.setenv("CIVICFLOW_VAR_DIR", str(tmp_path / "var"))
    settings = Settings(project_dir=PROJECT, var_dir=tmp_path / "var")
    for dataset_id in SOURCES:
        publish_parquet(settings, dataset_id)
    result = CliRunner().invoke(app, ["scorecard", "--no-publish"])
    assert result.exit_code == 0, result.output
    data = json.loads((settings.site_dir / "scorecard" / "scorecard.json").read_text())
    assert f"certification: {data['certification']['level']}" in result.output
    assert f"page: {settings.site_dir / 'scorecard' / 'index.html'}" in result.output
