"""``civicflow status``: one row a dataset from the real ledger, Parquet copies and specs;
exit 1 when any dataset is failing or stale, 0 when all are healthy; never Prefect."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from civicflow import published
from civicflow.cli import app
from civicflow.ledger import Ledger, Outcome, RunRecord
from civicflow.settings import Settings

runner = CliRunner()
NOW = datetime.now(UTC)
FRESH, FAILING, STALE = "la311_service_requests", "parking_citations", "code_enforcement_cases"
RECORD_DATE = {FRESH: "created_date", FAILING: "issue_date", STALE: "date_opened"}


def record(settings: Settings, dataset_id: str, outcome: Outcome, reason: str, **kw: Any) -> None:
    started = datetime.now(UTC) - timedelta(minutes=5)
    Ledger(settings.ledger_path).record(
        RunRecord(
            dataset_id=dataset_id,
            run_id=f"{started:%Y%m%dT%H%M%SZ}-{outcome[:6]}",
            started_at=started,
            finished_at=started + timedelta(seconds=3),
            outcome=outcome,
            reason=reason,
            **kw,
        )
    )


def copy(settings: Settings, dataset_id: str, newest: datetime, rows: int = 3) -> None:
    """A real Parquet copy whose record date column's newest value is ``newest``."""
    dates = pd.Series(
        [newest - timedelta(days=i) for i in range(rows)], dtype="datetime64[us, UTC]"
    )
    frame = pd.DataFrame({RECORD_DATE[dataset_id]: dates.dt.tz_localize(None)})
    version = f"{dataset_id[:4]}{newest:%Y%m%d%H%M%S}".ljust(64, "0")
    published.write_version(settings, dataset_id, frame, version, f"run-{dataset_id}")


@pytest.fixture
def unhealthy(project: Settings) -> Settings:
    """311 fresh and published, parking citations rejected on its last run, code
    enforcement published but its newest case from 2015; the rest never ran."""
    copy(project, FRESH, NOW - timedelta(hours=3), rows=5)
    record(project, FRESH, "published", "published a new version", rows_in=5, rows_out=5)
    copy(project, FAILING, NOW - timedelta(hours=1))
    record(project, FAILING, "published", "published a new version")
    record(
        project,
        FAILING,
        "rejected",
        "2 critical checks failed: not_null (issue_date)",
        critical_failed=2,
        report_path=str(project.var_dir / "reports" / FAILING / "r.json"),
    )
    copy(project, STALE, datetime(2015, 6, 30, tzinfo=UTC))
    record(project, STALE, "unchanged", "source unchanged")
    return project


def status_json() -> tuple[int, dict[str, dict[str, Any]]]:
    result = runner.invoke(app, ["status", "--json"])
    return result.exit_code, {d["dataset_id"]: d for d in json.loads(result.output)}


def test_failing_or_stale_datasets_exit_1_and_say_why(unhealthy: Settings) -> None:
    code, found = status_json()
    assert code == 1
    assert set(found) == {p.stem for p in unhealthy.datasets_dir.glob("*.yaml")}
    fresh, failing, stale = found[FRESH], found[FAILING], found[STALE]
    assert fresh["healthy"] and fresh["freshness"]["state"] == "fresh"
    assert fresh["published"]["rows"] == 5 and fresh["last_run"]["outcome"] == "published"
    assert 3 * 3600 <= fresh["freshness"]["age_seconds"] < 4 * 3600
    assert failing["failing"] and not failing["stale"] and not failing["healthy"]
    assert failing["last_run"]["outcome"] == "rejected"
    assert stale["stale"] and not stale["failing"]
    assert stale["freshness"]["detail"].startswith("weekly: latest record 2015-06-30 (date_opened)")
    never = found["lax_passenger_workbook"]
    assert never["last_run"] is None and never["freshness"]["state"] == "unknown"
    assert never["healthy"]  # never published is not stale: nothing to age yet

    table = runner.invoke(app, ["status"])
    assert table.exit_code == 1
    rows = {cells[0]: cells for cells in map(str.split, table.output.splitlines()) if cells}
    assert rows[FRESH][1] == "ok" and rows[FAILING][1] == "FAILING"
    assert rows[STALE][1] == "STALE"
    out = table.output
    assert f"{FAILING}: last run rejected: 2 critical checks failed: not_null (issue_date)" in out
    assert f"report: {unhealthy.var_dir / 'reports' / FAILING / 'r.json'}" in out
    assert f"{STALE}: stale: weekly: latest record 2015-06-30" in out


