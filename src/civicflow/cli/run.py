"""``civicflow run``: the main job on the embedded defaults (what ``make run`` calls).

Starts the local portal if it is not up, publishes every dataset, builds the
scorecard, prints where to look, then keeps serving until Ctrl-C (or exits with
``--no-serve``, leaving nothing running).
"""

from __future__ import annotations

import dataclasses
import os
import secrets
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


def register(app: typer.Typer) -> None:
    @app.command()
    def run(
        serve: bool = typer.Option(
            True, "--serve/--no-serve", help="Keep the portal running after the job."
        ),
        port: int = typer.Option(8001, "--port", help="Portal port."),
    ) -> None:
        """Start the portal, publish all datasets, build the scorecard; then serve."""
        import signal

        from civicflow.portals import server

        def on_term(signum: int, frame: object) -> None:
            raise KeyboardInterrupt  # so the portal we started is stopped too

        signal.signal(signal.SIGTERM, on_term)
        settings = load_settings()
        _ensure_dev_hash_key(settings)
        url = f"http://127.0.0.1:{port}"
        settings = dataclasses.replace(settings, portal_url=url)
        os.environ["CIVICFLOW_PORTAL_URL"] = url
        proc = None
        if server.is_up(url):
            typer.echo(f"portal already up at {url}/")
        else:
            typer.echo(f"starting portal at {url}/ ...")
            proc = server.start(settings, port, quiet=True)
            server.wait_until_up(url, timeout=60)
        code = EXIT_OK
        try:
            from flows.publish import publish_all

            skipped = _unconfigured(settings)
            for dataset_id, name in skipped.items():
                typer.echo(
                    f"skipping {dataset_id}: {name} is not set (`make run` starts a local "
                    "PostgreSQL example database where PostgreSQL is installed: make system-deps)"
                )
            result = publish_all(skip=list(skipped), return_state=True).result(
                raise_on_failure=False
            )
            summaries = (
                result
                if isinstance(result, list)
                else [{"dataset_id": "(all)", "outcome": "failed", "reason": str(result)}]
            )
            typer.echo("\npublish:")
            _print_outcomes(summaries)
            if not all(s["outcome"] in ("published", "unchanged") for s in summaries):
                code = EXIT_REJECTED
            from flows.scorecard import scorecard

            # The scorecard reads what was just published.
            card = scorecard(return_state=True)
            typer.echo(
                f"\nscorecard: {url}/scorecard/  ({settings.site_dir / 'scorecard' / 'index.html'})"
            )
            if not card.is_completed():
                typer.echo(f"  scorecard failed: {card.message}", err=True)
                code = EXIT_REJECTED
            typer.echo(f"\nportal: {url}/{settings.portal_database}")
            typer.echo(
                f"reports: {settings.reports_dir}/<dataset>/<run-id>.json   runs: civicflow runs"
            )
            if serve and proc is not None:
                typer.echo("serving; Ctrl-C to stop")
                proc.wait()
        except KeyboardInterrupt:
            typer.echo("stopping")
        finally:
            if proc is not None:
                server.stop(proc)
        raise typer.Exit(code)
