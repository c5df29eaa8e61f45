"""The ``civicflow`` command line (typer): one module per command group.

Each module exposes ``register(app)``. Heavy imports (Prefect, GX) happen inside the
commands so ``civicflow --help`` and ``civicflow check`` stay fast.
"""

from __future__ import annotations

import importlib
import os

import typer

from civicflow.privatefs import private_umask

app = typer.Typer(
    name="civicflow",
    help="Publish trusted city open data and certify performance metrics.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _private_state(ctx: typer.Context) -> None:
    """Every command runs with umask 077: whatever it (or a library, or the portal process
    it starts) writes under var/ is private to the owner. The previous umask comes back
    when the command ends, so an embedding process (tests) keeps its own."""
    previous = private_umask()
    ctx.call_on_close(lambda: os.umask(previous))


COMMAND_MODULES = [
    "check",
    "publish",
    "run",
    "portal",
    "runs",
    "spec",
    "scorecard",
    "prune",
    "status",
    "versions",
    "deploy",
    "bench",
]

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
