"""``civicflow deploy``: the project's deployments, from its dataset specs, onto a Prefect
server (or into prefect.yaml with ``--write-yaml``).

What to deploy comes from ``civicflow.deployments`` (no Prefect there); this module
turns those dicts into Prefect deployments through Prefect's Python API.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import typer

from civicflow.cli._common import EXIT_USAGE, print_problems, project_settings
from civicflow.settings import Settings
from civicflow.spec import SpecError

START_A_SERVER = (
    "start the project's server with `make run` (UI at http://127.0.0.1:4200), or "
    "`prefect server start` and export PREFECT_API_URL=http://127.0.0.1:4200/api"
)


def _write_yaml(settings: Settings, pool: str) -> None:
    from civicflow.deployments import render_prefect_yaml

    path = settings.project_dir / "prefect.yaml"
    path.write_text(render_prefect_yaml(settings, pool), encoding="utf-8")
    # A committed project file, not runtime state: readable like the rest of the repo.
    path.chmod(0o644)
    typer.echo(f"wrote {path}")


def _server_url(settings: Settings) -> str:
    """The API URL to deploy to; exit 2 saying how to start a server when none answers."""
    from prefect.settings import PREFECT_API_URL

    from flows._server import is_healthy, project_server_url

    # The environment first (Prefect reads it only once, at import), then a Prefect
    # profile's setting, then the project's own server.
    url = (
        os.environ.get("PREFECT_API_URL") or PREFECT_API_URL.value() or project_server_url(settings)
    )
    if not url:
        typer.echo(
            "no Prefect server: PREFECT_API_URL is not set and none answers at "
            f"http://127.0.0.1:4200/api; {START_A_SERVER}",
            err=True,
        )
        raise typer.Exit(EXIT_USAGE)
    if not is_healthy(url, timeout=5):
        typer.echo(f"no Prefect server answers at {url}/health; {START_A_SERVER}", err=True)
        raise typer.Exit(EXIT_USAGE)
    return url


def ensure_pool(name: str) -> bool:
    """Create the process work pool ``name`` if missing; True when it was created."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
    from prefect.workers.process import ProcessWorker

    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(name)
            return False
        except ObjectNotFound:
            pass
        try:
            client.create_work_pool(
                WorkPoolCreate(
                    name=name,
                    type="process",
                    base_job_template=ProcessWorker.get_default_base_job_template(),
                )
            )
        except ObjectAlreadyExists:  # created meanwhile by another deploy
            return False
        return True


def _schedule(entry: dict[str, Any]) -> Any:
    from prefect.schedules import Cron, Interval

    options = {"timezone": entry["timezone"], "active": entry.get("active", True)}
    if "cron" in entry:
        return Cron(entry["cron"], **options)
    return Interval(timedelta(seconds=entry["interval"]), **options)


def load_flow(settings: Settings, entrypoint: str) -> Any:
    """The flow at ``entrypoint``, from the project folder as the deployment's source.

    A local path as source makes the worker's pull step "cd to the project".
    """
    from prefect import Flow

    return Flow.from_source(source=str(settings.project_dir), entrypoint=entrypoint)


def apply_deployment(flow: Any, spec: dict[str, Any], pool: str) -> Any:
    """Create or update one deployment of ``flow``; returns its id."""
    from prefect.client.schemas.objects import ConcurrencyLimitConfig

    limit = spec.get("concurrency_limit")
    deployment = flow.to_deployment(
        name=spec["name"],
        description=spec.get("description"),
        parameters=spec.get("parameters"),
        schedules=[_schedule(s) for s in spec.get("schedules", [])],
        concurrency_limit=ConcurrencyLimitConfig(**limit) if limit else None,
        work_pool_name=pool,
    )
    return deployment.apply(work_pool_name=pool)


def deploy_all(
    settings: Settings, api_url: str, specs: list[dict[str, Any]], pool: str = "civicflow"
) -> None:
    """Create the pool if missing and create or update every deployment on ``api_url``
    (what ``civicflow run`` calls too, with the server it started)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    # Also when Prefect was imported before PREFECT_API_URL was set (tests, embedding).
    with temporary_settings({PREFECT_API_URL: api_url}):
        if ensure_pool(pool):
            typer.echo(f"created process work pool {pool!r}")
        flows: dict[str, Any] = {}  # each entrypoint loaded once (a second or more each)
        for spec in specs:
            entry = spec["entrypoint"]
            if entry not in flows:
                flows[entry] = load_flow(settings, entry)
            apply_deployment(flows[entry], spec, pool)
            typer.echo(f"deployed {spec['name']}")
    ui = api_url.removesuffix("/api")
    typer.echo(
        f"{len(specs)} deployments on {api_url} (UI {ui}/deployments); "
        f"run them with: prefect worker start --pool {pool}"
    )


def register(app: typer.Typer) -> None:
    @app.command()
    def deploy(
        write_yaml: bool = typer.Option(
            False, "--write-yaml", help="Write prefect.yaml from datasets/ instead of deploying."
        ),
        pool: str = typer.Option("civicflow", "--pool", help="Process work pool to run them."),
    ) -> None:
        """Register every deployment (one per scheduled dataset, publish-all, scorecard)
        on the Prefect server PREFECT_API_URL names (else the project's own on port 4200)."""
        from civicflow.deployments import deployment_specs

        os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
        settings = project_settings()
        try:
            specs = deployment_specs(settings, pool)
        except SpecError as exc:
            print_problems(exc.problems)
            raise typer.Exit(EXIT_USAGE) from None
        if write_yaml:
            _write_yaml(settings, pool)
            return
        deploy_all(settings, _server_url(settings), specs, pool)
