"""Helpers shared by CLI command modules: exit codes, settings and problem printing."""

from __future__ import annotations

import typer

from civicflow.settings import Settings, SettingsError, load_settings
from civicflow.spec import SpecProblem

EXIT_OK = 0
EXIT_REJECTED = 1
EXIT_USAGE = 2


def print_problems(problems: list[SpecProblem]) -> None:
    for problem in problems:
        typer.echo(str(problem), err=True)


def project_settings() -> Settings:
    """Settings of the project the command runs in; exit 2 saying where it looked if none.

    Without this, a command run outside a project read an empty datasets/ and reported
    "ok: 0 dataset specs".
    """
    try:
        settings = load_settings()
    except SettingsError as exc:
        typer.echo(f"configuration: {exc}", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    if not settings.has_project:
        typer.echo(f"not a civicflow project: {settings.where_looked()}", err=True)
        raise typer.Exit(EXIT_USAGE)
    return settings


def use_project_prefect(settings: Settings) -> None:
    """Before a command's first Prefect import: talk to the project's running Prefect
    server (``make run``) when one is up, so the run is quick and shows in its UI;
    otherwise Prefect starts its temporary server as usual."""
    from flows._server import use_project_server

    use_project_server(settings)
