"""``civicflow bench generate``: synthetic source files at a city's sizes (``civicflow.synth``)."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import typer

from civicflow.cli._common import EXIT_USAGE, print_problems, project_settings
from civicflow.spec import SpecError, find_dataset


def _progress(total: int) -> Callable[[int], None]:
    """Rows written and rate on a terminal; nothing in CI logs or pipes."""
    started = time.monotonic()
    show = sys.stderr.isatty() and not os.environ.get("CI")

    def report(done: int) -> None:
        if show:
            rate = done / max(time.monotonic() - started, 1e-9)
            end = "\n" if done >= total else "\r"
            print(f"  {done:,} of {total:,} rows ({rate:,.0f} rows/s)", end=end, file=sys.stderr)

    return report


def register(app: typer.Typer) -> None:
    bench_app = typer.Typer(help="Benchmark helpers.", no_args_is_help=True)
    app.add_typer(bench_app, name="bench")

    @bench_app.command("generate")
    def generate(
        dataset: str = typer.Option(
            ..., "--dataset", help="Dataset whose bundled file to imitate."
        ),
        rows: int = typer.Option(1_000_000, "--rows", help="How many rows to write."),
        seed: int = typer.Option(0, "--seed", help="Same seed, same file."),
        out: Path | None = typer.Option(
            None, "--out", help="Output CSV (default var/bench/<dataset>-<rows>-<seed>.csv)."
        ),
    ) -> None:
        """Write a synthetic source file shaped like the dataset's bundled one: real rows
        drawn at random, fresh distinct keys, dates spread over a year."""
        from civicflow import synth

        settings = project_settings()
        try:
            spec = find_dataset(settings.datasets_dir, dataset)
        except SpecError as exc:
            print_problems(exc.problems)
            raise typer.Exit(EXIT_USAGE) from None
        target = out or settings.var_dir / "bench" / f"{dataset}-{rows}-{seed}.csv"
        started = time.monotonic()
        try:
            synth.generate(spec, settings, rows, seed, target, on_chunk=_progress(rows))
        except synth.SynthError as exc:
            typer.echo(f"bench generate: {exc}", err=True)
            raise typer.Exit(EXIT_USAGE) from None
        took = time.monotonic() - started
        typer.echo(f"wrote {rows:,} rows to {target} in {took:.1f} s")
