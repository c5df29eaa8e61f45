"""The run ledger: records, orders and filters runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from civicflow.ledger import Ledger, RunRecord


def _run(dataset: str, minutes: int, outcome: str = "published") -> RunRecord:
    start = datetime(2026, 11, 1, 12, 0, tzinfo=UTC) + timedelta(minutes=minutes)
    return RunRecord(
        dataset,
        f"run-{dataset}-{minutes}",
        start,
        start + timedelta(seconds=30),
        outcome,
        "why",
        rows_in=10,
        rows_out=10,
    )  # type: ignore[arg-type]


def test_runs_are_newest_first_and_filterable(tmp_path) -> None:
    ledger = Ledger(tmp_path / "ledger.db")
    for i, outcome in enumerate(["published", "rejected", "unchanged"]):
        ledger.record(_run("a", i, outcome))
    ledger.record(_run("b", 10))
    assert [r.run_id for r in ledger.runs()] == ["run-b-10", "run-a-2", "run-a-1", "run-a-0"]
    assert [r.outcome for r in ledger.runs("a")] == ["unchanged", "rejected", "published"]
    assert ledger.last("a").outcome == "unchanged"
    assert ledger.last("a", "published").run_id == "run-a-0"
    since = datetime(2026, 11, 1, 12, 1, tzinfo=UTC)
    assert {r.run_id for r in ledger.runs(since=since)} == {"run-a-1", "run-a-2", "run-b-10"}
    assert ledger.runs("a")[0].duration_s == 30
    assert ledger.last("nope") is None


def test_unknown_outcome_refused(tmp_path) -> None:
    with pytest.raises(ValueError, match="unknown outcome"):
        Ledger(tmp_path / "l.db").record(_run("a", 0, "maybe"))
