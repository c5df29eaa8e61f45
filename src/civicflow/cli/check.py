"""``civicflow check``: validate every spec, suite and metric file; exit 2 on any problem."""

from __future__ import annotations

from pathlib import Path

import typer

from civicflow.cli._common import EXIT_USAGE, print_problems, project_settings
from civicflow.settings import Settings
from civicflow.spec import DatasetSpec, SpecError, SpecProblem
from civicflow.spec.loader import dataset_paths, load_dataset, missing_suite
from civicflow.spec.models import CsvSource, GeoJsonSource


def collect_problems(settings: Settings) -> tuple[list[SpecProblem], dict[str, int]]:
    """Every problem in datasets/, expectations/ and metrics/, and how many files were read."""
    from civicflow.quality import load_suite
    from civicflow.sources import resolve_source_path

    problems: list[SpecProblem] = []
    counts = {"datasets": 0, "suites": 0, "metrics": 0}
    # Each suite is checked against the spec loaded here: left to itself, load_suite
    # loads datasets/<suite>.yaml again and a broken spec was reported twice.
    specs_by_suite: dict[str, DatasetSpec] = {}
    broken_specs: set[Path] = set()
    for path in dataset_paths(settings.datasets_dir):
        counts["datasets"] += 1
        try:
            spec = load_dataset(path)
        except SpecError as exc:
            problems.extend(exc.problems)
            broken_specs.add(path.resolve())
            continue
        specs_by_suite.setdefault(spec.suite_name, spec)
        if (problem := missing_suite(spec, settings.expectations_dir, path)) is not None:
            problems.append(problem)
        source = spec.source
        if (
            isinstance(source, CsvSource | GeoJsonSource)
            and "{var}" not in source.path
            and not resolve_source_path(spec, settings).is_file()
        ):
            problems.append(SpecProblem(path, "source.path", f"file not found: {source.path}"))
    for suite_path in sorted(settings.expectations_dir.glob("*.json")):
        counts["suites"] += 1
        try:
            load_suite(suite_path, specs_by_suite.get(suite_path.stem))
        except SpecError as exc:
            # A suite whose spec is broken re-raises the spec's problems: already listed.
            problems.extend(p for p in exc.problems if p.file.resolve() not in broken_specs)
    from civicflow.metrics import check_files

    if settings.metrics_dir.is_dir():
        counts["metrics"] = sum(1 for p in settings.metrics_dir.rglob("*.yaml"))
        problems.extend(check_files(settings))
    return problems, counts


def register(app: typer.Typer) -> None:
    @app.command()
    def check() -> None:
        """Validate every dataset spec, expectation suite and metric file.

        Prints ``file:line: key: problem`` for each error and exits 2 if there is any.
        """
        settings = project_settings()
        problems, counts = collect_problems(settings)
        if problems:
            print_problems(problems)
            typer.echo(f"{len(problems)} problem(s) found", err=True)
            raise typer.Exit(EXIT_USAGE)
        typer.echo(
            f"ok: {counts['datasets']} dataset specs, {counts['suites']} suites, {counts['metrics']} metric files"
        )
