"""``civicflow publish``: run the publish flow for datasets and report each outcome."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from civicflow.cli._common import (
    EXIT_OK,
    EXIT_REJECTED,
    EXIT_USAGE,
    print_problems,
    use_project_prefect,
)
from civicflow.portals import registered_portals
from civicflow.settings import Settings, load_settings
from civicflow.spec import DatasetSpec, SpecError, find_dataset, load_all


def _print_summary(summary: dict[str, Any]) -> None:
    outcome = summary["outcome"].upper()
    reason = str(summary["reason"])
    # Quality summaries already start with the verdict; don't say it twice.
    reason = reason.removeprefix(f"{outcome}: ")
    typer.echo(f"{summary['dataset_id']}: {outcome}: {reason}")
    for key in ("report", "privacy_report", "url"):
        if summary.get(key):
            typer.echo(f"  {key.replace('_', ' ')}: {summary[key]}")


def _dry_run(settings: Settings, specs: list[DatasetSpec], source: Path | None) -> bool:
    """Plan each dataset's publish and print it; True when every plan was made."""
    from civicflow.pipeline import dry_run_dataset
    from civicflow.portals import PortalError
    from civicflow.privacy.errors import PrivacyError

    ok = True
    for spec in specs:
        try:
            found = dry_run_dataset(settings, spec.id, source, spec=spec)
        except (PortalError, PrivacyError) as exc:
            # Configuration and portal errors name settings, never data: fit to print.
            kind = "portal" if isinstance(exc, PortalError) else "privacy"
            typer.echo(f"{spec.id}: DRY RUN FAILED: {kind}: {exc}")
            ok = False
            continue
        if found.unchanged:
            typer.echo(f"{spec.id}: DRY RUN: {found.reason}")
        elif found.plan is None:
            typer.echo(f"{spec.id}: DRY RUN: would be REJECTED: {found.reason}")
            ok = False
        else:
            typer.echo(f"{spec.id}: DRY RUN: nothing written, not recorded in the run ledger")
            for line in found.plan.lines():
                typer.echo(f"  {line}")
        for key, path in (
            ("report", found.report_path),
            ("privacy report", found.privacy_report_path),
        ):
            if path is not None:
                typer.echo(f"  {key}: {path}")
    return ok


def register(app: typer.Typer) -> None:
    @app.command()
    def publish(
        dataset_ids: list[str] = typer.Argument(
            None, help="Dataset ids (file names in datasets/ without .yaml).", show_default=False
        ),
        all_: bool = typer.Option(
            False, "--all", help="Publish every dataset no other flow produces."
        ),
        source: Path | None = typer.Option(
            None,
            "--source",
            help="Publish from this file instead of the spec's source.path (one dataset only).",
        ),
        portal: str | None = typer.Option(
            None,
            "--portal",
            help="Publish to this portal kind (datasette, socrata) instead of the spec's "
            "portal.kind; the table name stays the spec's.",
        ),
        full: bool = typer.Option(
            False,
            "--full",
            help="Incremental datasets: read the whole source and ignore the stored watermark.",
        ),
        dry_run: bool = typer.Option(
            False,
            "--dry-run",
            help="Extract, validate and protect (reports written), then print what the "
            "publish would change on the portal; write nothing to the portal or var/published.",
        ),
    ) -> None:
        """Extract, validate, protect and publish datasets to the portal.

        Exit 0: all published or unchanged (with --dry-run: every plan printed). 1: any
        dataset rejected or failed (its portal table untouched). 2: bad spec or usage.
        """
        settings = load_settings()
        ids = list(dataset_ids or [])
        if all_ == bool(ids):
            typer.echo("give dataset ids or --all (not both)", err=True)
            raise typer.Exit(EXIT_USAGE)
        if source is not None and (all_ or len(ids) != 1):
            typer.echo("--source needs exactly one dataset id", err=True)
            raise typer.Exit(EXIT_USAGE)
        if portal is not None and portal not in registered_portals():
            typer.echo(
                f"--portal {portal}: no such portal kind (registered: "
                f"{', '.join(registered_portals())})",
                err=True,
            )
            raise typer.Exit(EXIT_USAGE)
        if source is not None and not source.is_file():
            typer.echo(f"{source}: no such file", err=True)
            raise typer.Exit(EXIT_USAGE)
        try:
            specs = (
                list(load_all(settings.datasets_dir).values())
                if all_
                else [find_dataset(settings.datasets_dir, i) for i in ids]
            )
            from civicflow.quality import check_suite
            from civicflow.spec.loader import require_suite

            # A missing or unparsable suite is a bad spec (exit 2), caught before any run.
            for spec in specs:
                suite = require_suite(spec, settings.expectations_dir)
                check_suite(suite, spec, settings.var_dir / "cache" / "suites")
            specs = [spec.targeting(portal) for spec in specs]
        except SpecError as exc:
            print_problems(exc.problems)
            raise typer.Exit(EXIT_USAGE) from None

        if dry_run:
            if all_:
                from civicflow.pipeline import publishable

                wanted = set(publishable({s.id: s for s in specs}))
                specs = [s for s in specs if s.id in wanted]
            raise typer.Exit(EXIT_OK if _dry_run(settings, specs, source) else EXIT_REJECTED)

        use_project_prefect(settings)
        from flows._common import summary_of
        from flows.publish import publish_all, publish_dataset

        summaries: list[dict[str, Any]] = []
        if all_:
            result = summary_of(publish_all(portal=portal, full=full, return_state=True))
            summaries = (
                result
                if isinstance(result, list)
                else [{"dataset_id": "(all)", "outcome": "failed", "reason": str(result)}]
            )
        else:
            for dataset_id in ids:
                state = publish_dataset(
                    dataset_id,
                    str(source) if source else None,
                    portal=portal,
                    full=full,
                    return_state=True,
                )
                result = summary_of(state)
                summaries.append(
                    result
                    if isinstance(result, dict)
                    else {"dataset_id": dataset_id, "outcome": "failed", "reason": str(result)}
                )
        for summary in summaries:
            _print_summary(summary)
        ok = all(s["outcome"] in ("published", "unchanged") for s in summaries)
        raise typer.Exit(EXIT_OK if ok else EXIT_REJECTED)
