"""Pipeline level, over a real Datasette portal: schema drift and bad-row quarantine
decide what reaches the portal (the rules themselves: test_quality_drift/quarantine)."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from civicflow.ledger import Ledger
from civicflow.pipeline import run_dataset
from civicflow.settings import Settings
from civicflow.spec import DatasetSpec, find_dataset
from civicflow.spec.models import BadRowsSpec, PortalTarget
from tests.fixtures.portal import DatasetteServer, point_civicflow_at, unique_table

PROJECT = Path(__file__).resolve().parents[1]
CSV = PROJECT / "data" / "la311_service_requests" / "MyLA311_Service_Request_Data_2017_Subset.csv"
DATASET = "la311_service_requests"


@pytest.fixture
def settings(datasette_server: DatasetteServer, tmp_path: Path, monkeypatch) -> Settings:
    return point_civicflow_at(datasette_server, tmp_path / "var", monkeypatch)


def _spec(settings: Settings, **update: object) -> DatasetSpec:
    spec = find_dataset(settings.datasets_dir, DATASET)
    table = PortalTarget(kind="datasette", table=unique_table("rows"))
    return spec.model_copy(update={"portal": table, **update})


def _variant(tmp_path: Path, mutate: Callable[[pd.DataFrame], pd.DataFrame]) -> Path:
    frame = pd.read_csv(CSV, dtype=str, keep_default_na=False)
    path = tmp_path / "variant.csv"
    mutate(frame).to_csv(path, index=False)
    return path


def _bad_district(count: int) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def mutate(frame: pd.DataFrame) -> pd.DataFrame:
        frame.loc[frame.index[:: len(frame) // count][:count], "CD"] = "thirteen"
        return frame

    return mutate


def _columns(server: DatasetteServer, table: str) -> list[str]:
    return [r["name"] for r in server.query(f"select name from pragma_table_info('{table}')")]


def test_a_few_bad_rows_are_quarantined_and_the_rest_published(
    settings: Settings, datasette_server: DatasetteServer, tmp_path: Path
) -> None:
    spec = _spec(settings, on_bad_rows=BadRowsSpec(action="quarantine", max_share=0.01))
    out = run_dataset(settings, DATASET, _variant(tmp_path, _bad_district(50)), spec=spec)
    assert out.outcome == "published", out.reason
    assert "50 bad rows quarantined" in out.reason
    assert datasette_server.row_count(spec.table) == 9999 - 50
    assert out.record.rows_quarantined == 50
    assert Ledger(settings.ledger_path).last(DATASET).rows_quarantined == 50
    held = sorted((settings.var_dir / "quarantine" / DATASET).glob("*.csv"))
    assert len(held) == 1 and held[0].stat().st_mode & 0o077 == 0
    with held[0].open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 50
    assert all("cd" in r["reasons"] and r["CD"] == "thirteen" for r in rows)
    # the public reason counts rows; it never quotes the bad value
    assert "thirteen" not in out.reason


def test_too_many_bad_rows_reject_the_run_and_leave_the_portal_untouched(
    settings: Settings, datasette_server: DatasetteServer, tmp_path: Path
) -> None:
    spec = _spec(settings, on_bad_rows=BadRowsSpec(action="quarantine", max_share=0.01))
    first = run_dataset(settings, DATASET, CSV, spec=spec)
    assert first.outcome == "published", first.reason
    before = datasette_server.query(f"select count(*) as n, max(cd) as m from {spec.table}")
    out = run_dataset(settings, DATASET, _variant(tmp_path, _bad_district(500)), spec=spec)
    assert out.outcome == "rejected"
    assert "above on_bad_rows.max_share" in out.reason
    assert datasette_server.query(f"select count(*) as n, max(cd) as m from {spec.table}") == before
    assert not list((settings.var_dir / "quarantine").glob("*/*.csv"))


def test_one_bad_row_still_rejects_by_default(
    settings: Settings, datasette_server: DatasetteServer, tmp_path: Path
) -> None:
    spec = _spec(settings)
    out = run_dataset(settings, DATASET, _variant(tmp_path, _bad_district(1)), spec=spec)
    assert out.outcome == "rejected"
    assert spec.table not in datasette_server.query("select name from sqlite_master")


def _extra_column(frame: pd.DataFrame) -> pd.DataFrame:
    frame["CaseWorker"] = "someone"
    return frame


def _renamed_column(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.rename(columns={"Status": "RequestStatus"})


@pytest.mark.parametrize(
    ("mutate", "setting", "outcome"),
    [
        (_extra_column, "fail", "rejected"),
        (_extra_column, "ignore_new", "published"),
        (_renamed_column, "fail", "rejected"),
        (_renamed_column, "ignore_new", "rejected"),
    ],
)
def test_schema_drift_decides_before_any_check(
    settings: Settings,
    datasette_server: DatasetteServer,
    tmp_path: Path,
    mutate: Callable[[pd.DataFrame], pd.DataFrame],
    setting: str,
    outcome: str,
) -> None:
    spec = _spec(settings, on_schema_change=setting)
    out = run_dataset(settings, DATASET, _variant(tmp_path, mutate), spec=spec)
    assert out.outcome == outcome, out.reason
    tables = [r["name"] for r in datasette_server.query("select name from sqlite_master")]
    if outcome == "rejected":
        assert "schema drift" in out.reason
        assert spec.table not in tables
        # the steward's private report shows the diff
        assert out.report_path is not None and "schema_drift" in out.report_path.read_text()
    else:
        assert "casewor" not in " ".join(_columns(datasette_server, spec.table)).lower()
        assert "schema drift reported" in out.report_path.read_text()  # type: ignore[union-attr]
    # a new column's header is never in the public reason (it could be data)
    assert "CaseWorker" not in out.reason
