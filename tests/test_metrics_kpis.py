"""Every bundled KPI checked against an independent pandas computation on the raw files.

The KPIs are computed the real way (DuckDB over the Parquet a publish writes); the
expected numbers come from hand-written pandas over the source CSV / GeoJSON, one
function per KPI, never from a stored number.
"""

from __future__ import annotations

import json
import math
import secrets
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd
import pytest

from civicflow import published
from civicflow.ledger import Ledger, RunRecord
from civicflow.metrics.compute import KpiResult, compute_all, small_count_threshold
from civicflow.metrics.loader import load_kpis
from civicflow.metrics.scorecard import performance_rows
from civicflow.privacy import protect
from civicflow.privacy.keys import HashKey
from civicflow.settings import Settings
from civicflow.sources import extract
from civicflow.spec import load_all

PROJECT = Path(__file__).resolve().parents[1]
LA311 = PROJECT / "data" / "la311_service_requests" / "MyLA311_Service_Request_Data_2017_Subset.csv"
LAX = PROJECT / "data" / "lax_passenger_traffic" / "lax_passenger_traffic_by_terminal.csv"
NC = PROJECT / "data" / "neighborhood_councils" / "la_neighborhood_councils_certified.geojson"
PARKING = PROJECT / "data" / "parking_citations" / "la_parking_citations_subset.csv"
US_TIME = "%m/%d/%Y %I:%M:%S %p"
DIGITAL = ["Mobile App", "Self Service", "Email"]
#: every dataset a bundled KPI reads
SOURCES = (
    "la311_service_requests",
    "lax_passenger_traffic",
    "neighborhood_councils",
    "parking_citations",
)


def publish_parquet(settings: Settings, dataset_id: str) -> published.Manifest:
    """Extract and protect with the real stages, then write the published Parquet, the
    privacy report and the ledger record the way a publish does (no portal needed for metrics)."""
    catalog = load_all(settings.datasets_dir)
    spec = catalog[dataset_id]
    started = datetime.now(UTC)
    run_id = f"{started:%Y%m%dT%H%M%S%fZ}-{dataset_id[:6]}"
    ext = extract(spec, settings, run_id)
    protected = protect(spec, ext.frame, settings, hash_key=HashKey(secrets.token_hex(32), "test"))
    assert not protected.report.blocked, protected.report.summary()
    privacy_path = settings.reports_dir / dataset_id / f"{run_id}.privacy.json"
    protected.report.write(privacy_path)
    frame = protected.frame.reset_index(drop=True)
    manifest = published.write_version(
        settings, dataset_id, frame, published.content_version(frame), run_id
    )
    Ledger(settings.ledger_path).record(
        RunRecord(
            dataset_id,
            run_id,
            started,
            datetime.now(UTC),
            "published",
            "published a new version",
            ext.rows,
            len(frame),
            critical_passed=1,
            privacy_findings=len(protected.report.findings),
            privacy_report_path=str(privacy_path),
        )
    )
    return manifest


@pytest.fixture(scope="module")
def settings(tmp_path_factory) -> Settings:
    s = Settings(project_dir=PROJECT, var_dir=tmp_path_factory.mktemp("kpis") / "var")
    for dataset_id in SOURCES:
        publish_parquet(s, dataset_id)
    return s


@pytest.fixture(scope="module")
def results(settings) -> dict[str, KpiResult]:
    computed = compute_all(
        settings, load_kpis(settings.metrics_dir), load_all(settings.datasets_dir)
    )
    return {r.kpi.id: r for r in computed}


# -- the independent computations ------------------------------------------------------

Agg = Callable[[pd.DataFrame], tuple[float, int]]
Expected = tuple[
    dict[date, tuple[float, int]], dict[str, dict[str | None, tuple[float, int]]], date
]


def _la311() -> pd.DataFrame:
    raw = pd.read_csv(LA311, dtype=str, keep_default_na=False, na_values=[""])
    created = pd.to_datetime(raw["CreatedDate"], format=US_TIME)
    closed = pd.to_datetime(raw["ClosedDate"], format=US_TIME)
    return pd.DataFrame(
        {
            "period": created.dt.date,
            "days": (closed - created).dt.total_seconds() / 86400.0,
            "status": raw["Status"],
            "request_type": raw["RequestType"],
            "request_source": raw["RequestSource"],
            "cd": raw["CD"],
            "nc": raw["NC"],
        }
    )


def _nc_names() -> dict[str, str]:
    features = json.loads(NC.read_text(encoding="utf-8"))["features"]
    return {str(f["properties"]["NC_ID"]): f["properties"]["NAME"] for f in features}


def _summarise(frame: pd.DataFrame, latest: date, agg: Agg, dims: list[str]) -> Expected:
    series = {p: agg(g) for p, g in frame.groupby("period")}
    now = frame[frame["period"] == latest]
    groups = {
        d: {
            (None if isinstance(k, float) and math.isnan(k) else str(k)): agg(g)
            for k, g in now.groupby(d, dropna=False)
        }
        for d in dims
    }
    return series, groups, latest


def _median_days(g: pd.DataFrame) -> tuple[float, int]:
    return float(g["days"].median()), int(g["days"].count())


def _within(limit: float) -> Agg:
    # Open requests have no days: they count as not closed in time (NaN <= x is False).
    return lambda g: (100.0 * float((g["days"] <= limit).mean()), len(g))


def expected_la311_median_days_to_close() -> Expected:
    df = _la311()
    latest = df["period"].max()
    return _summarise(
        df[df["status"] == "Closed"], latest, _median_days, ["cd", "request_type", "nc"]
    )


