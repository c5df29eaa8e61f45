"""``civicflow versions`` and ``civicflow rollback``: what can be restored, and restoring it.

``versions`` reads the kept Parquet copies only (no portal, no Prefect). ``rollback``
republishes one through the normal atomic publish and records it in the run ledger
(see civicflow.rollback).
"""

from __future__ import annotations

from datetime import UTC, datetime

import typer

from civicflow.cli._common import EXIT_REJECTED, EXIT_USAGE, print_problems, project_settings
from civicflow.published import Manifest, file_sha256, latest
from civicflow.settings import Settings
from civicflow.spec import SpecError, find_dataset


def _when(text: str) -> str:
    try:
        return f"{datetime.fromisoformat(text).astimezone(UTC):%Y-%m-%d %H:%M:%S}"
    except ValueError:
        return text


def _file_state(m: Manifest) -> str:
    """Whether a version can be restored as kept: its file there and unchanged."""
    if not m.path.is_file():
        return "missing"
    return "ok" if file_sha256(m.path) == m.sha256 else "CHANGED"


def _project_with(dataset_id: str) -> Settings:
    """The project's settings; exit 2 naming the known datasets if it has no such one."""
    settings = project_settings()
    try:
        find_dataset(settings.datasets_dir, dataset_id)
    except SpecError as exc:
        print_problems(exc.problems)
        raise typer.Exit(EXIT_USAGE) from None
    return settings


def register(app: typer.Typer) -> None:
    @app.command()
    def versions(dataset_id: str = typer.Argument(..., metavar="ID")) -> None:
        """List the kept published versions of a dataset (what rollback can restore)."""
        from civicflow.rollback import kept_versions

        settings = _project_with(dataset_id)
        kept = kept_versions(settings, dataset_id)
        if not kept:
            typer.echo(f"{dataset_id}: no kept versions yet")
            return
        current = latest(settings, dataset_id)
        typer.echo(f"  {'version':<13} {'live since (UTC)':<19} {'rows':>10}  {'file':<8} run")
        for m in reversed(kept):  # newest first, like civicflow runs
            mark = "*" if current is not None and current.version == m.version else " "
            typer.echo(
                f"{mark} {m.version[:12]:<13} {_when(m.published_at):<19} {m.rows:>10,}  "
                f"{_file_state(m):<8} {m.run_id}"
            )
        typer.echo(
            "* live (per the latest Parquet copy); restore one: civicflow rollback ID --to VERSION"
        )

    @app.command()
    def rollback(
        dataset_id: str = typer.Argument(..., metavar="ID"),
        to: str | None = typer.Option(
            None,
            "--to",
            metavar="VERSION",
            help="Version to restore (its first characters are enough); "
            "default: the version live before the current one.",
        ),
    ) -> None:
        """Republish a kept version through the normal atomic publish; recorded in the ledger."""
        from civicflow import rollback as rb
        from civicflow.portals import PortalError

        settings = _project_with(dataset_id)
        try:
            done = rb.rollback(settings, dataset_id, to)
        except rb.RollbackRefused as exc:
            typer.echo(f"{dataset_id}: ROLLBACK REFUSED: {exc}", err=True)
            raise typer.Exit(EXIT_REJECTED) from None
        except PortalError as exc:
            typer.echo(f"{dataset_id}: ROLLBACK FAILED: portal: {exc}", err=True)
            typer.echo("  the live table is unchanged; the failure is in civicflow runs", err=True)
            raise typer.Exit(EXIT_REJECTED) from None
        typer.echo(f"{dataset_id}: ROLLED BACK: {done.record.reason}")
        typer.echo(f"  {done.result.rows:,} rows live, version {done.result.version[:12]}…")
        if done.replaced is not None:
            typer.echo(f"  replaced version {done.replaced.version[:12]}…")
        if done.result.url:
            typer.echo(f"  url: {done.result.url}")
        if done.restored.run_id:
            typer.echo(f"  rows checked by run {done.restored.run_id}")
        spec = find_dataset(settings.datasets_dir, dataset_id)
        if spec.incremental is not None:
            typer.echo(f"  note: {rb.INCREMENTAL_NOTE}")
