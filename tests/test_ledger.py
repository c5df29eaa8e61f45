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


def test_reasons_from_before_public_reasons_are_withheld(tmp_path) -> None:
    """A ledger written by an older civicflow may hold source values in its reasons
    (the scorecard shows them): opening it withholds those, once."""
    import sqlite3

    from civicflow.ledger import _SCHEMA, WITHHELD

    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.executescript(_SCHEMA)  # user_version 0: the old ledger
    for run, outcome, reason in [
        ("r1", "rejected", "REJECTED: primary-key sr_number: 1 duplicate (rows 3 and 7: '1-8706')"),
        ("r2", "failed", "ValueError: could not convert 'ZQXJ' to float"),
        ("r3", "published", "published a new version"),
    ]:
        old.execute(
            "INSERT INTO runs (dataset_id, run_id, started_at, finished_at, outcome, reason)"
            " VALUES ('a', ?, '2026-11-01T12:00:00+00:00', '2026-11-01T12:00:30+00:00', ?, ?)",
            (run, outcome, reason),
        )
    old.commit()
    old.close()

    ledger = Ledger(path)
    reasons = {r.run_id: r.reason for r in ledger.runs("a")}
    assert reasons == {"r1": WITHHELD, "r2": WITHHELD, "r3": "published a new version"}
    # a run recorded now keeps its (public-safe) reason when the ledger is opened again
    ledger.record(_run("a", 5, "rejected"))
    assert Ledger(path).last("a").reason == "why"


def _summary(run_id: str, published_at: str, portal: str = "datasette", **counts: int | None):
    from civicflow.ledger import VersionSummary

    values = {"added": 1, "changed": 2, "deleted": 3, "checks_passed": 9, "checks_total": 10}
    return VersionSummary(
        dataset_id="a",
        portal=portal,
        run_id=run_id,
        data_version=f"data-{run_id}",
        portal_version=f"version-{run_id}",
        published_at=published_at,
        rows=100,
        **{**values, **counts},
    )


def test_version_summaries_are_kept_newest_first_per_portal(tmp_path) -> None:
    ledger = Ledger(tmp_path / "ledger.db")
    assert ledger.versions("a") == []
    ledger.record_version(_summary("r1", "2026-11-01T12:00:00+00:00"))
    ledger.record_version(_summary("r3", "2026-11-03T12:00:00+00:00", changed=None))
    ledger.record_version(_summary("r2", "2026-11-02T12:00:00+00:00", added=None))
    ledger.record_version(_summary("s1", "2026-11-04T12:00:00+00:00", portal="socrata"))
    assert [s.run_id for s in ledger.versions("a", "datasette")] == ["r3", "r2", "r1"]
    assert [s.run_id for s in ledger.versions("a")] == ["s1", "r3", "r2", "r1"]
    assert [s.run_id for s in ledger.versions("a", "datasette", limit=2)] == ["r3", "r2"]
    assert ledger.versions("b") == []
    # unknown counts stay unknown (None), never zero
    by_run = {s.run_id: s for s in ledger.versions("a")}
    assert (by_run["r3"].changed, by_run["r2"].added, by_run["r1"].added) == (None, None, 1)
    assert by_run["r1"] == _summary("r1", "2026-11-01T12:00:00+00:00")
    # recorded again: replaced, not repeated
    ledger.record_version(_summary("r1", "2026-11-01T12:00:00+00:00", deleted=7))
    assert [s.deleted for s in ledger.versions("a", "datasette") if s.run_id == "r1"] == [7]
    assert len(ledger.versions("a", "datasette")) == 3


def test_history_entry_holds_only_what_is_known_before_the_publish() -> None:
    entry = _summary("r1", "2026-11-01T12:00:00+00:00").history_entry()
    assert entry == {
        "run_id": "r1",
        "data_version": "data-r1",
        "added": 1,
        "changed": 2,
        "deleted": 3,
        "checks_passed": 9,
        "checks_total": 10,
    }


def test_a_ledger_from_before_version_summaries_gets_the_table(tmp_path) -> None:
    import sqlite3

    path = tmp_path / "old.db"
    Ledger(path).record(_run("a", 0))
    old = sqlite3.connect(path)
    old.execute("DROP TABLE versions")  # as a ledger written before summaries were kept
    old.commit()
    old.close()
    ledger = Ledger(path)
    assert [r.run_id for r in ledger.runs("a")] == ["run-a-0"]
    ledger.record_version(_summary("r1", "2026-11-01T12:00:00+00:00"))
    assert [s.run_id for s in ledger.versions("a")] == ["r1"]
