"""Helpers shared by CLI command modules: exit codes and problem printing."""

from __future__ import annotations

import typer

from civicflow.spec import SpecProblem

EXIT_OK = 0
EXIT_REJECTED = 1
EXIT_USAGE = 2


def print_problems(problems: list[SpecProblem]) -> None:
    for problem in problems:
        typer.echo(str(problem), err=True)
