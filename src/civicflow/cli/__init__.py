"""The ``civicflow`` command line (typer): one module per command group.

Each module exposes ``register(app)``. Heavy imports (Prefect, GX) happen inside the
commands so ``civicflow --help`` and ``civicflow check`` stay fast.
"""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="civicflow",
    help="Publish trusted city open data and certify performance metrics.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

COMMAND_MODULES = ["check", "publish", "run", "portal", "runs", "spec", "scorecard"]

for _name in COMMAND_MODULES:
    try:
        _module = importlib.import_module(f"civicflow.cli.{_name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"civicflow.cli.{_name}":
            raise
        continue
    _module.register(app)


def main() -> None:
    app()
