"""Freshness with a controllable clock: the data's age (its newest record, read from the
published Parquet copy, or the publish time when there is no record date) against the
allowance for each update frequency; the scorecard's timeliness shares the judgement."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from civicflow import freshness, published
from civicflow.freshness import RecordDate, dataset_freshness, judge
from civicflow.metrics.checks import Inputs, _timely
from civicflow.settings import Settings
from civicflow.spec.models import DatasetSpec

PROJECT = Path(__file__).resolve().parents[1]
NEWEST = datetime(2026, 11, 20, 8, 30, tzinfo=UTC)


def make_spec(frequency: str, *, record_date: bool = True) -> DatasetSpec:
    fields: list[dict[str, Any]] = [
        {"name": "id", "type": "integer", "nullable": False, "description": "Row id."}
    ]
    if record_date:
        fields.append(
            {"name": "opened", "type": "datetime", "description": "When the case was opened."}
        )
    return DatasetSpec.model_validate(
        {
            "id": "cases",
            "title": "Cases",
            "description": "Cases opened by the department.",
            "department": "Test",
            "steward": {"name": "Steward", "email": "steward@city.test"},
            "license": "CC0-1.0",
            "update_frequency": frequency,
            "category": "Test",
            "source": {"kind": "csv", "path": "data/cases.csv"},
            "fields": fields,
            "record_date": "opened" if record_date else None,
        }
    )


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(project_dir=PROJECT, var_dir=tmp_path / "var", env={})


def publish_copy(settings: Settings, spec: DatasetSpec, published_at: str) -> None:
    """A real Parquet copy whose newest ``opened`` is NEWEST (older rows and a null too)."""
    opened = pd.Series(
        [NEWEST - timedelta(days=40), None, NEWEST, NEWEST - timedelta(hours=5)],
        dtype="datetime64[us, UTC]",
    )
    frame = pd.DataFrame({"id": pd.array([1, 2, 3, 4], dtype="Int64")})
    if spec.record_date_field:
        frame["opened"] = opened
    published.write_version(settings, spec.id, frame, "v" * 64, "run-1", published_at=published_at)


@pytest.mark.parametrize(
    ("frequency", "days"),
    [("daily", 2), ("weekly", 9), ("monthly", 35), ("quarterly", 100), ("annually", 400)],
)
def test_fresh_up_to_the_allowance_stale_one_second_after(
    settings: Settings, frequency: str, days: int
) -> None:
    spec = make_spec(frequency)
    # published just now: re-publishing old data must not make it fresh
    publish_copy(settings, spec, published_at=datetime.now(UTC).isoformat())
    at_limit = dataset_freshness(settings, spec, now=NEWEST + timedelta(days=days))
    assert at_limit.state == "fresh" and not at_limit.stale
    assert at_limit.age == timedelta(days=days)
    assert at_limit.latest == NEWEST
    past = dataset_freshness(settings, spec, now=NEWEST + timedelta(days=days, seconds=1))
    assert past.state == "stale" and past.stale
    assert past.allowed == timedelta(days=days)
    assert past.detail == (
        f"{frequency}: latest record 2026-11-20 (opened), {days:.1f} days old, "
        f"more than {days:.1f} days"
    )


@pytest.mark.parametrize("frequency", ["irregular", "static"])
def test_irregular_and_static_data_is_never_stale(settings: Settings, frequency: str) -> None:
    spec = make_spec(frequency)
    publish_copy(settings, spec, published_at=NEWEST.isoformat())
    found = dataset_freshness(settings, spec, now=NEWEST + timedelta(days=3650))
    assert found.state == "fresh" and found.allowed is None
    assert found.age == timedelta(days=3650)


def test_without_a_record_date_the_age_is_since_the_last_published_version(
    settings: Settings,
) -> None:
    spec = make_spec("daily", record_date=False)
    assert spec.record_date_field is None
    publish_copy(settings, spec, published_at="2026-11-20T08:30:00+00:00")
    fresh = dataset_freshness(settings, spec, now=NEWEST + timedelta(days=2))
    assert fresh.state == "fresh" and fresh.detail.startswith("daily: last published 2026-11-20")
    stale = dataset_freshness(settings, spec, now=NEWEST + timedelta(days=2, minutes=1))
    assert stale.state == "stale"


def test_never_published_or_unreadable_is_unknown_not_stale(settings: Settings) -> None:
    spec = make_spec("daily")
    never = dataset_freshness(settings, spec, now=NEWEST)
    assert (never.state, never.stale, never.detail) == ("unknown", False, "daily: never published")

    empty = pd.DataFrame(
        {"id": pd.array([1], dtype="Int64"), "opened": pd.Series([None], dtype="datetime64[us]")}
    )
    published.write_version(settings, spec.id, empty, "e" * 64, "run-2")
    unreadable = dataset_freshness(settings, spec, now=NEWEST)
    assert unreadable.state == "unknown"
    assert unreadable.detail == (
        "daily: cannot tell how current the data is: opened is empty in every published row"
    )


def test_record_dates_in_the_future_are_unknown(settings: Settings) -> None:
    spec = make_spec("weekly")
    publish_copy(settings, spec, published_at=NEWEST.isoformat())
    found = dataset_freshness(settings, spec, now=NEWEST - timedelta(days=1))
    assert found.state == "unknown" and "in the future" in found.detail


def test_the_scorecard_timeliness_uses_the_same_judgement_with_its_grace() -> None:
    """One implementation: the scorecard allows frequency x grace, status the fixed margin."""
    found = RecordDate("opened", NEWEST)
    inputs = Inputs(
        catalog={},
        latest={},
        runs=[],
        kpis={},
        kpi_results=None,
        attestations=[],
        now=NEWEST + timedelta(days=1, hours=13),
    )
    item = _timely("cases", "daily", found, inputs, grace=1.5)  # allowed 1.5 days
    verdict = judge(
        "daily", found, inputs.now, timedelta(days=freshness.PERIOD_DAYS["daily"] * 1.5)
    )
    assert (item.ok, item.detail) == (verdict.state == "fresh", verdict.detail)
    assert not item.ok
    # the same age is still fresh for status (2 days)
    assert judge("daily", found, inputs.now, freshness.allowance("daily")).state == "fresh"


def test_what_alerts_take_is_none_when_unknown(settings: Settings) -> None:
    spec = make_spec("daily")
    assert dataset_freshness(settings, spec, now=NEWEST).stale_if_known is None
    publish_copy(settings, spec, published_at=NEWEST.isoformat())
    assert dataset_freshness(settings, spec, now=NEWEST).stale_if_known is False
    assert dataset_freshness(settings, spec, now=NEWEST + timedelta(days=3)).stale_if_known is True


def _run(settings: Settings, run_id: str, outcome: str, source_modified: str | None) -> None:
    from civicflow.ledger import Ledger, RunRecord

    Ledger(settings.ledger_path).record(
        RunRecord(
            dataset_id="cases",
            run_id=run_id,
            started_at=NEWEST,
            finished_at=NEWEST,
            outcome=outcome,  # type: ignore[arg-type]
            reason="test",
            source_modified=source_modified,
        )
    )


def test_without_a_record_date_the_age_is_the_sources_last_modified_when_it_says(
    settings: Settings,
) -> None:
    spec = make_spec("daily", record_date=False)
    # published now, but the department's file was last changed ten days ago
    publish_copy(settings, spec, published_at=(NEWEST + timedelta(days=10)).isoformat())
    _run(settings, "run-1", "published", (NEWEST - timedelta(days=1)).isoformat())
    _run(settings, "run-2", "unchanged", NEWEST.isoformat())
    _run(settings, "run-3", "rejected", (NEWEST + timedelta(days=9)).isoformat())  # not live
    found = dataset_freshness(settings, spec, now=NEWEST + timedelta(days=10))
    assert found.state == "stale"
    assert found.detail.startswith("daily: source last modified 2026-11-20, 10.0 days old")


def test_extract_records_the_source_files_modification_time(tmp_path: Path) -> None:
    import os

    from civicflow.sources import extract
    from civicflow.spec import find_dataset

    settings = Settings(project_dir=PROJECT, var_dir=tmp_path / "var", env={})
    spec = find_dataset(settings.datasets_dir, "neighborhood_councils")
    source = tmp_path / "drop.geojson"
    source.write_bytes((PROJECT / spec.source.path).read_bytes())  # type: ignore[union-attr]
    stamp = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC).timestamp()
    os.utime(source, (stamp, stamp))
    ext = extract(spec, settings, "run-1", source)
    assert ext.source_modified == "2026-03-04T05:06:07+00:00"
