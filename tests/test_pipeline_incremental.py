"""Incremental runs end to end: a real PostgreSQL source, the real Datasette portal.

Only rows changed since the last good run are extracted and upserted; a rejected run
never advances the watermark; ``full`` reads everything again (also as
``civicflow publish ID --full``, through the real Prefect flow); nothing new writes nothing.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from civicflow import published
from civicflow.cli import app
from civicflow.ledger import Ledger
from civicflow.pipeline import run_dataset
from civicflow.settings import Settings
from civicflow.spec import DatasetSpec, find_dataset
from civicflow.spec.models import PortalTarget
from tests.fixtures.portal import PROJECT_DIR, DatasetteServer, point_civicflow_at, unique_table
from tests.fixtures.postgres import Database

DATASET = "code_enforcement_case_status"  # the bundled incremental PostgreSQL example
ROWS = 300

SCHEMA = """
CREATE TABLE case_status (
    case_number text PRIMARY KEY,
    date_opened date NOT NULL,
    date_closed date,
    status text NOT NULL,
    violation_type text NOT NULL,
    council_district smallint NOT NULL,
    is_open boolean NOT NULL,
    updated_at timestamptz NOT NULL
);
INSERT INTO case_status
SELECT format('CE-2025-%s', lpad(i::text, 6, '0')),
       date '2025-01-01' + (i % 150),
       NULL, 'Open', 'Substandard Housing', 1 + i % 15, true,
       timestamptz '2025-06-01 16:00:00+00' + i * interval '1 minute'
