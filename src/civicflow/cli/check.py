"""``civicflow check``: validate every spec, suite and metric file; exit 2 on any problem."""

from __future__ import annotations

import typer

from civicflow.cli._common import EXIT_USAGE, print_problems
from civicflow.settings import Settings, load_settings
from civicflow.spec import SpecError, SpecProblem
from civicflow.spec.loader import dataset_paths, load_dataset


def collect_problems(settings: Settings) -> tuple[list[SpecProblem], dict[str, int]]:
    """Every problem in datasets/, expectations/ and metrics/, and how many files were read."""
    from civicflow.quality import load_suite
    from civicflow.sources import resolve_source_path

    problems: list[SpecProblem] = []
    counts = {"datasets": 0, "suites": 0, "metrics": 0}
    suites_used: set[str] = set()
    for path in dataset_paths(settings.datasets_dir):
        counts["datasets"] += 1
        try:
            spec = load_dataset(path)
        except SpecError as exc:
            problems.extend(exc.problems)
            continue
        suites_used.add(spec.suite_name)
        suite_path = settings.expectations_dir / f"{spec.suite_name}.json"
        if not suite_path.is_file():
            problems.append(
                SpecProblem(
                    path,
                    "expectation_suite",
                    f"no suite file {suite_path.relative_to(settings.project_dir)}",
                )
            )
        if "{var}" not in spec.source.path and not resolve_source_path(spec, settings).is_file():
            problems.append(SpecProblem(path, "source.path", f"file not found: {spec.source.path}"))
    for suite_path in sorted(settings.expectations_dir.glob("*.json")):
        counts["suites"] += 1
        try:
            load_suite(suite_path)
        except SpecError as exc:
            problems.extend(exc.problems)
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
        settings = load_settings()
        problems, counts = collect_problems(settings)
        if problems:
            print_problems(problems)
            typer.echo(f"{len(problems)} problem(s) found", err=True)
            raise typer.Exit(EXIT_USAGE)
        typer.echo(
            f"ok: {counts['datasets']} dataset specs, {counts['suites']} suites, {counts['metrics']} metric files"
        )