def test_next_run_from_the_schedule_without_prefect(unhealthy: Settings) -> None:
    _, found = status_json()
    # 311 refreshes hourly at five past (its spec's cron), in Los Angeles time
    after = datetime.fromisoformat(found[FRESH]["next_run"])
    assert after.minute == 5 and timedelta(0) < after - datetime.now(UTC) <= timedelta(hours=1)
    assert after.utcoffset() in (timedelta(hours=-8), timedelta(hours=-7))
    # produced by the scorecard flow: no schedule of its own
    metrics = found["performance_metrics"]
    assert metrics["next_run"] is None and metrics["schedule"] == "by hand or publish-all"


def test_all_healthy_exits_0(unhealthy: Settings) -> None:
    record(unhealthy, FAILING, "published", "published a new version")
    copy(unhealthy, STALE, NOW - timedelta(days=2))
    code, found = status_json()
    assert code == 0, found
    assert all(d["healthy"] for d in found.values())


def test_a_project_that_never_ran_is_healthy_and_no_ledger_is_created(project: Settings) -> None:
    result = runner.invoke(app, ["status"])
    assert result.exit_code == 0, result.output
    assert "never run" in result.output
    assert not project.ledger_path.exists()


def test_outside_a_project_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CIVICFLOW_PROJECT_DIR", str(tmp_path))
    result = runner.invoke(app, ["status"])
    assert result.exit_code == 2 and "has no datasets/ folder" in result.output


PROBE = """
import json, sys
from civicflow.cli import main
sys.argv = ["civicflow", "status", "--json"]
try:
    main()
except SystemExit as exc:
    code = exc.code
loaded = sorted(m for m in sys.modules if m == "prefect" or m.startswith("prefect."))
print(json.dumps({"exit": code, "prefect_modules": loaded}), file=sys.stderr)
"""


def test_status_never_imports_or_starts_prefect(unhealthy: Settings, tmp_path: Path) -> None:
    """The real entry point in a fresh interpreter: Prefect is never imported."""
    env = dict(os.environ)
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")  # a started Prefect would write here
    done = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120
    )
    probe = json.loads(done.stderr.strip().splitlines()[-1])
    assert probe == {"exit": 1, "prefect_modules": []}, done.stderr
    assert json.loads(done.stdout)[0]["dataset_id"] == "code_enforcement_case_status"
    assert not (tmp_path / "prefect-home").exists()


BEGIN_AND_DIE = """
import sys
from datetime import UTC, datetime
from pathlib import Path
from civicflow.ledger import Ledger
Ledger(Path(sys.argv[1])).begin(sys.argv[2], "20990101T000000Z-dead00", datetime.now(UTC))
"""


def test_a_crashed_run_is_failing_and_a_running_one_is_not(unhealthy: Settings) -> None:
    """A run whose process ended without an outcome (a real process that noted its start
    and exited) shows as crashed and fails status; one still running does not."""
    subprocess.run(
        [sys.executable, "-c", BEGIN_AND_DIE, str(unhealthy.ledger_path), FRESH],
        check=True,
        timeout=60,
    )
    Ledger(unhealthy.ledger_path).begin(STALE, "20990101T000000Z-alive0", datetime.now(UTC))
    code, found = status_json()
    assert code == 1
    crashed, running = found[FRESH], found[STALE]
    assert crashed["outcome"] == "crashed" and crashed["failing"]
    assert crashed["unfinished"]["detail"].startswith("run 20990101T000000Z-dead00 crashed: ")
    assert running["outcome"] == "running" and not running["failing"]
    assert f"pid {os.getpid()}" in running["unfinished"]["detail"]
    table = runner.invoke(app, ["status"]).output
    rows = {cells[0]: cells for cells in map(str.split, table.splitlines()) if cells}
    assert rows[FRESH][1] == "FAILING" and "crashed" in rows[FRESH]
