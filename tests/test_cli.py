"""The CLI, through typer's runner: exit codes 0/1/2 and messages a steward can act on.

``publish`` runs the real Prefect flows (under the session's test harness) against the
real Datasette portal.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from civicflow.cli import app

PROJECT = Path(__file__).resolve().parents[1]
CSV = PROJECT / "data" / "la311_service_requests" / "MyLA311_Service_Request_Data_2017_Subset.csv"
TABLE = "la311_service_requests"
runner = CliRunner()


@pytest.fixture
def cli_env(datasette_server, tmp_path, monkeypatch, prefect_harness):
    for key, value in datasette_server.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("CIVICFLOW_PROJECT_DIR", str(PROJECT))
    monkeypatch.setenv("CIVICFLOW_VAR_DIR", str(tmp_path / "var"))
    return tmp_path


def _copy_project(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    for name in ("datasets", "expectations", "metrics", "data"):
        if (PROJECT / name).exists():
            shutil.copytree(PROJECT / name, project / name)
    shutil.copy(PROJECT / "pyproject.toml", project / "pyproject.toml")
    return project


def test_check_passes_on_the_bundled_project(monkeypatch) -> None:
    monkeypatch.setenv("CIVICFLOW_PROJECT_DIR", str(PROJECT))
    result = runner.invoke(app, ["check"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("ok: ")


def test_check_reports_every_problem_with_file_and_key(tmp_path, monkeypatch) -> None:
    project = _copy_project(tmp_path)
    spec = project / "datasets" / f"{TABLE}.yaml"
    spec.write_text(
        spec.read_text()
        .replace("type: datetime", "type: datetme", 1)
        .replace("license: CC0-1.0", "licence: CC0-1.0")
    )
    suite = project / "expectations" / f"{TABLE}.json"
    suite.write_text(suite.read_text()[:-40])
    monkeypatch.setenv("CIVICFLOW_PROJECT_DIR", str(project))
    result = runner.invoke(app, ["check"])
    assert result.exit_code == 2
    out = result.output
    assert f"{spec}:" in out and "fields.1.type" in out and "datetme" in out
    assert "licence: unknown key" in out
    assert f"{suite}" in out


def test_check_outside_a_project_exits_2_and_says_where_it_looked(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("CIVICFLOW_PROJECT_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["check"])
    assert result.exit_code == 2, result.output
    assert "ok:" not in result.output
    assert str(tmp_path) in result.output and "datasets/" in result.output
    assert "CIVICFLOW_PROJECT_DIR" in result.output


def test_check_with_a_project_dir_without_datasets_exits_2(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("CIVICFLOW_PROJECT_DIR", str(tmp_path))
    result = runner.invoke(app, ["check"])
    assert result.exit_code == 2, result.output
    assert f"CIVICFLOW_PROJECT_DIR={tmp_path} has no datasets/ folder" in result.output


def test_check_prints_every_problem_exactly_once(tmp_path, monkeypatch) -> None:
    project = _copy_project(tmp_path)
    spec = project / "datasets" / f"{TABLE}.yaml"
    spec.write_text(spec.read_text().replace("license: CC0-1.0", "licence: CC0-1.0"))
    monkeypatch.setenv("CIVICFLOW_PROJECT_DIR", str(project))
    result = runner.invoke(app, ["check"])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.startswith(str(project))]
    assert len([line for line in lines if "licence: unknown key" in line]) == 1, result.output
    assert len(lines) == len(set(lines)), "a problem was printed more than once"
    assert f"{len(lines)} problem(s) found" in result.output


def test_publish_usage_errors_exit_2(cli_env) -> None:
    assert runner.invoke(app, ["publish"]).exit_code == 2
    assert runner.invoke(app, ["publish", "no_such_dataset"]).exit_code == 2
    assert runner.invoke(app, ["publish", TABLE, "--all"]).exit_code == 2
    result = runner.invoke(app, ["publish", TABLE, "--source", str(cli_env / "missing.csv")])
    assert result.exit_code == 2 and "no such file" in result.output


def test_publish_then_duplicate_key_is_refused_naming_both_rows(cli_env, datasette_server) -> None:
    first = runner.invoke(app, ["publish", TABLE])
    assert first.exit_code == 0, first.output
    assert datasette_server.row_count(TABLE) == 9999

    frame = pd.read_csv(CSV, dtype=str, keep_default_na=False)
    frame.loc[41, "SRNumber"] = frame.loc[11, "SRNumber"]  # data rows 12 and 42
    bad = cli_env / "dup.csv"
    frame.to_csv(bad, index=False)
    result = runner.invoke(app, ["publish", TABLE, "--source", str(bad)])
    assert result.exit_code == 1, result.output
    assert "REJECTED" in result.output
    # The reason (also the ledger's, shown publicly) names the rows, never the value.
    assert "rows 12 and 42" in result.output
    assert frame.loc[11, "SRNumber"] not in result.output
    assert datasette_server.row_count(TABLE) == 9999

    runs = runner.invoke(app, ["runs", TABLE])
    assert runs.exit_code == 0
    assert "rejected" in runs.output and ("published" in runs.output or "unchanged" in runs.output)


def test_check_accepts_a_socrata_source_without_a_file(tmp_path, monkeypatch) -> None:
    """A remote source has no file to find: check must not look for one (or crash)."""
    import yaml

    project = _copy_project(tmp_path)
    spec = yaml.safe_load((project / "datasets" / "lax_passenger_traffic.yaml").read_text())
    spec["id"] = "lax_from_socrata"
    spec["source"] = {
        "kind": "socrata",
        "domain": "https://data.lacity.org",
        "dataset": "g3qu-7q2u",
    }
    (project / "datasets" / "lax_from_socrata.yaml").write_text(yaml.safe_dump(spec))
    suite = (project / "expectations" / "lax_passenger_traffic.json").read_text()
    (project / "expectations" / "lax_from_socrata.json").write_text(
        suite.replace('"lax_passenger_traffic"', '"lax_from_socrata"')
    )
    monkeypatch.setenv("CIVICFLOW_PROJECT_DIR", str(project))
    result = runner.invoke(app, ["check"])
    assert result.exit_code == 0, result.output
