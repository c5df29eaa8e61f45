"""Rollback over the REAL Datasette portal: publish v1 then v2 through the pipeline, roll
back, and the portal holds v1's rows exactly again, recorded in the ledger; refusals
(no kept version, unknown version, a file changed on disk, the live version) write nothing."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from civicflow import published, rollback
from civicflow.cli import app
from civicflow.ledger import Ledger
from civicflow.pipeline import run_dataset
from civicflow.portals import get_portal
from civicflow.settings import Settings, load_settings

PROJECT = Path(__file__).resolve().parents[1]
DATASET = "lax_passenger_traffic"
CSV = PROJECT / "data" / DATASET / "lax_passenger_traffic_by_terminal.csv"
runner = CliRunner()


@pytest.fixture
def lax(datasette_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """A project copy whose LAX dataset publishes to a table of this test's own."""
    root = tmp_path / "project"
    for name in ("datasets", "expectations"):
        shutil.copytree(PROJECT / name, root / name)
    shutil.copy(PROJECT / "pyproject.toml", root / "pyproject.toml")
    spec_path = root / "datasets" / f"{DATASET}.yaml"
    spec = yaml.safe_load(spec_path.read_text())
    spec["portal"] = {"table": f"rollback_{uuid.uuid4().hex[:8]}"}
    spec["source"]["path"] = str(CSV)
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    for key, value in datasette_server.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("CIVICFLOW_PROJECT_DIR", str(root))
    monkeypatch.setenv("CIVICFLOW_VAR_DIR", str(tmp_path / "var"))
    return load_settings()


def table_of(settings: Settings) -> str:
    from civicflow.spec import find_dataset

    return find_dataset(settings.datasets_dir, DATASET).table


def all_rows(server: Any, table: str) -> list[dict[str, Any]]:
    """Every live row as a resident reads it (the query API, 1,000 rows a page)."""
    rows: list[dict[str, Any]] = []
    while True:
        page = server.query(f'select * from "{table}" order by rowid limit 1000 offset {len(rows)}')
        rows += page
        if len(page) < 1000:
            return rows


def publish_v2(settings: Settings, tmp_path: Path) -> None:
    """v2: other passenger counts in the first 100 rows and the last 30 rows gone."""
    frame = pd.read_csv(CSV, dtype=str, keep_default_na=False)
    frame.loc[:99, "Passenger_Count"] = (frame.loc[:99, "Passenger_Count"].astype(int) + 7).astype(
        str
    )
    path = tmp_path / "v2.csv"
    frame.iloc[:-30].to_csv(path, index=False)
    outcome = run_dataset(settings, DATASET, source_path=path)
    assert outcome.outcome == "published", outcome.reason


@pytest.fixture
def two_versions(lax: Settings, datasette_server: Any, tmp_path: Path) -> dict[str, Any]:
    first = run_dataset(lax, DATASET)
    assert first.outcome == "published", first.reason
    table = table_of(lax)
    v1_rows = all_rows(datasette_server, table)
    v1 = get_portal("datasette", lax).current_version(table)
    publish_v2(lax, tmp_path)
    v2 = get_portal("datasette", lax).current_version(table)
    assert v1 is not None and v2 is not None and v1.version != v2.version
    return {"table": table, "v1": v1, "v2": v2, "v1_rows": v1_rows}


def test_rollback_restores_the_previous_version_exactly(
    lax: Settings, datasette_server: Any, two_versions: dict[str, Any]
) -> None:
    table, v1, v2 = two_versions["table"], two_versions["v1"], two_versions["v2"]
    v2_rows = all_rows(datasette_server, table)
    assert len(v2_rows) == len(two_versions["v1_rows"]) - 30 == 3600

    listed = runner.invoke(app, ["versions", DATASET])
    assert listed.exit_code == 0, listed.output
    lines = [line for line in listed.output.splitlines() if v1.version[:12] in line]
    assert len(lines) == 1 and "3,630" in lines[0] and " ok " in lines[0]
    assert f"* {v2.version[:12]}" in listed.output  # newest first, marked live

    done = runner.invoke(app, ["rollback", DATASET])  # default: the version before the live one
    assert done.exit_code == 0, done.output
    kept_v1 = next(m for m in published.versions(lax, DATASET) if m.version == v1.version)
    assert f"ROLLED BACK: rolled back to version {v1.version[:12]}… (published " in done.output

    # every row, value for value, in the same order, and the same portal version id
    assert all_rows(datasette_server, table) == two_versions["v1_rows"]
    live = get_portal("datasette", lax).current_version(table)
    assert live is not None and live.version == v1.version and live.serial != v1.serial

    record = Ledger(lax.ledger_path).last(DATASET)
    assert record is not None and record.outcome == "published"
    assert record.reason.startswith(f"rolled back to version {v1.version[:12]}… (published ")
    assert record.portal_version == v1.version and record.rows_out == 3630
    assert record.report_path is not None  # the checks of the run that published v1
    latest = published.latest(lax, DATASET)
    assert latest is not None and latest.version == v1.version
    assert latest.run_id == kept_v1.run_id and latest.published_at == live.published_at

    # rolling back again restores v2 (now the version live before the current one)
    again = rollback.rollback(lax, DATASET)
    assert again.restored.version == v2.version
    assert all_rows(datasette_server, table) == v2_rows


