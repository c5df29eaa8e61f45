"""Retention: raw copies and reports are kept for a number of runs or days, then pruned;
the run behind the live published version is never pruned (issue 8, item 9)."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from civicflow.cli import app
from civicflow.pipeline import new_run_id, report_paths, run_dataset
from civicflow.privatefs import write_private
from civicflow.retention import RetentionPolicy, plan_prune, prune_dataset
from civicflow.settings import Settings, SettingsError, load_settings
from civicflow.sources import extract
from civicflow.spec import find_dataset
from civicflow.spec.models import RetentionSpec

PROJECT = Path(__file__).resolve().parents[1]
DATASET = "lax_passenger_traffic"
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
runner = CliRunner()


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("CIVICFLOW_PROJECT_DIR", str(PROJECT))
    monkeypatch.setenv("CIVICFLOW_VAR_DIR", str(tmp_path / "var"))
    for name in ("CIVICFLOW_KEEP_RUNS", "CIVICFLOW_KEEP_DAYS"):  # the documented defaults
        monkeypatch.delenv(name, raising=False)
    return load_settings()


def fake_run(settings: Settings, when: datetime, dataset_id: str = DATASET) -> str:
    """A past run's private state as the pipeline leaves it: raw copy plus two reports."""
    run_id = new_run_id(when)
    write_private(settings.raw_dir / dataset_id / f"{run_id}.csv", "a,b\n1,2\n", 0o400)
    report, privacy = report_paths(settings, dataset_id, run_id)
    write_private(report, '{"passed": false}')
    write_private(privacy, '{"findings": []}')
    return run_id


def runs_on_disk(settings: Settings, dataset_id: str = DATASET) -> set[str]:
    folder = settings.raw_dir / dataset_id
    return {p.name.split(".")[0] for p in folder.iterdir()} if folder.is_dir() else set()


def test_keeps_the_newest_runs_and_deletes_older_ones_with_their_reports(settings) -> None:
    runs = [fake_run(settings, NOW - timedelta(days=10 - i)) for i in range(6)]
    policy = RetentionPolicy(keep_runs=3, keep_days=0)
    result = prune_dataset(settings, DATASET, policy=policy, now=NOW)
    assert runs_on_disk(settings) == set(runs[3:])
    assert result.runs_deleted == 3 and result.runs_kept == 3
    assert len(result.files) == 9  # raw copy + validation report + privacy report, per run
    assert not any(p.exists() for p in result.files)
    assert result.bytes == 3 * (
        len("a,b\n1,2\n") + len('{"passed": false}') + len('{"findings": []}')
    )
    for run_id in runs[:3]:
        assert not any(p.exists() for p in report_paths(settings, DATASET, run_id))


def test_keeps_every_run_younger_than_keep_days(settings) -> None:
    old = [fake_run(settings, NOW - timedelta(days=5, hours=i)) for i in range(3)]
    recent = [fake_run(settings, NOW - timedelta(hours=i + 1)) for i in range(5)]
    prune_dataset(settings, DATASET, policy=RetentionPolicy(keep_runs=2, keep_days=1), now=NOW)
    assert runs_on_disk(settings) == set(recent)
    assert not set(old) & runs_on_disk(settings)


def test_dry_run_lists_the_same_files_and_deletes_nothing(settings) -> None:
    for i in range(4):
        fake_run(settings, NOW - timedelta(days=30 + i))
    policy = RetentionPolicy(keep_runs=1, keep_days=0)
    before = runs_on_disk(settings)
    dry = prune_dataset(settings, DATASET, dry_run=True, policy=policy, now=NOW)
    assert runs_on_disk(settings) == before and all(p.exists() for p in dry.files)
    assert len(dry.files) == 9 and "would delete 9 files" in dry.summary()
    real = prune_dataset(settings, DATASET, policy=policy, now=NOW)
    assert real.files == dry.files and real.bytes == dry.bytes
    assert "deleted 9 files" in real.summary()


def test_an_hourly_schedule_does_not_grow_the_disk_without_bound(settings) -> None:
    """A week of hourly runs, each pruning at its end as the pipeline does."""
    policy = RetentionPolicy(keep_runs=5, keep_days=0.5)
    on_disk = []
    for hour in range(24 * 7):
        now = NOW + timedelta(hours=hour)
        fake_run(settings, now)
        prune_dataset(settings, DATASET, policy=policy, now=now)
        on_disk.append(len(runs_on_disk(settings)))
    # Half a day of hourly runs is 13 runs (both ends included): the ceiling, reached
    # after 12 hours and never passed.
    assert max(on_disk) == 13 and on_disk[-1] == 13


def test_stale_temporary_files_are_deleted_fresh_ones_and_foreign_files_kept(settings) -> None:
    fake_run(settings, NOW)
    folder = settings.raw_dir / DATASET
    stale, fresh, foreign = folder / ".x.csv.1.part", folder / ".y.csv.2.part", folder / "notes.txt"
    for path in (stale, fresh, foreign):
        path.write_text("x")
    two_days_ago = time.time() - 2 * 86400
    os.utime(stale, (two_days_ago, two_days_ago))
    result = prune_dataset(settings, DATASET, policy=RetentionPolicy(1, 0))
    assert result.files == [stale]
    assert fresh.exists() and foreign.exists() and not stale.exists()


