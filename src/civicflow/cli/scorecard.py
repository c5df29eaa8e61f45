"""``civicflow scorecard``: run the scorecard flow; ``civicflow scorecard schema``."""

from __future__ import annotations

from typing import Any

import typer

from civicflow.cli._common import (
    EXIT_OK,
    EXIT_REJECTED,
    EXIT_USAGE,
    print_problems,
    use_project_prefect,
)
from civicflow.settings import load_settings
from civicflow.spec import SpecError


def _print(summary: dict[str, Any]) -> None:
    typer.echo(
        f"certification: {summary['level']} ({summary['percent']:g} % of criteria met)"
        + (f"; next: {summary['next_level']}" if summary.get("next_level") else "")
    )
    for kpi_id, status in summary["kpis"].items():
        typer.echo(f"  {kpi_id}: {status.replace('_', ' ')}")
    if summary.get("publish"):
        p = summary["publish"]
        typer.echo(f"performance_metrics: {p['outcome'].upper()}: {p['reason']}")
    typer.echo(f"page: {summary['site']['html']}")
    typer.echo(f"took {summary['timings']['total_s']:.1f} s")


def register(app: typer.Typer) -> None:
    scorecard_app = typer.Typer(invoke_without_command=True)
    app.add_typer(scorecard_app, name="scorecard")

    @scorecard_app.callback()
    def scorecard(
        ctx: typer.Context,
        publish: bool = typer.Option(
            True,
            "--publish/--no-publish",
            help="Publish the KPI values to the portal as performance_metrics.",
        ),
    ) -> None:
        """Compute KPIs and certification from published data; write var/site/scorecard/.

        Exit 0: written (and performance_metrics published or unchanged). 1: the
        performance_metrics publish was rejected or failed (the page is still written).
        2: a bad file in metrics/ or datasets/.
        """
        if ctx.invoked_subcommand is not None:
            return
        from civicflow.metrics.scorecard import load

        try:
            load(load_settings())
        except SpecError as exc:
            print_problems(exc.problems)
            raise typer.Exit(EXIT_USAGE) from None

        use_project_prefect(load_settings())
        from flows._common import summary_of
        from flows.scorecard import scorecard as scorecard_flow

        state = scorecard_flow(publish=publish, return_state=True)
        result = summary_of(state)
        if isinstance(result, dict):
            _print(result)
        else:
            typer.echo(f"scorecard failed: {state.message or result}", err=True)
        raise typer.Exit(EXIT_OK if state.is_completed() else EXIT_REJECTED)

    @scorecard_app.command("schema")
    def schema(
        write: bool = typer.Option(
            False, "--write", help="Write metrics/*.schema.json instead of printing them."
        ),
    ) -> None:
        """Print (or write) the JSON Schemas of KPI, certification and attestation files."""
        from civicflow.metrics import schemas

        if not write:
            for name in schemas.SCHEMAS:
                typer.echo(f"// {name}")
                typer.echo(schemas.render(name), nl=False)
            return
        for path, changed in schemas.write_all(load_settings().metrics_dir).items():
            typer.echo(f"{'wrote' if changed else 'unchanged'}: {path}")
