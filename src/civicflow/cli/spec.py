"""``civicflow spec``: the JSON Schema editors use to validate dataset YAML."""

from __future__ import annotations

import typer

from civicflow.settings import load_settings
from civicflow.spec import schema


def register(app: typer.Typer) -> None:
    spec_app = typer.Typer(help="Dataset spec tools.", no_args_is_help=True)
    app.add_typer(spec_app, name="spec")

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
