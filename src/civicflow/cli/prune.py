"""``civicflow prune``: delete raw copies and reports that retention no longer keeps."""

from __future__ import annotations

import typer

from civicflow.cli._common import EXIT_USAGE, project_settings


def _size(n: int) -> str:
    return f"{n:,} bytes ({n / 2**20:.1f} MiB)"


def register(app: typer.Typer) -> None:
    @app.command()
    def prune(
        dataset_ids: list[str] = typer.Argument(
            None,
            help="Datasets to prune (default: every dataset with state in var/).",
            show_default=False,
        ),
        dry_run: bool = typer.Option(
            False, "--dry-run", help="List what would be deleted; delete nothing."
        ),
    ) -> None:
        """Delete old raw copies and reports under var/ (CIVICFLOW_KEEP_RUNS, CIVICFLOW_KEEP_DAYS).

        A run's files are kept while it is among the newest CIVICFLOW_KEEP_RUNS runs of
        its dataset or younger than CIVICFLOW_KEEP_DAYS days; the run behind the live
        published version is always kept. Lists every file and the totals.
        """
        from civicflow.retention import prune_dataset, state_dataset_ids

        settings = project_settings()
        known = set(state_dataset_ids(settings)) | {
            p.stem for p in settings.datasets_dir.glob("*.yaml")
        }
        unknown = [i for i in dataset_ids or [] if i not in known]
        if unknown:
            typer.echo(
                f"no dataset {', '.join(map(repr, unknown))} (known: {', '.join(sorted(known)) or 'none'})",
                err=True,
            )
            raise typer.Exit(EXIT_USAGE)
        files = size = 0
        for dataset_id in dataset_ids or state_dataset_ids(settings):
            result = prune_dataset(settings, dataset_id, dry_run=dry_run)
            typer.echo(result.summary())
            for path in result.files:
                typer.echo(f"  {path}")
            files += len(result.files)
            size += result.bytes
        verb = "would delete" if dry_run else "deleted"
        typer.echo(f"total: {verb} {files} files, {_size(size)}")