def test_rollback_to_a_named_version_and_refusals(
    lax: Settings, datasette_server: Any, two_versions: dict[str, Any]
) -> None:
    table, v1, v2 = two_versions["table"], two_versions["v1"], two_versions["v2"]
    runs_before = len(Ledger(lax.ledger_path).runs(DATASET))

    def refused(*args: str) -> str:
        result = runner.invoke(app, ["rollback", DATASET, *args])
        assert result.exit_code == 1, result.output
        return result.output

    assert "no kept version 'abcdef12'" in refused("--to", "abcdef12")
    assert f"{v1.version[:12]}…" in refused("--to", "abcdef12")  # lists what is kept
    assert "already live" in refused("--to", v2.version[:8])
    assert "at least 6 characters" in refused("--to", v1.version[:3])

    # v1's rows altered on disk: refused, naming the file, not publishing them
    kept_v1 = next(m for m in published.versions(lax, DATASET) if m.version == v1.version)
    rows = pq.read_table(kept_v1.path).to_pandas()
    rows.loc[0, "passenger_count"] = 999_999
    pq.write_table(pa.Table.from_pandas(rows, preserve_index=False), kept_v1.path)
    out = refused("--to", v1.version[:10])
    assert "rows changed on disk" in out and str(kept_v1.path) in out
    listed = runner.invoke(app, ["versions", DATASET])
    assert "CHANGED" in listed.output

    # nothing was written or recorded by a refusal
    live = get_portal("datasette", lax).current_version(table)
    assert live is not None and live.version == v2.version
    assert len(Ledger(lax.ledger_path).runs(DATASET)) == runs_before


def test_no_kept_versions_is_refused(lax: Settings) -> None:
    with pytest.raises(rollback.RollbackRefused, match="no kept versions to roll back to"):
        rollback.rollback(lax, DATASET)
    unknown = runner.invoke(app, ["rollback", "no_such_dataset"])
    assert unknown.exit_code == 2 and "no dataset 'no_such_dataset'" in unknown.output


def test_a_rollback_started_before_another_publish_is_refused_by_the_swap(
    lax: Settings, datasette_server: Any, two_versions: dict[str, Any]
) -> None:
    """The republish is compare-and-swap on the version live when the rollback began: if
    another run published since (here: the rollback read v1 as live, v2 went live after),
    the portal refuses it and the live table stays as it is."""
    from civicflow.portals import PortalConflict
    from civicflow.spec import find_dataset

    table, v1, v2 = two_versions["table"], two_versions["v1"], two_versions["v2"]
    spec = find_dataset(lax.datasets_dir, DATASET)
    kept_v1 = next(m for m in published.versions(lax, DATASET) if m.version == v1.version)
    v2_rows = all_rows(datasette_server, table)
    with pytest.raises(PortalConflict, match="live version changed"):
        rollback._republish(lax, spec, kept_v1, "20260101T000000Z-000000", v1)
    live = get_portal("datasette", lax).current_version(table)
    assert live is not None and live.version == v2.version
    assert all_rows(datasette_server, table) == v2_rows


def test_a_portal_refusal_is_recorded_as_a_failed_run(
    lax: Settings, datasette_server: Any, two_versions: dict[str, Any], monkeypatch: Any
) -> None:
    """A rollback the portal refuses (here: a wrong signing secret, so its token is
    rejected) is in the ledger as failed, names no secret, and changes nothing."""
    from civicflow.portals import server

    wrong = "not-the-portal-secret-" + uuid.uuid4().hex
    monkeypatch.setenv(server.SECRET_ENV, wrong)
    table, v2 = two_versions["table"], two_versions["v2"]
    result = runner.invoke(app, ["rollback", DATASET])
    assert result.exit_code == 1, result.output
    assert "ROLLBACK FAILED: portal:" in result.output and wrong not in result.output
    record = Ledger(lax.ledger_path).last(DATASET)
    assert record is not None and record.outcome == "failed"
    assert record.reason.startswith("rollback failed: portal: ") and wrong not in record.reason
    assert Ledger(lax.ledger_path).unfinished(DATASET) == []
    live = get_portal("datasette", lax).current_version(table)
    assert live is not None and live.version == v2.version
    status = runner.invoke(app, ["status", "--json"])
    assert next(d for d in json.loads(status.output) if d["dataset_id"] == DATASET)["failing"]
