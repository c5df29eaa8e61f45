"""A KPI that cannot be computed shows "no data" with the reason, never stops the others,
and never shows a value from an earlier period or version as current."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from civicflow import published
from civicflow.metrics.compile import compile_kpi
from civicflow.metrics.compute import KpiResult, compute_all
from civicflow.metrics.models import Kpi
from civicflow.settings import Settings
from civicflow.spec import load_all
from tests.test_metrics_kpis import publish_parquet

SPEC = """
id: requests
title: Test requests
description: Synthetic service requests for metric tests.
department: Test Department
steward: {name: Tester, email: t@lacity.example}
license: CC0-1.0
update_frequency: daily
category: Tests
source: {kind: csv, path: data/requests.csv, timestamp_formats: ["%Y-%m-%d %H:%M:%S"]}
expectation_suite: null
fields:
  - {name: sr, type: string, description: Request number.}
  - {name: created, type: datetime, description: When the request was made.}
  - {name: closed, type: datetime, description: When the request was closed.}
  - {name: kind, type: string, description: Type of request.}
  - {name: cd, type: integer, description: Council district.}
"""


def _rows() -> pd.DataFrame:
    """Day 1 and 2: Bulky Items; day 3: only Graffiti (so Bulky has no rows in the latest day)."""
    rows = []
    for day, kind, count in (
        ("2024-01-01", "Bulky Items", 15),
        ("2024-01-02", "Bulky Items", 24),
        ("2024-01-03", "Graffiti", 20),
    ):
        for i in range(count):
            hours = 6 * (i + 1)
            created = pd.Timestamp(f"{day} 08:00:00")
            closed = "" if i % 5 == 0 else str(created + pd.Timedelta(hours=hours))
            rows.append(
                {
                    "sr": f"{day}-{kind[:3]}-{i}",
                    "created": str(created),
                    "closed": closed,
                    "kind": kind,
                    "cd": str(1 + i % 3),
                }
            )
    return pd.DataFrame(rows)


@pytest.fixture
def world(tmp_path: Path) -> tuple[Settings, pd.DataFrame]:
    (tmp_path / "datasets").mkdir()
    (tmp_path / "datasets" / "requests.yaml").write_text(SPEC)
    (tmp_path / "data").mkdir()
    frame = _rows()
    frame.to_csv(tmp_path / "data" / "requests.csv", index=False)
    settings = Settings(project_dir=tmp_path, var_dir=tmp_path / "var")
    publish_parquet(settings, "requests")
    return settings, frame


def kpi(kpi_id: str, **extra: Any) -> Kpi:
    data = {
        "id": kpi_id,
        "title": kpi_id.replace("_", " "),
        "description": "A test KPI over synthetic requests.",
        "department": "Test Department",
        "owner": {"name": "Tester", "email": "t@lacity.example"},
        "dataset": "requests",
        "period": {"column": "created", "grain": "day"},
        "unit": "requests",
        "measure": {"kind": "count"},
    }
    return Kpi.model_validate(data | extra)


def run(settings: Settings, *kpis: Kpi) -> dict[str, KpiResult]:
    return {
        r.kpi.id: r
        for r in compute_all(settings, {k.id: k for k in kpis}, load_all(settings.datasets_dir))
    }


def test_empty_latest_period_is_no_data_not_yesterdays_value(world) -> None:
    settings, frame = world
    bulky = kpi(
        "bulky_count",
        filters=[{"column": "kind", "op": "eq", "value": "Bulky Items"}],
        dimensions=[{"column": "cd", "title": "By CD"}],
    )
    total = kpi("total")
    results = run(settings, bulky, total)
    r = results["bulky_count"]
    assert r.status == "no_data"
    assert (
        r.reason == "no rows for 2024-01-03 (the latest period in requests) after the KPI's filters"
    )
    assert r.current is None
    # the trend still shows the earlier days, for context, but nothing is current
    assert [(p.period.isoformat(), p.value) for p in r.series] == [
        ("2024-01-01", 15.0),
        ("2024-01-02", 24.0),
    ]
    assert all(b.groups == [] for b in r.breakdowns)
    # and the other KPI is unaffected
    assert results["total"].status == "no_target"
    assert results["total"].current is not None and results["total"].current.value == float(
        (frame.created.str[:10] == "2024-01-03").sum()
    )


def test_missing_dataset_sql_error_and_broken_parquet_each_stay_local(world) -> None:
    settings, _ = world
    missing = kpi("missing", dataset="nowhere")
    bad_sql = kpi(
        "bad_sql",
        measure=None,
        sql="SELECT created AS period, NULL AS dimension, NULL AS group_key, NULL AS group_label, 1/0 AS value, count(*) AS n FROM requests GROUP BY ALL HAVING no_such_column > 0",
    )
    fine = kpi("fine")
    results = run(settings, missing, bad_sql, fine)
    assert results["missing"].status == "no_data"
    assert results["missing"].reason == "dataset nowhere is not in the catalog (datasets/)"
    assert results["bad_sql"].status == "no_data"
    assert results["bad_sql"].reason == (
        "query of KPI bad_sql failed (BinderException); the full error is in the scorecard log"
    )
    assert "no_such_column" in (results["bad_sql"].detail or "")
    assert results["fine"].status == "no_target"

    manifest = published.latest(settings, "requests")
    assert manifest is not None
    os.chmod(manifest.path, 0o644)
    with manifest.path.open("ab") as fh:  # the published file no longer matches its manifest
        fh.write(b"tampered")
    r = run(settings, fine)["fine"]
    assert r.status == "no_data" and "does not match its manifest's sha256" in (r.reason or "")
    manifest.path.unlink()
    r = run(settings, fine)["fine"]
    assert r.status == "no_data" and "is missing" in (r.reason or "")


def test_never_published_dataset_is_no_data(tmp_path: Path) -> None:
    (tmp_path / "datasets").mkdir()
    (tmp_path / "datasets" / "requests.yaml").write_text(SPEC)
    settings = Settings(project_dir=tmp_path, var_dir=tmp_path / "var")
    r = run(settings, kpi("total"))["total"]
    assert r.status == "no_data" and r.reason == "dataset requests has never been published"


def test_small_counts_are_suppressed_and_target_status(world) -> None:
    settings, frame = world
    graffiti = kpi(
        "graffiti_share_closed_in_a_day",
        filters=[{"column": "kind", "op": "eq", "value": "Graffiti"}],
        measure={
            "kind": "share_within",
            "expression": "date_diff('second', created, closed) / 86400.0",
            "threshold": 1,
        },
        dimensions=[{"column": "cd", "title": "By CD", "equity": True}],
        unit="%",
        target={
            "value": 50,
            "direction": "higher_is_better",
            "source": "Test target for the unit test.",
        },
    )
    r = run(settings, graffiti)["graffiti_share_closed_in_a_day"]
    g = frame[frame.kind == "Graffiti"].copy()
    days = (pd.to_datetime(g.closed) - pd.to_datetime(g.created)).dt.total_seconds() / 86400
    expected = 100.0 * float((days <= 1).mean())  # unclosed requests count as outside the target
    assert r.current is not None and r.current.value == pytest.approx(expected)
    assert r.status == ("on_track" if expected >= 50 else "off_track")
    # 20 graffiti requests over 3 districts: every district has fewer than 11, so all are suppressed
    (by_cd,) = r.breakdowns
    assert len(by_cd.groups) == 3 and all(
        grp.suppressed and grp.value is None for grp in by_cd.groups
    )
    # with the limit at 1, the same groups show their values
    r1 = run(settings, graffiti.model_copy(update={"min_records": 1}))[
        "graffiti_share_closed_in_a_day"
    ]
    assert all(not grp.suppressed and grp.value is not None for grp in r1.breakdowns[0].groups)


def test_raw_sql_kpi_matches_pandas(world) -> None:
    settings, frame = world
    raw = kpi(
        "closed_share_raw",
        measure=None,
        unit="%",
        sql=(
            "SELECT CAST(date_trunc('day', created) AS DATE) AS period, NULL AS dimension, NULL AS group_key, NULL AS group_label,\n"
            "       100.0 * avg(CASE WHEN closed IS NOT NULL THEN 1 ELSE 0 END) AS value, count(*) AS n\n"
            "FROM requests GROUP BY 1"
        ),
    )
    r = run(settings, raw)["closed_share_raw"]
    expected = (
        frame.assign(day=frame.created.str[:10])
        .groupby("day")
        .closed.apply(lambda s: 100.0 * float((s != "").mean()))
    )
    assert {p.period.isoformat(): p.value for p in r.series} == pytest.approx(expected.to_dict())


def test_filter_values_are_parameters_not_sql_text() -> None:
    evil = "x'; DROP TABLE requests; --"
    compiled = compile_kpi(
        kpi(
            "kind_filter",
            filters=[
                {"column": "kind", "op": "in", "values": [evil, "Graffiti"]},
                {"column": "kind", "op": "ne", "value": evil},
            ],
        )
    )
    assert evil not in compiled.sql
    assert list(compiled.params.values()) == [evil, "Graffiti", evil]
    assert '"kind" IN ($p0, $p1)' in compiled.sql and '"kind" IS DISTINCT FROM $p2' in compiled.sql


def _raw_sql_kpi(kpi_id: str, source: str) -> Kpi:
    return kpi(
        kpi_id,
        measure=None,
        sql=(
            "SELECT DATE '2024-01-03' AS period, NULL AS dimension, NULL AS group_key, "
            f"NULL AS group_label, count(*) AS value, count(*) AS n FROM {source}"
        ),
    )


def test_kpi_sql_cannot_read_any_file_only_the_published_tables(world) -> None:
    settings, _ = world
    # the run's own raw copy is there (extract keeps it), and one more private file
    assert list((settings.raw_dir / "requests").glob("*.csv"))
    raw = settings.raw_dir / "requests" / "run-1.csv"
    raw.write_text("sr,name\n1,Maria Lopez\n")
    (raw.parent / "run-1.parquet").write_bytes(b"PAR1")
    manifest = published.latest(settings, "requests")
    assert manifest is not None
    readers = {
        "reads_csv": f"read_csv('{raw}')",
        "reads_file_by_name": f"'{raw}'",
        "reads_text": f"read_text('{raw}')",
        "reads_parquet": f"read_parquet('{raw.parent / 'run-1.parquet'}')",
        "globs_var": f"glob('{settings.var_dir}/**')",
        "attaches_ledger": f"sqlite_scan('{settings.ledger_path}', 'runs')",
    }
    kpis = [_raw_sql_kpi(kpi_id, source) for kpi_id, source in readers.items()]
    allowed = _raw_sql_kpi("reads_the_published_table", "requests")
    results = run(settings, *kpis, allowed)
    for kpi_id in readers:
        r = results[kpi_id]
        assert r.status == "no_data" and r.current is None, kpi_id
        assert r.reason == (
            f"refused: the SQL of KPI {kpi_id} reads or writes a file; a KPI may read only "
            "the published datasets (tables named by dataset id)"
        ), (kpi_id, r.reason, r.detail)
        assert "Maria" not in (r.reason or "") + (r.detail or "")
    # the sandbox leaves the published tables readable, in the same connection
    ok = results["reads_the_published_table"]
    assert ok.status == "no_target" and ok.current is not None
    assert ok.current.value == manifest.rows


def test_query_error_reason_never_quotes_a_value(world) -> None:
    settings, _ = world
    cast = kpi(
        "casts_kind",
        measure=None,
        sql=(
            "SELECT CAST(created AS DATE) AS period, NULL AS dimension, NULL AS group_key, "
            "NULL AS group_label, CAST(kind AS INTEGER) AS value, 1 AS n FROM requests"
        ),
    )
    r = run(settings, cast)["casts_kind"]
    assert r.status == "no_data"
    assert r.reason == (
        "query of KPI casts_kind failed (ConversionException); the full error is in the scorecard log"
    )
    # the engine's message names the value: it stays in the private detail (the log)
    assert "Bulky" in (r.detail or "") or "Graffiti" in (r.detail or "")


def test_kpi_log_line_rounds_to_the_kpis_decimals(world) -> None:
    from civicflow.metrics.scorecard import kpi_log_line

    settings, _ = world
    mean = kpi(
        "mean_days",
        measure={"kind": "mean", "expression": "date_diff('second', created, closed) / 86400.0"},
        unit="days",
        decimals=1,
    )
    r = run(settings, mean)["mean_days"]
    assert r.current is not None and r.current.value is not None
    assert len(repr(r.current.value).split(".")[1]) > 1  # the raw value has many decimals
    assert kpi_log_line(r) == f"KPI mean_days: {r.current.value:.1f} days (no target)"


@pytest.fixture
def live_feed(tmp_path: Path) -> Settings:
    """A daily feed read at the end of day 2: day 1 is all closed, day 2 mostly open."""
    (tmp_path / "datasets").mkdir()
    (tmp_path / "datasets" / "requests.yaml").write_text(SPEC)
    (tmp_path / "data").mkdir()
    rows = []
    for day, count, open_every in (("2024-01-01", 20, 0), ("2024-01-02", 20, 5)):
        for i in range(count):
            created = pd.Timestamp(f"{day} 08:00:00")
            # day 2: only every 5th request is closed yet (and those were the fast ones)
            still_open = open_every and i % open_every != 0
            hours = 2 if day == "2024-01-02" else 24 * (1 + i % 9)
            rows.append(
                {
                    "sr": f"{day}-{i}",
                    "created": str(created),
                    "closed": "" if still_open else str(created + pd.Timedelta(hours=hours)),
                    "kind": "Bulky Items",
                    "cd": str(1 + i % 2),
                }
            )
    pd.DataFrame(rows).to_csv(tmp_path / "data" / "requests.csv", index=False)
    settings = Settings(project_dir=tmp_path, var_dir=tmp_path / "var")
    publish_parquet(settings, "requests")
    return settings


def _days_to_close(**extra: Any) -> Kpi:
    return kpi(
        "median_days_to_close",
        measure={"kind": "median", "expression": "date_diff('second', created, closed) / 86400.0"},
        filters=[{"column": "closed", "op": "not_null"}],
        unit="days",
        target={
            "value": 5,
            "direction": "lower_is_better",
            "source": "Test target for the unit test.",
        },
        min_records=1,
        **extra,
    )


def test_a_mostly_open_period_is_provisional_not_on_track(live_feed) -> None:
    from civicflow.metrics import scorecard as sc
    from civicflow.metrics.site import _kpi_card

    still_open = {"where": [{"column": "closed", "op": "is_null"}], "among": []}
    r = run(live_feed, _days_to_close(still_open=still_open))["median_days_to_close"]
    # counted alone, the 4 closed requests of day 2 (2 hours each) look on track
    assert r.current is not None and r.current.value == pytest.approx(2 / 24)
    assert r.status == "provisional"
    assert r.open_share == pytest.approx(80.0)
    assert [(p.period.isoformat(), p.open_share) for p in r.series] == [
        ("2024-01-01", 0.0),
        ("2024-01-02", 80.0),
    ]
    assert [r.is_provisional(p) for p in r.series] == [False, True]
    # every public surface shows the share still open and the mark
    card = _kpi_card(r)
    assert 'data-status="provisional"' in card and ">Provisional<" in card
    assert "80\u00a0% of the records of 2024-01-02 are still open" in card
    as_dict = sc.kpi_to_dict(r)
    assert as_dict["status"] == "provisional" and as_dict["open_share"] == 80.0
    assert [p["provisional"] for p in as_dict["series"]] == [False, True]
    rows = sc.performance_rows([r], 1)
    latest = [x for x in rows if x["period_start"] == "2024-01-02" and x["dimension"] == "all"]
    assert latest[0]["provisional"] == "true" and latest[0]["open_share"] == "80.0"
    assert sc.scorecard_rows([r])[0]["status"] == "provisional"

    # without still_open the same numbers claim "on track"; with a looser limit, too
    assert run(live_feed, _days_to_close())["median_days_to_close"].status == "on_track"
    loose = still_open | {"max_share": 90}
    assert run(live_feed, _days_to_close(still_open=loose))["median_days_to_close"].status == (
        "on_track"
    )


def test_still_open_defaults_to_the_kpis_filters(live_feed) -> None:
    # over the KPI's own filters (closed only) nothing is open: the period is not provisional
    still_open = {"where": [{"column": "closed", "op": "is_null"}]}
    r = run(live_feed, _days_to_close(still_open=still_open))["median_days_to_close"]
    assert r.open_share == 0.0 and r.status == "on_track"
