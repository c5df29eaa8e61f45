"""``civicflow spec``: the JSON Schema editors use, and specs drafted from the data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from civicflow.cli._common import EXIT_REJECTED, EXIT_USAGE, project_settings
from civicflow.settings import load_settings
from civicflow.spec import schema
from civicflow.spec.models import SNAKE_CASE

if TYPE_CHECKING:
    from civicflow.onboarding import Draft


def _refuse_overwrite(paths: list[Path], force: bool) -> None:
    existing = [p for p in paths if p.exists()]
    if existing and not force:
        for path in existing:
            typer.echo(f"{path}: already exists (--force overwrites it)", err=True)
        raise typer.Exit(EXIT_USAGE)


def init(
    dataset_id: str = typer.Argument(
        ..., metavar="ID", help="snake_case id; writes datasets/ID.yaml."
    ),
    source: str = typer.Option(
        ...,
        "--source",
        help="A file (.csv, .xlsx, .geojson, .json), an http(s) URL or a postgresql:// URL.",
    ),
    sheet: str | None = typer.Option(None, help="Excel: the sheet to read (default: the first)."),
    header_row: int = typer.Option(1, min=1, help="Excel: the 1-based row holding the headers."),
    footer_rows: int = typer.Option(
        0, min=0, help="Excel: rows at the bottom of the sheet to skip (totals, notes)."
    ),
    table: str | None = typer.Option(None, help="PostgreSQL: the table (or schema.table)."),
    query: str | None = typer.Option(None, help="PostgreSQL: a SELECT instead of a table."),
    fmt: str | None = typer.Option(
        None, "--format", help="HTTP: csv, json or geojson when the URL does not say."
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite existing files."),
) -> None:
    """Draft datasets/ID.yaml and expectations/ID.json from a profile of the data.

    Every suggestion a person must decide is marked CONFIRM; `civicflow check` refuses
    the spec until none is left. Exit 0 drafted, 1 source unreadable, 2 usage.
    """
    from civicflow.onboarding import draft_dataset, read_target
    from civicflow.onboarding.read import ReadOptions
    from civicflow.sources import ExtractError

    if not SNAKE_CASE.match(dataset_id):
        typer.echo(f"id {dataset_id!r} must be snake_case (a-z, 0-9, _)", err=True)
        raise typer.Exit(EXIT_USAGE)
    settings = project_settings()
    spec_path = settings.datasets_dir / f"{dataset_id}.yaml"
    suite_path = settings.expectations_dir / f"{dataset_id}.json"
    _refuse_overwrite([spec_path, suite_path], force)
    options = ReadOptions(
        sheet=sheet,
        header_row=header_row,
        footer_rows=footer_rows,
        table=table,
        query=query,
        format=fmt,
    )
    try:
        draft = draft_dataset(dataset_id, read_target(dataset_id, source, settings, options))
    except ExtractError as exc:
        typer.echo(f"cannot read the source: {exc}", err=True)
        raise typer.Exit(EXIT_REJECTED) from None
    suite_path.parent.mkdir(parents=True, exist_ok=True)
    spec_path.write_text(draft.yaml(), encoding="utf-8")
    suite_path.write_text(json.dumps(draft.suite, indent=2, ensure_ascii=False) + "\n")
    _report(draft, spec_path, suite_path)


def _report(draft: Draft, spec_path: Path, suite_path: Path) -> None:
    from civicflow.spec.loader import read_yaml
    from civicflow.spec.marks import MARK

    fields = len(draft.spec["fields"])
    typer.echo(f"wrote {spec_path} ({fields} fields) and {suite_path}")
    lines = read_yaml(spec_path)[1]
    typer.echo(f"{len(draft.marks)} marked items to decide (values starting with {MARK}):")
    for mark in draft.marks:
        typer.echo(f"  {spec_path}:{lines.get(mark.path, '?')}: {mark.key}")
    typer.echo("decide each one, then run `civicflow check`")


def register(app: typer.Typer) -> None:
    spec_app = typer.Typer(help="Dataset spec tools.", no_args_is_help=True)
    app.add_typer(spec_app, name="spec")
    spec_app.command("init")(init)

    @spec_app.command("schema")
    def write_schema(
        write: bool = typer.Option(
            False, "--write", help="Write datasets/spec.schema.json instead of printing."
        ),
    ) -> None:
        """Print (or write) the JSON Schema of dataset specs."""
        if not write:
            typer.echo(schema.render(title="civicflow dataset spec"), nl=False)
            return
        path = load_settings().datasets_dir / "spec.schema.json"
        changed = schema.write(path, title="civicflow dataset spec")
        typer.echo(f"{'wrote' if changed else 'unchanged'}: {path}")