def expected_bulky_items_closed_within_target() -> Expected:
    df = _la311()
    latest = df["period"].max()
    sub = df[(df["request_type"] == "Bulky Items") & (df["status"] != "Cancelled")]
    return _summarise(sub, latest, _within(7), ["cd", "nc"])


def expected_graffiti_removed_within_two_days() -> Expected:
    df = _la311()
    latest = df["period"].max()
    sub = df[(df["request_type"] == "Graffiti Removal") & (df["status"] != "Cancelled")]
    return _summarise(sub, latest, _within(2), ["cd"])


def expected_illegal_dumping_median_days() -> Expected:
    df = _la311()
    latest = df["period"].max()
    sub = df[(df["request_type"] == "Illegal Dumping Pickup") & (df["status"] == "Closed")]
    return _summarise(sub, latest, _median_days, ["cd"])


def expected_la311_digital_channel_share() -> Expected:
    df = _la311()
    latest = df["period"].max()
    sub = df[
        df["request_source"] != "Driver Self Report"
    ]  # pandas != keeps empty channels, as the KPI says
    return _summarise(
        sub,
        latest,
        lambda g: (100.0 * float(g["request_source"].isin(DIGITAL).mean()), len(g)),
        ["cd", "nc"],
    )


def expected_la311_requests_by_channel() -> Expected:
    df = _la311()
    return _summarise(
        df, df["period"].max(), lambda g: (float(len(g)), len(g)), ["request_source", "cd"]
    )


def expected_lax_passengers_per_month() -> Expected:
    raw = pd.read_csv(LAX, dtype=str)
    df = pd.DataFrame(
        {
            "period": pd.to_datetime(raw["ReportPeriod"], format=US_TIME).dt.date,
            "passengers": raw["Passenger_Count"].astype(int),
            "terminal": raw["Terminal"],
            "domestic_international": raw["Domestic_International"],
        }
    )
    agg: Agg = lambda g: (float(g["passengers"].sum()), int(g["passengers"].count()))  # noqa: E731
    return _summarise(df, df["period"].max(), agg, ["terminal", "domestic_international"])


def expected_parking_citations_per_month() -> Expected:
    raw = pd.read_csv(PARKING, dtype=str, keep_default_na=False, na_values=[""])
    issued = pd.to_datetime(raw["Issue Date"], format="%Y-%m-%dT%H:%M:%S")
    df = pd.DataFrame(
        {
            "period": issued.dt.to_period("M").dt.start_time.dt.date,
            "violation_description": raw["Violation Description"],
        }
    )
    return _summarise(
        df, df["period"].max(), lambda g: (float(len(g)), len(g)), ["violation_description"]
    )


ORACLES: dict[str, Callable[[], Expected]] = {
    name.removeprefix("expected_"): fn
    for name, fn in globals().items()
    if name.startswith("expected_") and callable(fn)
}


def test_every_bundled_kpi_has_an_independent_computation() -> None:
    assert set(load_kpis(PROJECT / "metrics")) == set(ORACLES)


@pytest.mark.parametrize("kpi_id", sorted(ORACLES))
def test_kpi_matches_pandas_on_the_raw_file(kpi_id: str, results: dict[str, KpiResult]) -> None:
    result = results[kpi_id]
    series, groups, latest = ORACLES[kpi_id]()
    assert result.period == latest
    assert result.status != "no_data", result.reason
    # every period of the trend
    assert {p.period for p in result.series} == set(series)
    for point in result.series:
        value, n = series[point.period]
        assert point.n == n, point.period
        if n < result.min_records:
            assert point.suppressed and point.value is None
        else:
            assert point.value == pytest.approx(value, rel=1e-9, abs=1e-9), point.period
    assert result.current is not None and result.current.period == latest
    # every group of every breakdown, for the reporting period
    names = _nc_names()
    assert [b.column for b in result.breakdowns] == list(groups)
    for b in result.breakdowns:
        expected = groups[b.column]
        assert {g.key for g in b.groups} == set(expected), b.column
        for g in b.groups:
            value, n = expected[g.key]
            assert g.n == n, (b.column, g.key)
            if n < result.min_records:
                assert g.suppressed and g.value is None
            else:
                assert g.value == pytest.approx(value, rel=1e-9, abs=1e-9), (b.column, g.key)
            if b.column == "nc" and g.key is not None:
                assert g.label == names[g.key]


def test_performance_rows_carry_the_same_values_and_suppress_small_counts(
    results: dict[str, KpiResult], settings: Settings
) -> None:
    threshold = small_count_threshold(load_all(settings.datasets_dir))
    rows = pd.DataFrame(performance_rows(list(results.values()), threshold))
    assert not rows.duplicated(["kpi_id", "period_start", "dimension", "group_key"]).any()
    # no published count below the threshold, ever
    counts = pd.to_numeric(rows["records"], errors="coerce").dropna()
    assert (counts >= threshold).all()
    series, groups, latest = ORACLES["la311_median_days_to_close"]()
    overall = rows[(rows.kpi_id == "la311_median_days_to_close") & (rows.dimension == "all")]
    for _, row in overall.iterrows():
        value, n = series[date.fromisoformat(row.period_start)]
        assert float(row.value) == pytest.approx(value, rel=1e-6)
        assert int(row.records) == n
    by_cd = rows[(rows.kpi_id == "la311_median_days_to_close") & (rows.dimension == "cd")]
    assert set(by_cd.group_key) == {k if k is not None else "not_recorded" for k in groups["cd"]}
    small = rows[(rows.suppressed == "true")]
    assert len(small) > 0 and (small.value == "").all() and (small.records == "").all()