FROM generate_series(1, {rows}) AS i;
"""


@pytest.fixture
def setup(
    postgres_db: Database,
    datasette_server: DatasetteServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[Settings, DatasetSpec, Database]]:
    with postgres_db.admin() as conn:
        conn.execute(SCHEMA.format(rows=ROWS))
        conn.execute("GRANT SELECT ON case_status TO PUBLIC")
    monkeypatch.setenv("CIVICFLOW_EXAMPLE_PG_URL", postgres_db.url)
    monkeypatch.setenv("CIVICFLOW_EXAMPLE_PG_PASSWORD", postgres_db.password)
    settings = point_civicflow_at(datasette_server, tmp_path / "var", monkeypatch)
    spec = find_dataset(settings.datasets_dir, DATASET)
    target = PortalTarget(kind="datasette", table=unique_table("incr"))
    yield settings, spec.model_copy(update={"portal": target}), postgres_db


def _sql(db: Database, statement: str) -> None:
    with db.admin() as conn:
        conn.execute(statement)


def _live(server: DatasetteServer, table: str) -> dict[str, str]:
    rows = server.query(f"select case_number, status from {table}")
    return {r["case_number"]: r["status"] for r in rows}


def test_only_changed_rows_are_extracted_and_upserted(
    setup: tuple[Settings, DatasetSpec, Database], datasette_server: DatasetteServer
) -> None:
    settings, spec, db = setup
    first = run_dataset(settings, DATASET, spec=spec)
    assert first.outcome == "published", first.reason
    assert first.record.rows_in == ROWS
    ledger = Ledger(settings.ledger_path)
    mark = ledger.watermark(DATASET, "updated_at")
    assert mark is not None and mark.startswith("2025-06-01T")

    _sql(
        db,
        """UPDATE case_status SET status = 'Closed', date_closed = date '2025-12-01',
               is_open = false, updated_at = now()
           WHERE case_number IN ('CE-2025-000003', 'CE-2025-000007', 'CE-2025-000011');
           INSERT INTO case_status VALUES
             ('CE-2025-900001', '2025-12-02', NULL, 'Open', 'Illegal Dumping', 4, true, now()),
             ('CE-2025-900002', '2025-12-02', NULL, 'Open', 'Illegal Dumping', 5, true, now());""",
    )
    second = run_dataset(settings, DATASET, spec=spec)
    assert second.outcome == "published", second.reason
    assert second.record.rows_in == 5  # the three changed and the two new cases only
    assert "changed rows only" in second.reason
    live = _live(datasette_server, spec.table)
    assert len(live) == ROWS + 2
    assert [live[f"CE-2025-{n:06d}"] for n in (3, 7, 11)] == ["Closed"] * 3
    assert live["CE-2025-000004"] == "Open" and "CE-2025-900002" in live
    assert ledger.watermark(DATASET, "updated_at") > mark  # type: ignore[operator]
    # the Parquet copy (what the scorecard reads) holds the whole table after the upserts
    copy = published.latest(settings, DATASET)
    assert copy is not None and copy.version == second.record.portal_version
    assert copy.rows == ROWS + 2

    version = second.record.portal_version
    third = run_dataset(settings, DATASET, spec=spec)
    assert third.outcome == "unchanged", third.reason
    # Watermarks keep whole seconds, so rows changed in the watermark's own second may be
    # read again (at least once, never skipped); upserting them again changes nothing.
    assert third.record.portal_version == version


def test_a_rejected_run_does_not_advance_the_watermark(
    setup: tuple[Settings, DatasetSpec, Database], datasette_server: DatasetteServer
) -> None:
    settings, spec, db = setup
    assert run_dataset(settings, DATASET, spec=spec).outcome == "published"
    ledger = Ledger(settings.ledger_path)
    mark = ledger.watermark(DATASET, "updated_at")

    _sql(
        db,
        "UPDATE case_status SET council_district = 99, updated_at = now() WHERE case_number = 'CE-2025-000002'",
    )
    rejected = run_dataset(settings, DATASET, spec=spec)
    assert rejected.outcome == "rejected"
    assert ledger.watermark(DATASET, "updated_at") == mark

    _sql(
        db,
        "UPDATE case_status SET council_district = 9, status = 'Closed' WHERE case_number = 'CE-2025-000002'",
    )
    fixed = run_dataset(settings, DATASET, spec=spec)
    assert fixed.outcome == "published", fixed.reason
    assert fixed.record.rows_in == 1  # the row the rejected run saw comes again
    assert _live(datasette_server, spec.table)["CE-2025-000002"] == "Closed"


def test_full_reads_every_row_and_replaces_the_table(
    setup: tuple[Settings, DatasetSpec, Database], datasette_server: DatasetteServer
) -> None:
    settings, spec, db = setup
    assert run_dataset(settings, DATASET, spec=spec).outcome == "published"
    # a deleted row is invisible to the cursor; a full refresh removes it
    _sql(db, "DELETE FROM case_status WHERE case_number = 'CE-2025-000001'")
    incremental = run_dataset(settings, DATASET, spec=spec)
    assert incremental.outcome == "unchanged", incremental.reason
    assert "CE-2025-000001" in _live(datasette_server, spec.table)
    full = run_dataset(settings, DATASET, spec=spec, full=True)
    assert full.outcome == "published", full.reason
    assert full.record.rows_in == ROWS - 1
    assert "CE-2025-000001" not in _live(datasette_server, spec.table)


def test_publish_full_on_the_command_line_reads_the_whole_source_again(
    setup: tuple[Settings, DatasetSpec, Database],
    datasette_server: DatasetteServer,
    prefect_harness: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings, spec, db = setup
    # The bundled spec, publishing to this test's own portal table.
    project = tmp_path / "project"
    (project / "expectations").mkdir(parents=True)
    (project / "datasets").mkdir()
    shutil.copy(PROJECT_DIR / "pyproject.toml", project / "pyproject.toml")
    suite = f"{spec.expectation_suite}.json"
    shutil.copy(PROJECT_DIR / "expectations" / suite, project / "expectations" / suite)
    data = yaml.safe_load((PROJECT_DIR / "datasets" / f"{DATASET}.yaml").read_text())
    data["portal"] = {"kind": "datasette", "table": spec.table}
    (project / "datasets" / f"{DATASET}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    monkeypatch.setenv("CIVICFLOW_PROJECT_DIR", str(project))
    ledger = Ledger(settings.ledger_path)
    runner = CliRunner()
    umask = os.umask(0o077)
    os.umask(umask)

    def publish(*args: str) -> tuple[str, int | None]:
        try:
            result = runner.invoke(app, ["publish", DATASET, *args])
        finally:
            os.umask(umask)  # the flow makes the process private (077): undone for the session
        assert result.exit_code == 0, result.output
        last = ledger.last(DATASET)
        assert last is not None
        return result.output, last.rows_in

    output, rows_in = publish()
    assert f"{DATASET}: PUBLISHED" in output and rows_in == ROWS
    # A deleted row is invisible to the cursor; one changed row is all an incremental reads.
    _sql(
        db,
        """DELETE FROM case_status WHERE case_number = 'CE-2025-000001';
           UPDATE case_status SET status = 'Closed', is_open = false, updated_at = now()
           WHERE case_number = 'CE-2025-000005';""",
    )
    output, rows_in = publish()
    assert f"{DATASET}: PUBLISHED" in output and rows_in == 1
    live = _live(datasette_server, spec.table)
    assert live["CE-2025-000005"] == "Closed" and "CE-2025-000001" in live

    output, rows_in = publish("--full")
    assert f"{DATASET}: PUBLISHED" in output and rows_in == ROWS - 1
    live = _live(datasette_server, spec.table)
    assert len(live) == ROWS - 1 and "CE-2025-000001" not in live
    assert live["CE-2025-000005"] == "Closed"
