"""``civicflow runs``: the run ledger, newest first."""

from __future__ import annotations

import typer

from civicflow.ledger import Ledger
from civicflow.settings import load_settings


def register(app: typer.Typer) -> None:
    @app.command()
    def runs(
        dataset_id: str | None = typer.Argument(None, help="Only this dataset."),
        limit: int = typer.Option(20, "--limit", "-n", help="How many runs to show."),
    ) -> None:
        """List recorded runs: when, outcome, rows, checks failed and why."""
        settings = load_settings()
        records = Ledger(settings.ledger_path).runs(dataset_id, limit=limit)
        if not records:
            typer.echo("no runs recorded yet")
            return
        header = f"{'started (UTC)':<20} {'dataset':<28} {'outcome':<10} {'rows in':>9} {'rows out':>9} {'crit':>5} {'warn':>5}  reason"
        typer.echo(header)
        for r in records:
            typer.echo(
                f"{r.started_at:%Y-%m-%d %H:%M:%S}  {r.dataset_id:<28} {r.outcome:<10} "
                f"{'' if r.rows_in is None else f'{r.rows_in:,}':>9} {'' if r.rows_out is None else f'{r.rows_out:,}':>9} "
                f"{r.critical_failed:>5} {r.warning_failed:>5}  {r.reason.splitlines()[0][:120] if r.reason else ''}"
            )
