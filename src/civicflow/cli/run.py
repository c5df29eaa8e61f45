"""``civicflow run``: the main job on the embedded defaults (what ``make run`` calls).

Starts the local portal if it is not up. With ``--serve`` (the default) it also starts
the project's Prefect server (UI on port 4200, state in PREFECT_HOME: var/prefect under
``make``), deploys every flow, starts a process worker on the ``civicflow`` pool, runs
publish-all and the scorecard once against that server, prints where to look, and keeps
everything serving with the schedules live until Ctrl-C. ``--no-serve`` does the job
once on Prefect's temporary server and leaves nothing running.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import typer

from civicflow.cli._common import EXIT_OK, EXIT_REJECTED
from civicflow.privatefs import write_private
from civicflow.settings import Settings, load_settings


def _print_outcomes(summaries: list[dict[str, Any]]) -> None:
    for s in summaries:
        outcome = s["outcome"].upper()
        reason = str(s["reason"]).removeprefix(f"{outcome}: ")
        typer.echo(f"  {s['dataset_id']:<28} {outcome:<10} {reason}")
        for key in ("report", "privacy_report"):
            if s.get(key):
                typer.echo(f"  {'':<28} {key.replace('_', ' ')}: {s[key]}")


def _ensure_dev_hash_key(settings: Settings) -> None:
    """The embedded default only: a development HMAC key kept in var/secrets/ (0600).

    Production sets CIVICFLOW_HASH_KEY or the Prefect Secret block; this keeps
    ``make run`` two commands from a fresh clone while hashes stay stable across runs.
    """
    from civicflow.privacy import ENV_VAR

    if settings.secret(ENV_VAR):
        return
    path = settings.var_dir / "secrets" / "hash_key"
    if not path.is_file():
        write_private(path, secrets.token_hex(32))
        typer.echo(f"generated a development hash key in {path} (set {ENV_VAR} in production)")
    os.environ[ENV_VAR] = path.read_text().strip()


def _unconfigured(settings: Settings) -> dict[str, str]:
    """Datasets whose database connection is not set here: id -> the variable to set.

    The main job skips them with that message (the bundled PostgreSQL example needs a
    server ``make run`` starts only where PostgreSQL is installed); ``publish`` does not.
    """
    from civicflow.spec import load_all

    out: dict[str, str] = {}
    for spec in load_all(settings.datasets_dir).values():
        name = getattr(spec.source, "connection_env", None)
        if name and not settings.env.get(name):
            out[spec.id] = name
    return out


POOL = "civicflow"


def _skip_unconfigured(settings: Settings) -> list[str]:
    skipped = _unconfigured(settings)
    for dataset_id, name in skipped.items():
        typer.echo(
            f"skipping {dataset_id}: {name} is not set (`make run` starts a local "
            "PostgreSQL example database where PostgreSQL is installed: make system-deps)"
        )
    return list(skipped)


def _start_orchestration(
    settings: Settings, prefect_port: int, workers: int = 1
) -> tuple[dict[str, subprocess.Popen[bytes]], str]:
    """The project's Prefect server (reused when one already answers on the port), every
    deployment registered on it, and ``workers`` process workers on the pool: (processes
    started, API URL).

    Must run before this process first imports Prefect, which reads PREFECT_API_URL once.
    """
    from flows import _server

    if "prefect" in sys.modules:  # an embedding process: its Prefect settings stand
        raise RuntimeError("civicflow run --serve must start before Prefect is imported")
    logs = settings.private_dir(settings.var_dir / "logs")
    procs: dict[str, subprocess.Popen[bytes]] = {}
    api_url = f"http://127.0.0.1:{prefect_port}/api"
    if _server.is_healthy(api_url):
        typer.echo(f"Prefect server already up at {api_url}")
    else:
        typer.echo(f"starting Prefect server at {api_url} (log {logs / 'prefect-server.log'}) ...")
        server, api_url = _server.start_server(
            prefect_port, os.environ, logs / "prefect-server.log"
        )
        procs["prefect server"] = server
        _server.record_server(settings, api_url, server.pid)
    os.environ["PREFECT_API_URL"] = api_url
    try:
        from civicflow.cli.deploy import deploy_all
        from civicflow.deployments import deployment_specs

        deploy_all(settings, api_url, deployment_specs(settings, POOL), POOL)
        for n in range(1, workers + 1):
            name = "prefect worker" if workers == 1 else f"prefect worker {n}"
            log_name = "prefect-worker.log" if workers == 1 else f"prefect-worker-{n}.log"
            procs[name] = _server.start_worker(
                POOL, api_url, os.environ, logs / log_name, name=f"civicflow-{n}"
            )
    except BaseException:
        _stop_all(procs)
        raise
    return procs, api_url


def _publish_and_score(settings: Settings, url: str) -> int:
    """publish-all then the scorecard, in this process; the exit code they earn."""
    from flows._common import summary_of
    from flows.publish import publish_all
    from flows.scorecard import scorecard

    code = EXIT_OK
    result = summary_of(publish_all(skip=_skip_unconfigured(settings), return_state=True))
    summaries = (
        result
        if isinstance(result, list)
        else [{"dataset_id": "(all)", "outcome": "failed", "reason": str(result)}]
    )
    typer.echo("\npublish:")
    _print_outcomes(summaries)
    if not all(s["outcome"] in ("published", "unchanged") for s in summaries):
        code = EXIT_REJECTED
    card = scorecard(return_state=True)  # reads what was just published
    typer.echo(f"\nscorecard: {url}/scorecard/  ({settings.site_dir / 'scorecard' / 'index.html'})")
    if not card.is_completed():
        typer.echo(f"  scorecard failed: {card.message}", err=True)
        code = EXIT_REJECTED
    typer.echo(f"\nportal: {url}/{settings.portal_database}")
    typer.echo(f"reports: {settings.reports_dir}/<dataset>/<run-id>.json   runs: civicflow runs")
    return code


def _serve_until_stopped(named: dict[str, subprocess.Popen[bytes]], logs: Path) -> int:
    """Block until Ctrl-C (or SIGTERM); EXIT_REJECTED if a service dies on its own."""
    typer.echo("serving; Ctrl-C to stop")
    while True:
        for name, proc in named.items():
            if proc.poll() is not None:
                typer.echo(f"{name} exited ({proc.returncode}); see {logs}/", err=True)
                return EXIT_REJECTED
        time.sleep(1)


def register(app: typer.Typer) -> None:
    @app.command()
    def run(
        serve: bool = typer.Option(
            True,
            "--serve/--no-serve",
            help="Also run the Prefect server, deployments and a worker, and keep everything "
            "serving until Ctrl-C (--no-serve: the job once, nothing left running).",
        ),
        port: int = typer.Option(8001, "--port", help="Portal port."),
        prefect_port: int = typer.Option(
            4200, "--prefect-port", help="Prefect server (UI and API) port, with --serve."
        ),
        workers: int = typer.Option(
            1,
            "--workers",
            min=1,
            help="Process workers to start on the civicflow pool, with --serve (they share "
            "the deployments' runs; more workers can join from other machines).",
        ),
    ) -> None:
        """Start the portal, publish all datasets, build the scorecard; then serve."""
        import signal

        from civicflow.portals import server

        def on_term(signum: int, frame: object) -> None:
            raise KeyboardInterrupt  # so everything we started is stopped too

        signal.signal(signal.SIGTERM, on_term)
        # Also when started from a script's background job, which inherits SIGINT ignored.
        signal.signal(signal.SIGINT, on_term)
        settings = load_settings()
        # Prefect's state stays with the project's (as `make run` sets it).
        os.environ.setdefault("PREFECT_HOME", str(settings.var_dir / "prefect"))
        _ensure_dev_hash_key(settings)
        url = f"http://127.0.0.1:{port}"
        settings = dataclasses.replace(settings, portal_url=url)
        os.environ["CIVICFLOW_PORTAL_URL"] = url  # the worker's flow runs publish here too
        started: dict[str, subprocess.Popen[bytes]] = {}
        code = EXIT_OK
        try:
            if server.is_up(url):
                typer.echo(f"portal already up at {url}/")
            else:
                typer.echo(f"starting portal at {url}/ ...")
                started["portal"] = server.start(settings, port, quiet=True)
                server.wait_until_up(url, timeout=60)
            api_url = None
            if serve:
                procs, api_url = _start_orchestration(settings, prefect_port, workers)
                started.update(procs)
            code = _publish_and_score(settings, url)
            if serve:
                ui = str(api_url).removesuffix("/api")
                typer.echo(f"Prefect UI: {ui}/  (deployments: {ui}/deployments, pool {POOL})")
                code = _serve_until_stopped(started, settings.var_dir / "logs") or code
        except KeyboardInterrupt:
            typer.echo("stopping")
        finally:
            # A second Ctrl-C (or SIGTERM) must not cut the shutdown short and orphan a
            # service: each stop below is bounded in time anyway.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            _stop_all(started)
        raise typer.Exit(code)


def _stop_all(started: dict[str, subprocess.Popen[bytes]]) -> None:
    """Worker first (its runs end), then the Prefect server, then the portal."""
    from civicflow.portals import server
    from flows import _server

    for name in reversed(list(started)):
        proc = started[name]
        if name == "portal":
            server.stop(proc)
        else:
            _server.stop(proc)
