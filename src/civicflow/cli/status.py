"""``civicflow status``: every dataset at a glance, for stewards and for monitoring.

One row a dataset: its last run and outcome, the live version's rows and when it was
published, how old its data is against its update frequency, and its next scheduled
run. Exit 1 when any dataset is failing (its last run was rejected or failed, or it
crashed: its process died before recording an outcome) or stale, so a monitor can run
it. It reads the ledger, the Parquet copies and the specs only: it never starts Prefect
or asks the portal.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import typer

from civicflow import published
from civicflow.cli._common import (
    EXIT_OK,
    EXIT_REJECTED,
    EXIT_USAGE,
    print_problems,
    project_settings,
)
from civicflow.freshness import Freshness, dataset_freshness
from civicflow.ledger import Ledger, RunRecord, Unfinished
from civicflow.published import Manifest
from civicflow.schedules import effective_schedule
from civicflow.settings import Settings
from civicflow.spec import DatasetSpec, SpecError, load_all

#: outcomes of a run that left the dataset healthy (anything else is failing)
GOOD_OUTCOMES = ("published", "unchanged")


@dataclass(frozen=True)
class DatasetStatus:
    """What ``status`` shows for one dataset."""

    spec: DatasetSpec
    last_run: RunRecord | None
    live: Manifest | None
    freshness: Freshness
    next_run: datetime | None
    schedule: str
    #: a run begun after the last recorded one: still running, or crashed (process gone)
    unfinished: Unfinished | None = None

    @property
    def crashed(self) -> bool:
        return self.unfinished is not None and self.unfinished.state == "crashed"

    @property
    def outcome(self) -> str:
        """The latest run's outcome: recorded, or running / crashed."""
        if self.unfinished is not None:
            return self.unfinished.state
        return self.last_run.outcome if self.last_run else "never run"

    @property
    def failing(self) -> bool:
        if self.crashed:
            return True
        return self.last_run is not None and self.last_run.outcome not in GOOD_OUTCOMES

    @property
    def healthy(self) -> bool:
        return not self.failing and not self.freshness.stale


def _schedule_text(spec: DatasetSpec) -> str:
    schedule = effective_schedule(spec)
    if schedule is None:
        return "by hand or publish-all"
    if not schedule.active:
        return "paused"
    what = schedule.cron or f"every {schedule.interval_minutes} min"
    return f"{what} ({schedule.timezone})"


def dataset_status(
    settings: Settings, spec: DatasetSpec, ledger: Ledger | None, now: datetime
) -> DatasetStatus:
    """One dataset's status at ``now``, from the ledger, its Parquet copy and its spec."""
    schedule = effective_schedule(spec)
    last = ledger.last(spec.id) if ledger is not None else None
    return DatasetStatus(
        spec=spec,
        last_run=last,
        live=published.latest(settings, spec.id),
        freshness=dataset_freshness(settings, spec, now),
        next_run=schedule.next_run(now) if schedule is not None else None,
        schedule=_schedule_text(spec),
        unfinished=_newer_unfinished(ledger, spec.id, last),
    )


def _newer_unfinished(
    ledger: Ledger | None, dataset_id: str, last: RunRecord | None
) -> Unfinished | None:
    """The newest run begun after ``last`` and not recorded (running or crashed)."""
    begun = ledger.unfinished(dataset_id) if ledger is not None else []
    newer = [u for u in begun if last is None or u.started_at > last.started_at]
    return newer[0] if newer else None


def all_status(settings: Settings, now: datetime) -> list[DatasetStatus]:
    """Every dataset in ``datasets/``, in id order. A missing ledger is not created."""
    specs = load_all(settings.datasets_dir)
    ledger = Ledger(settings.ledger_path) if settings.ledger_path.is_file() else None
    return [dataset_status(settings, specs[i], ledger, now) for i in sorted(specs)]


# -- output ---------------------------------------------------------------------------


def age_text(age: timedelta | None) -> str:
    """A data age a person reads at a glance: minutes, hours, then days."""
    if age is None:
        return "-"
    seconds = age.total_seconds()
    if seconds < 3600:
        return f"{max(seconds, 0) / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def _when(value: datetime | str | None) -> str:
    if value is None:
        return "-"
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M}"


def _local(value: datetime | None) -> str:
    return "-" if value is None else f"{value:%Y-%m-%d %H:%M %Z}"


def _state(s: DatasetStatus) -> str:
    if s.failing:
        return "FAILING"
    return "STALE" if s.freshness.stale else "ok"


