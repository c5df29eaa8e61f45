"""``civicflow runs``: the run ledger, newest first.

Everything shown comes from the ledger, whose reasons are public (the scorecard shows
them) and hold no source values. A run that was rejected or failed points to its
private report under ``var/reports/``, where the failing rows and values are.
"""

from __future__ import annotations

import typer

from civicflow.ledger import Ledger, RunRecord, Unfinished
from civicflow.settings import load_settings


def _line(r: RunRecord) -> str:
    rows_in = "" if r.rows_in is None else f"{r.rows_in:,}"
    rows_out = "" if r.rows_out is None else f"{r.rows_out:,}"
    reason = r.reason.splitlines()[0][:120] if r.reason else ""
    return (
        f"{r.started_at:%Y-%m-%d %H:%M:%S}  {r.dataset_id:<28} {r.outcome:<10} "
        f"{rows_in:>9} {rows_out:>9} {r.critical_failed:>5} {r.warning_failed:>5}  {reason}"
    )


def _unfinished_line(u: Unfinished) -> str:
    reason = (
        u.crash_reason()
        if u.state == "crashed"
        else f"running (pid {u.pid} on {u.host}); no outcome yet"
    )
    return f"{u.started_at:%Y-%m-%d %H:%M:%S}  {u.dataset_id:<28} {u.state:<10} {'':>9} {'':>9} {'':>5} {'':>5}  {reason}"


def _reports(r: RunRecord) -> list[str]:
    """Where a steward finds the detail of a run that did not publish."""
    if r.outcome in ("published", "unchanged"):
        return []
    paths = [p for p in (r.report_path, r.privacy_report_path) if p]
    return [f"{'':<20} report: {p}" for p in paths]


def register(app: typer.Typer) -> None:
    @app.command()
    def runs(
        dataset_id: str | None = typer.Argument(None, help="Only this dataset."),
        limit: int = typer.Option(20, "--limit", "-n", help="How many runs to show."),
    ) -> None:
        """List recorded runs: when, outcome, rows, checks failed and why (details: the report)."""
        settings = load_settings()
        ledger = Ledger(settings.ledger_path)
        records = ledger.runs(dataset_id, limit=limit)
        unfinished = ledger.unfinished(dataset_id)
        if not records and not unfinished:
            typer.echo("no runs recorded yet")
            return
        header = f"{'started (UTC)':<20} {'dataset':<28} {'outcome':<10} {'rows in':>9} {'rows out':>9} {'crit':>5} {'warn':>5}  reason"
        typer.echo(header)
        for u in unfinished:  # still running, or died before recording an outcome
            typer.echo(_unfinished_line(u))
        for r in records:
            typer.echo(_line(r))
            for line in _reports(r):
                typer.echo(line)