def test_settings_read_retention_from_the_environment(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("CIVICFLOW_PROJECT_DIR", str(PROJECT))
    monkeypatch.setenv("CIVICFLOW_KEEP_RUNS", "7")
    monkeypatch.setenv("CIVICFLOW_KEEP_DAYS", "0.5")
    settings = load_settings()
    assert (settings.keep_runs, settings.keep_days) == (7, 0.5)
    assert RetentionPolicy.for_dataset(settings) == RetentionPolicy(7, 0.5)
    for name, bad in (("CIVICFLOW_KEEP_RUNS", "0"), ("CIVICFLOW_KEEP_DAYS", "-1")):
        monkeypatch.setenv(name, bad)
        with pytest.raises(SettingsError, match=name):
            load_settings()
        monkeypatch.setenv(name, "1")


def test_the_run_behind_the_live_version_is_never_pruned(
    datasette_factory, settings, monkeypatch
) -> None:
    # A portal of its own: on the shared one another test may have published this
    # dataset already, and this run would be "unchanged".
    for key, value in datasette_factory().env.items():
        monkeypatch.setenv(key, value)
    settings = load_settings()
    live = run_dataset(settings, DATASET)
    assert live.outcome == "published", live.reason
    # Later runs that did not change what is live (here: extracts of newer input).
    spec = find_dataset(settings.datasets_dir, DATASET)
    later = [
        extract(spec, settings, new_run_id(datetime.now(UTC) + timedelta(minutes=i + 1))).run_id
        for i in range(3)
    ]
    policy = RetentionPolicy(keep_runs=1, keep_days=0)
    future = datetime.now(UTC) + timedelta(days=365)
    result = prune_dataset(settings, DATASET, policy=policy, now=future)
    assert result.protected == [live.record.run_id]
    assert runs_on_disk(settings) == {live.record.run_id, later[-1]}
    assert live.report_path is not None and live.report_path.exists()
    assert live.privacy_report_path is not None and live.privacy_report_path.exists()
    assert "live version's run" in result.summary()


def test_prune_command_lists_files_and_totals(settings) -> None:
    for i in range(3):
        fake_run(settings, NOW - timedelta(days=40 + i))
    fake_run(settings, datetime.now(UTC))
    env = {"CIVICFLOW_KEEP_RUNS": "1", "CIVICFLOW_KEEP_DAYS": "0"}
    dry = runner.invoke(app, ["prune", "--dry-run"], env=env)
    assert dry.exit_code == 0, dry.output
    assert "would delete 9 files" in dry.output and "total: would delete 9 files" in dry.output
    assert len(runs_on_disk(settings)) == 4
    planned = plan_prune(settings, DATASET, RetentionPolicy(1, 0))
    assert all(str(p) in dry.output for p in planned.files)

    done = runner.invoke(app, ["prune", DATASET], env=env)
    assert done.exit_code == 0, done.output
    assert "total: deleted 9 files" in done.output
    assert len(runs_on_disk(settings)) == 1

    unknown = runner.invoke(app, ["prune", "no_such_dataset"])
    assert unknown.exit_code == 2 and "no dataset 'no_such_dataset'" in unknown.output


def test_a_dataset_can_keep_more_than_the_project(settings) -> None:
    spec = find_dataset(settings.datasets_dir, DATASET)
    assert RetentionPolicy.for_dataset(settings, spec) == RetentionPolicy(20, 3.0)
    own = spec.model_copy(update={"retention": RetentionSpec(keep_runs=100)})
    assert RetentionPolicy.for_dataset(settings, own) == RetentionPolicy(100, 3.0)
    with pytest.raises(ValueError, match="keep_runs"):
        RetentionSpec(keep_runs=0)


def test_every_run_prunes_its_dataset_even_a_rejected_one(settings, monkeypatch, tmp_path) -> None:
    """The pipeline applies retention at the end of each run: rejected runs pile up too."""
    monkeypatch.setenv("CIVICFLOW_KEEP_RUNS", "2")
    monkeypatch.setenv("CIVICFLOW_KEEP_DAYS", "0")
    settings = load_settings()
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"not,the,header\n\xff\xfe,1,2\n")
    for _ in range(4):
        outcome = run_dataset(settings, DATASET, bad)
        assert outcome.outcome == "rejected"
    assert len(runs_on_disk(settings)) == 2
    reports = {p.name.split(".")[0] for p in (settings.reports_dir / DATASET).iterdir()}
    assert reports <= runs_on_disk(settings) and len(reports) == 2


def test_a_runs_quarantine_file_is_pruned_with_it_and_kept_with_it(settings) -> None:
    from civicflow.quality.quarantine import quarantine_path

    runs = [fake_run(settings, NOW - timedelta(days=10 - i)) for i in range(3)]
    held = [quarantine_path(settings, DATASET, r) for r in runs]
    for path in held:
        write_private(path, "row,reasons\n3,type-error cd\n")
    result = prune_dataset(settings, DATASET, policy=RetentionPolicy(1, 0), now=NOW)
    assert [p.exists() for p in held] == [False, False, True]
    assert set(held[:2]) <= set(result.files)
    assert result.runs_deleted == 2


def test_a_dataset_with_only_quarantined_rows_left_is_still_pruned(settings) -> None:
    from civicflow.quality.quarantine import quarantine_path
    from civicflow.retention import state_dataset_ids

    old = quarantine_path(settings, "gone_dataset", new_run_id(NOW - timedelta(days=40)))
    write_private(old, "row,reasons\n")
    assert "gone_dataset" in state_dataset_ids(settings)
    prune_dataset(settings, "gone_dataset", policy=RetentionPolicy(1, 0), now=NOW)
    assert old.exists()  # the newest run of a dataset is kept
    newer = quarantine_path(settings, "gone_dataset", new_run_id(NOW - timedelta(days=39)))
    write_private(newer, "row,reasons\n")
    prune_dataset(settings, "gone_dataset", policy=RetentionPolicy(1, 0), now=NOW)
    assert not old.exists() and newer.exists()