COLUMNS = (
    ("dataset", 30),
    ("state", 8),
    ("last run (UTC)", 17),
    ("outcome", 10),
    ("rows", 10),
    ("version", 13),
    ("published (UTC)", 17),
    ("data age", 12),
    ("freshness", 9),
    ("next run", 0),
)


def _cells(s: DatasetStatus) -> list[str]:
    run, live = s.last_run, s.live
    started = s.unfinished.started_at if s.unfinished else run.started_at if run else None
    return [
        s.spec.id,
        _state(s),
        _when(started),
        s.outcome,
        f"{live.rows:,}" if live else "-",
        f"{live.version[:12]}" if live else "-",
        _when(live.published_at if live else None),
        age_text(s.freshness.age),
        s.freshness.state,
        _local(s.next_run) if s.next_run else s.schedule,
    ]


def _row(cells: list[str]) -> str:
    return "  ".join(c.ljust(w) if w else c for c, (_, w) in zip(cells, COLUMNS, strict=True))


def _print_table(statuses: list[DatasetStatus]) -> None:
    typer.echo(_row([name for name, _ in COLUMNS]))
    for s in statuses:
        typer.echo(_row(_cells(s)))
    for s in statuses:
        if s.unfinished is not None:
            typer.echo(f"{s.spec.id}: {_unfinished_text(s.unfinished)}")
        if s.failing and not s.crashed and s.last_run is not None:
            reason = s.last_run.reason.splitlines()[0][:160] if s.last_run.reason else ""
            typer.echo(f"{s.spec.id}: last run {s.last_run.outcome}: {reason}")
            if s.last_run.report_path:
                typer.echo(f"  report: {s.last_run.report_path}")
        if s.freshness.stale:
            typer.echo(f"{s.spec.id}: stale: {s.freshness.detail}")


def _unfinished_text(u: Unfinished) -> str:
    if u.state == "crashed":
        return f"run {u.run_id} {u.crash_reason()}"
    return f"run {u.run_id} running since {_when(u.started_at)} UTC (pid {u.pid} on {u.host})"


def as_json(s: DatasetStatus) -> dict[str, Any]:
    """One dataset's status for ``--json`` (what monitoring reads)."""
    run, live, fresh = s.last_run, s.live, s.freshness
    return {
        "dataset_id": s.spec.id,
        "title": s.spec.title,
        "healthy": s.healthy,
        "failing": s.failing,
        "stale": fresh.stale,
        "outcome": s.outcome,
        "unfinished": None
        if s.unfinished is None
        else {
            "run_id": s.unfinished.run_id,
            "started_at": s.unfinished.started_at.isoformat(),
            "state": s.unfinished.state,
            "detail": _unfinished_text(s.unfinished),
        },
        "last_run": None
        if run is None
        else {
            "run_id": run.run_id,
            "started_at": run.started_at.isoformat(),
            "finished_at": run.finished_at.isoformat(),
            "outcome": run.outcome,
            "reason": run.reason,
            "rows_in": run.rows_in,
            "rows_out": run.rows_out,
            "report_path": run.report_path,
        },
        "published": None
        if live is None
        else {
            "version": live.version,
            "published_at": live.published_at,
            "rows": live.rows,
            "run_id": live.run_id,
        },
        "freshness": {
            "state": fresh.state,
            "update_frequency": fresh.frequency,
            "latest": fresh.latest.isoformat() if fresh.latest else None,
            "age_seconds": fresh.age.total_seconds() if fresh.age is not None else None,
            "allowed_seconds": fresh.allowed.total_seconds() if fresh.allowed else None,
            "detail": fresh.detail,
        },
        "schedule": s.schedule,
        "next_run": s.next_run.isoformat() if s.next_run else None,
    }


def register(app: typer.Typer) -> None:
    @app.command()
    def status(
        as_json_: bool = typer.Option(False, "--json", help="Print JSON (for monitoring)."),
    ) -> None:
        """Every dataset: last run and outcome, rows, live version, data age and freshness,
        next scheduled run. Exit 1 if any dataset is failing or stale."""
        settings = project_settings()
        try:
            statuses = all_status(settings, datetime.now(UTC))
        except SpecError as exc:
            print_problems(exc.problems)
            raise typer.Exit(EXIT_USAGE) from None
        if as_json_:
            typer.echo(json.dumps([as_json(s) for s in statuses], indent=2))
        else:
            _print_table(statuses)
        healthy = all(s.healthy for s in statuses)
        raise typer.Exit(EXIT_OK if healthy else EXIT_REJECTED)
