"""``civicflow publish ID --dry-run`` over a real Datasette portal: the plan it prints is
derived from how the source was edited, and it writes nothing anywhere it must not.

Each test gets a private portal: the session's shared portal also holds 311, published
by other tests, and a dry run must be compared with a live version this test knows.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from civicflow.cli import app
from civicflow.ledger import Ledger
from civicflow.pipeline import dry_run_dataset, run_dataset
from civicflow.portals import get_portal
from civicflow.settings import Settings
from tests.fixtures.portal import DatasetteServer, point_civicflow_at

PROJECT = Path(__file__).resolve().parents[1]
CSV = PROJECT / "data" / "la311_service_requests" / "MyLA311_Service_Request_Data_2017_Subset.csv"
TABLE = "la311_service_requests"
runner = CliRunner()


@pytest.fixture
def portal(datasette_factory: Callable[[], DatasetteServer]) -> DatasetteServer:
    return datasette_factory()


@pytest.fixture
def settings(portal: DatasetteServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    return point_civicflow_at(portal, tmp_path / "var", monkeypatch)


def _digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def written_state(portal: DatasetteServer, settings: Settings) -> dict[str, Any]:
    """Everything a publish writes: the portal's live version, rows, tables and database
    file; the ledger; the Parquet copies."""
    live = get_portal("datasette", settings).current_version(TABLE)
    published = settings.published_dir
    return {
        "live": live,
        "rows": portal.row_count(TABLE) if live else None,
        "tables": portal.tables(),
        "portal_db": [_digest(Path(f"{portal.db_path}{end}")) for end in ("", "-wal")],
        "ledger": _digest(settings.ledger_path),
        "published": sorted(
            (str(p.relative_to(published)), _digest(p)) for p in published.rglob("*") if p.is_file()
        )
        if published.exists()
        else None,
    }


def edited_source(tmp_path: Path) -> tuple[Path, dict[str, int]]:
    """The 311 file with rows deleted, updated and added; the counts a plan must show."""
    rows = pd.read_csv(CSV, dtype=str, keep_default_na=False)
    added = rows.iloc[20:23].assign(SRNumber=[f"1-99999999{i}" for i in range(3)])
    status = rows["Status"].iloc[10:17]
    rows.loc[rows.index[10:17], "Status"] = "Cancelled"
    edited = pd.concat([rows.iloc[5:], added], ignore_index=True)  # first 5 deleted
    path = tmp_path / "edited.csv"
    edited.to_csv(path, index=False)
    expected = {"added": 3, "updated": int((status != "Cancelled").sum()), "deleted": 5}
    assert expected["updated"] > 0  # the edit must change something to test anything
    return path, expected


def test_dry_run_of_a_new_table_plans_every_row_and_writes_nothing(portal, settings) -> None:
    before = written_state(portal, settings)
    found = dry_run_dataset(settings, TABLE)
    assert found.ok and found.plan is not None
    plan = found.plan
    assert (plan.exists, plan.changed) == (False, True)
    assert (plan.rows.before, plan.rows.after, plan.rows.added) == (0, 9_999, 9_999)
    assert written_state(portal, settings) == before
    assert not settings.ledger_path.exists()
    # Extract, validate and protect ran as in any run: their reports are there.
    assert found.report_path is not None and found.report_path.is_file()
    assert found.privacy_report_path is not None and found.privacy_report_path.is_file()


def test_dry_run_counts_the_edit_and_leaves_everything_as_it_was(
    portal, settings, tmp_path
) -> None:
    first = run_dataset(settings, TABLE)
    assert first.outcome == "published", first.reason
    source, expected = edited_source(tmp_path)
    before = written_state(portal, settings)

    found = dry_run_dataset(settings, TABLE, source)

    assert found.ok and found.plan is not None, found.reason
    rows = found.plan.rows
    assert (rows.before, rows.after) == (9_999, 9_999 - 5 + 3)
    assert {"added": rows.added, "updated": rows.updated, "deleted": rows.deleted} == expected
    assert not found.plan.schema.changed and found.plan.metadata == []
    assert written_state(portal, settings) == before
    assert len(Ledger(settings.ledger_path).runs(TABLE)) == 1  # the dry run is not recorded

    # The real publish of the same file does what the plan said (and the state check
    # above would have seen it).
    done = run_dataset(settings, TABLE, source)
    assert done.outcome == "published", done.reason
    assert written_state(portal, settings) != before
    assert portal.row_count(TABLE) == rows.after


def test_dry_run_of_the_live_source_says_unchanged(portal, settings) -> None:
    assert run_dataset(settings, TABLE).outcome == "published"
    before = written_state(portal, settings)
    found = dry_run_dataset(settings, TABLE)
    assert found.plan is not None and found.plan.changed is False
    assert found.plan.lines() == [
        f"{TABLE}: unchanged: the portal already holds this exact version"
    ]
    assert written_state(portal, settings) == before


def test_cli_dry_run_prints_counts_never_values_and_writes_nothing(
    portal, settings, tmp_path
) -> None:
    assert run_dataset(settings, TABLE).outcome == "published"
    source, expected = edited_source(tmp_path)
    before = written_state(portal, settings)

    result = runner.invoke(app, ["publish", TABLE, "--source", str(source), "--dry-run"])

    assert result.exit_code == 0, result.output
    out = result.output
    assert f"{TABLE}: DRY RUN: nothing written, not recorded in the run ledger" in out
    assert (
        f"rows 9,999 -> 9,997: {expected['added']} to add, {expected['updated']} to update, "
        f"{expected['deleted']} to delete" in out
    )
    assert "schema: unchanged" in out and "metadata: unchanged" in out
    assert "report: " in out and "privacy report: " in out
    # Keys can be personal: no service request number, added or deleted, is printed.
    ids = pd.read_csv(source, dtype=str)["SRNumber"]
    assert not [i for i in ids if i in out]
    assert written_state(portal, settings) == before


def test_cli_dry_run_of_rejected_input_exits_1_and_writes_nothing(
    portal, settings, tmp_path
) -> None:
    rows = pd.read_csv(CSV, dtype=str, keep_default_na=False)
    rows.loc[rows.index[3], "Status"] = "Misplaced"  # not a MyLA311 status: critical
    bad = tmp_path / "bad.csv"
    rows.to_csv(bad, index=False)
    before = written_state(portal, settings)
    result = runner.invoke(app, ["publish", TABLE, "--source", str(bad), "--dry-run"])
    assert result.exit_code == 1, result.output
    assert f"{TABLE}: DRY RUN: would be REJECTED:" in result.output
    assert "Misplaced" not in result.output
    assert written_state(portal, settings) == before


def test_cli_dry_run_with_the_portal_down_fails_clearly_and_writes_nothing(
    tmp_path, monkeypatch
) -> None:
    from tests.fixtures.portal import free_port

    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("CIVICFLOW_PORTAL_URL", url)
    monkeypatch.setenv("CIVICFLOW_PROJECT_DIR", str(PROJECT))
    monkeypatch.setenv("CIVICFLOW_VAR_DIR", str(tmp_path / "var"))
    result = runner.invoke(app, ["publish", TABLE, "--dry-run"])
    assert result.exit_code == 1, result.output
    assert f"{TABLE}: DRY RUN FAILED: portal:" in result.output and url in result.output
    assert "portal unreachable" in result.output
    var = tmp_path / "var"
    assert not (var / "ledger.db").exists() and not (var / "published").exists()


def test_cli_dry_run_without_the_hash_key_fails_naming_the_setting(
    prefect_harness, tmp_path, monkeypatch
) -> None:
    """A spec with a hash rule and no key: refused before any work, as a run is."""
    monkeypatch.delenv("CIVICFLOW_HASH_KEY", raising=False)
    monkeypatch.setenv("CIVICFLOW_PROJECT_DIR", str(PROJECT))
    monkeypatch.setenv("CIVICFLOW_VAR_DIR", str(tmp_path / "var"))
    result = runner.invoke(app, ["publish", "parking_citations", "--dry-run"])
    assert result.exit_code == 1, result.output
    assert "parking_citations: DRY RUN FAILED: privacy:" in result.output
    assert "CIVICFLOW_HASH_KEY" in result.output
    assert not (tmp_path / "var" / "raw" / "parking_citations").exists()
